"""The wire format `pm.events.v1.PatientEvent` (protobuf) -> a domain PatientEvent, or InvalidEvent."""

from __future__ import annotations

import uuid
from datetime import UTC, date

from google.protobuf.message import DecodeError

from pm.analytics.domain.model import EventType, InvalidEvent, PatientEvent
from pm.proto.events.v1 import patient_event_pb2 as pb

_TYPES = {
    pb.PATIENT_CREATED: EventType.CREATED,
    pb.PATIENT_UPDATED: EventType.UPDATED,
    pb.PATIENT_DELETED: EventType.DELETED,
    pb.PATIENT_PURGED: EventType.PURGED,
}
# Text longer than this, or containing NUL (which PostgreSQL refuses), would fail the batch's
# transaction on every redelivery; such a message is parked instead.
MAX_TEXT = 1000


def decode_patient_event(value: bytes | None) -> PatientEvent:
    if not value:
        raise InvalidEvent("empty message")
    message = pb.PatientEvent()
    try:
        message.ParseFromString(value)
    except DecodeError as exc:
        raise InvalidEvent(f"not a PatientEvent: {exc}") from None
    try:
        event_id = uuid.UUID(message.event_id)
    except ValueError:
        raise InvalidEvent("event_id is not a UUID") from None
    event_type = _TYPES.get(message.event_type)
    if event_type is None:
        raise InvalidEvent(f"unknown event_type {message.event_type}")
    try:
        patient_id = str(uuid.UUID(message.patient_id))
    except ValueError:
        raise InvalidEvent("patient_id is not a UUID") from None
    if not message.HasField("occurred_at"):
        raise InvalidEvent("occurred_at is missing")
    for name in ("name", "email", "actor"):
        text = getattr(message, name)
        if len(text) > MAX_TEXT or "\x00" in text:
            raise InvalidEvent(f"{name} is too long or contains NUL")
    try:
        occurred_at = message.occurred_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidEvent("occurred_at is out of range") from None
    return PatientEvent(
        event_id=event_id,
        event_type=event_type,
        patient_id=patient_id,
        name=message.name,
        email=message.email,
        actor=message.actor,
        occurred_at=occurred_at,
        registered_date=_date_or_none(message.registered_date),
    )


def _date_or_none(value: str) -> date | None:
    # A missing or malformed registered date falls back to the event time for the month (not parked).
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None
