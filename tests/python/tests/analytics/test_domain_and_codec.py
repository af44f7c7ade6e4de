"""Decoding the wire format and adding events up: pure code, no infrastructure."""

import uuid
from datetime import UTC, date, datetime

import pytest

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.domain.model import EventType, InvalidEvent, PatientEvent, Summary, Tally
from pm.proto.billing.v1 import billing_pb2
from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.analytics.conftest import event_bytes

WHEN = datetime(2025, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def test_a_patient_event_decodes_with_every_field() -> None:
    event_id, patient_id = str(uuid.uuid4()), str(uuid.uuid4())
    event = decode_patient_event(
        event_bytes(
            "updated",
            event_id=event_id,
            patient_id=patient_id,
            occurred_at=WHEN,
            registered_date="2024-01-15",
        )
    )
    assert event == PatientEvent(
        event_id=uuid.UUID(event_id),
        event_type=EventType.UPDATED,
        patient_id=patient_id,
        name="Jane Smith",
        email="jane.smith@example.com",
        actor="testuser@test.com",
        occurred_at=WHEN,
        registered_date=date(2024, 1, 15),
    )


def test_registration_month_comes_from_the_registered_date_else_the_event_time() -> None:
    assert (
        decode_patient_event(event_bytes(occurred_at=WHEN, registered_date="2024-01-15")).registration_month
        == "2024-01"
    )
    assert decode_patient_event(event_bytes(occurred_at=WHEN)).registration_month == "2025-02"
    assert (
        decode_patient_event(event_bytes(occurred_at=WHEN, registered_date="15/01/2024")).registration_month
        == "2025-02"
    )


def _without(**overrides: object) -> bytes:
    message = pb.PatientEvent()
    message.ParseFromString(event_bytes())
    for field, value in overrides.items():
        setattr(message, field, value)
    return message.SerializeToString()


def _without_time() -> bytes:
    message = pb.PatientEvent()
    message.ParseFromString(event_bytes())
    message.ClearField("occurred_at")
    return message.SerializeToString()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"\xff\xfe\xfd not protobuf", "not a PatientEvent"),
        (
            billing_pb2.BillingAccount(account_id=str(uuid.uuid4()), status="ACTIVE").SerializeToString(),
            "event_type",
        ),
        (_without(event_id="42"), "event_id"),
        (_without(event_type=0), "event_type"),
        (_without(patient_id=""), "patient_id"),
        (_without_time(), "occurred_at"),
        (_without(name="x" * 1001), "name"),
        (_without(email="a\x00b@example.com"), "email"),
    ],
)
def test_unusable_messages_are_invalid_events_saying_why(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        decode_patient_event(value)


def _event(kind: EventType, occurred_at: datetime, registered: date | None = None) -> PatientEvent:
    return PatientEvent(uuid.uuid4(), kind, str(uuid.uuid4()), "n", "e@x.io", "a", occurred_at, registered)


def test_tally_counts_kinds_registration_months_of_creations_and_the_latest_time() -> None:
    early = datetime(2024, 1, 1, tzinfo=UTC)
    tally = Tally.of(
        [
            _event(EventType.CREATED, early, date(2024, 1, 31)),
            _event(EventType.CREATED, early, date(2024, 1, 1)),
            _event(EventType.CREATED, WHEN),
            _event(EventType.UPDATED, early, date(2023, 5, 5)),
            _event(EventType.DELETED, early),
        ]
    )
    assert (tally.created, tally.updated, tally.deleted) == (3, 1, 1)
    assert tally.registrations == {"2024-01": 2, "2025-02": 1}
    assert tally.latest == WHEN
    assert Tally.of([]) == Tally()


def test_current_patients_never_goes_below_zero() -> None:
    assert Summary(5, 0, 2, [], None).current_patients == 3
    assert Summary(1, 0, 3, [], None).current_patients == 0
