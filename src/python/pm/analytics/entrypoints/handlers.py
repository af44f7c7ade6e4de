"""Connexion handlers: the spec has validated the request; these read and translate to JSON."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from connexion import request

from pm.analytics.domain.model import PatientEvent
from pm.analytics.service_layer.services import AnalyticsReader
from pm.common.db import StoreUnavailable
from pm.common.problems import Problem

log = logging.getLogger(__name__)

Response = tuple[Any, int, dict[str, str]]


def summary() -> Response:
    result = _read(lambda reader: reader.summary())
    return _json(
        {
            "patientsCreated": result.patients_created,
            "patientsUpdated": result.patients_updated,
            "patientsDeleted": result.patients_deleted,
            "currentPatients": result.current_patients,
            "registrationsPerMonth": [{"month": m, "count": c} for m, c in result.registrations_per_month],
            "lastEventAt": None if result.last_event_at is None else _timestamp(result.last_event_at),
        }
    )


def events(limit: int = 50) -> Response:
    recent = _read(lambda reader: reader.recent_events(limit))
    return _json([_event(e) for e in recent])


def _read(query: Any) -> Any:
    reader: AnalyticsReader = request.state.analytics
    try:
        return query(reader)
    except StoreUnavailable as exc:
        log.warning("analytics database unavailable", extra={"error": str(exc)})
        raise Problem(
            503, "Service Unavailable", "The analytics database is unavailable; retry later."
        ) from None


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
