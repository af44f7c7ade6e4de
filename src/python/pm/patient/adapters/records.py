"""A patient's record as two tables store it: `patients` (the current one) and `patient_versions` (each
stored change, nullable: a purge nulls it). One list of its columns, read and written here only."""

from __future__ import annotations

import uuid
from typing import Any

from pm.patient.domain.model import Patient

# Named alike in both tables and on `Patient`.
RECORD_COLUMNS = ("name", "email", "address", "date_of_birth", "registered_date", "billing_account_id")


def record_values(patient: Patient | None) -> dict[str, Any]:
    """The record columns of `patient`; nulls for none (a version whose patient was purged)."""
    if patient is None:
        return dict.fromkeys(RECORD_COLUMNS)
    return {column: getattr(patient, column) for column in RECORD_COLUMNS}


def patient_of(row: Any, patient_id: uuid.UUID, **more: Any) -> Patient:
    """The patient a row holds, at the row's version (`more`: the other fields that table has)."""
    record = {column: getattr(row, column) for column in RECORD_COLUMNS}
    return Patient(id=patient_id, version=row.version, **record, **more)
