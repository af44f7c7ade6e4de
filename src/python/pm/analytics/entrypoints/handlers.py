"""Connexion handlers: the spec has validated the request; these read and translate to JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pm.analytics.domain.model import PatientEvent
from pm.analytics.service_layer.services import AnalyticsReader
from pm.common.problems import ErrorTable

Response = tuple[Any, int, dict[str, str]]

# Analytics' reads fail only when its database is away: the kit's own row (503) answers that.
ERRORS: ErrorTable = {}


class AnalyticsHandlers:
    """The operations of api/openapi.yaml, bound to the read side by bootstrap (`handler_resolver`)."""

    def __init__(self, reader: AnalyticsReader) -> None:
        self.reader = reader

    def summary(self) -> Response:
        result = self.reader.summary()
        return _json(
            {
                "patientsCreated": result.patients_created,
                "patientsUpdated": result.patients_updated,
                "patientsDeleted": result.patients_deleted,
                "currentPatients": result.current_patients,
                "registrationsPerMonth": [
                    {"month": m, "count": c} for m, c in result.registrations_per_month
                ],
                "lastEventAt": None if result.last_event_at is None else _timestamp(result.last_event_at),
            }
        )

    def events(self, limit: int = 50) -> Response:
        return _json([_event(e) for e in self.reader.recent_events(limit)])


def _event(event: PatientEvent) -> dict[str, Any]:
    return {
        "eventId": str(event.event_id),
        "eventType": event.event_type.value,
        "patientId": event.patient_id,
        "name": event.name,
        "email": event.email,
        "actor": event.actor,
        "occurredAt": _timestamp(event.occurred_at),
    }


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(body: Any, status: int = 200) -> Response:
    # Operations also declare problem+json responses, so Connexion needs the content type spelled out.
    return body, status, {"Content-Type": "application/json"}
