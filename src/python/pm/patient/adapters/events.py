"""PatientChanged <-> the wire format `pm.events.v1.PatientEvent` (protobuf)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from pm.patient.domain.model import ChangeType, PatientChanged
from pm.proto.events.v1 import patient_event_pb2 as pb

_TYPES = {
    ChangeType.CREATED: pb.PATIENT_CREATED,
    ChangeType.UPDATED: pb.PATIENT_UPDATED,
    ChangeType.DELETED: pb.PATIENT_DELETED,
    ChangeType.PURGED: pb.PATIENT_PURGED,
}
# A purge erases from a stored event everything that names or describes the person: name, email,
# address and date of birth (see `scrub`).


def event_type(change: ChangeType) -> str:
    """The event type's name, as the outbox row and the Kafka header carry it ("PATIENT_CREATED")."""
    return pb.EventType.Name(_TYPES[change])


def to_message(event: PatientChanged) -> pb.PatientEvent:
    occurred_at = Timestamp()
    occurred_at.FromDatetime(event.occurred_at)
    patient = event.patient
    if event.change is ChangeType.PURGED:
        # Ids and timestamps only: the event that says the data is gone does not carry it.
        return pb.PatientEvent(
            event_id=str(event.event_id),
            event_type=pb.PATIENT_PURGED,
            occurred_at=occurred_at,
            patient_id=str(patient.id),
            actor=event.actor,
            registered_date=patient.registered_date.isoformat(),
            billing_account_id=patient.billing_account_id or "",
        )
    return pb.PatientEvent(
        event_id=str(event.event_id),
        event_type=_TYPES[event.change],
        occurred_at=occurred_at,
        patient_id=str(patient.id),
        name=patient.name,
        email=patient.email,
        actor=event.actor,
        address=patient.address,
        date_of_birth=patient.date_of_birth.isoformat(),
        registered_date=patient.registered_date.isoformat(),
        billing_account_id=patient.billing_account_id or "",
    )


def serialize(event: PatientChanged) -> bytes:
    return to_message(event).SerializeToString()


def scrub(payload: bytes) -> bytes:
    """A stored event without the patient's personal data (ids, type, times and actor kept)."""
    message = pb.PatientEvent.FromString(payload)
    message.ClearField("name")
    message.ClearField("email")
    message.ClearField("address")
    message.ClearField("date_of_birth")
    return message.SerializeToString()
