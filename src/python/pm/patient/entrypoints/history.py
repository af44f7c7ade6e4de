"""JSON, links and cursors of `/patients/{id}/history` (the handlers in patients.py use these)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from typing import Any
from urllib.parse import urlencode

from pm.patient.domain.model import InvalidPatient, PatientVersion
from pm.patient.service_layer.services import HistoryPage

_DIGEST_BYTES = 8


def version_json(version: PatientVersion) -> dict[str, Any]:
    patient = version.patient
    return {
        "version": version.version,
        "changedAt": version.changed_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "actor": version.actor,
        "changeType": version.change_type.value,
        "patient": (
            None
            if patient is None
            else {
                "id": str(patient.id),
                "name": patient.name,
                "email": patient.email,
                "address": patient.address,
                "dateOfBirth": patient.date_of_birth.isoformat(),
                "registeredDate": patient.registered_date.isoformat(),
                "billingAccountId": patient.billing_account_id,
            }
        ),
    }


def _digest(patient_id: uuid.UUID, body: bytes) -> bytes:
    return hashlib.sha256(b"pm.patient.history." + patient_id.bytes + body).digest()[:_DIGEST_BYTES]


def encode_cursor(after_version: int, patient_id: uuid.UUID) -> str:
    """The versions older than `after_version`, of this patient only (a digest binds the two)."""
    body = after_version.to_bytes(4, "big")
    return base64.urlsafe_b64encode(body + _digest(patient_id, body)).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, patient_id: uuid.UUID) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    body, check = raw[:4], raw[4:]
    if len(raw) != 4 + _DIGEST_BYTES or _digest(patient_id, body) != check:
        raise InvalidPatient(
            {"cursor": "This is not a history cursor of this patient; start from the first page."}
        )
    return int.from_bytes(body, "big")


def links(path: str, patient_id: uuid.UUID, size: int, page: HistoryPage) -> str:
    result = [f'<{path}?{urlencode({"size": size})}>; rel="first"']
    if page.next_after is not None:
        params = urlencode({"size": size, "cursor": encode_cursor(page.next_after, patient_id)})
        result.append(f'<{path}?{params}>; rel="next"')
    return ", ".join(result)
