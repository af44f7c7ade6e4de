"""A patient's record as two tables store it: `patients` (the current one) and `patient_versions` (each
stored change, nullable: a purge nulls it). Its columns, `tables.RECORD_COLUMNS`, are read and written
here only."""

from __future__ import annotations

import uuid
from typing import Any

from pm.patient.adapters.tables import RECORD_COLUMNS
from pm.patient.domain.model import Patient


def record_values(patient: Patient | None) -> dict[str, Any]:
    """The record columns of `patient`; nulls for none (a version whose patient was purged)."""
    if patient is None:
        return dict.fromkeys(RECORD_COLUMNS)
    return {column: getattr(patient, column) for column in RECORD_COLUMNS}


def patient_of(row: Any, patient_id: uuid.UUID, **more: Any) -> Patient:
    """The patient a row holds, at the row's version (`more`: the other fields that table has)."""
    record = {column: getattr(row, column) for column in RECORD_COLUMNS}
    return Patient(id=patient_id, version=row.version, **record, **more)
