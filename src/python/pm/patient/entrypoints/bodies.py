"""The JSON body of a patient, as the spec's `Patient` schema has it (lists, reads, history versions)."""

from __future__ import annotations

from typing import Any

from pm.patient.domain.model import Patient


def patient_json(patient: Patient) -> dict[str, Any]:
    return {
        "id": str(patient.id),
        "name": patient.name,
        "email": patient.email,
        "address": patient.address,
        "dateOfBirth": patient.date_of_birth.isoformat(),
        "registeredDate": patient.registered_date.isoformat(),
        "billingAccountId": patient.billing_account_id,
    }
