"""Analytics use cases: record a batch of messages in one transaction; read the aggregates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pm.analytics.domain.model import EventType, InvalidEvent, PatientEvent, Summary, Tally
from pm.common.ports import Transaction


@dataclass(frozen=True)
class RawMessage:
    """One message as it came off the topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    message: RawMessage
    error: str


@dataclass(frozen=True)
class BatchResult:
    recorded: int
    duplicates: int
    parked: list[DeadLetter]


class EventStore(Protocol):
    def add_new_events(
        self, events: Sequence[PatientEvent], messages: Sequence[RawMessage]
    ) -> list[PatientEvent]:
        """Store the events whose id was never stored before; return exactly those."""

    def add_to_aggregates(self, tally: Tally) -> None: ...

    def park(self, dead_letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        """Store dead letters not parked before (by topic, partition, offset); return exactly those."""

    def erase_patient(self, patient_id: str) -> int:
        """Erase the name and email of every stored event of the patient, and the payload of its parked
        messages; how many rows changed. The aggregates are counts and stay."""


class AnalyticsUnitOfWork(Transaction, Protocol):
    """One transaction over analytics' store (pm.common.db.UnitOfWork): everything in it is kept together
    or not at all."""

    @property
    def events(self) -> EventStore: ...


Decoder = Callable[[bytes | None], PatientEvent]


def record_batch(uow: AnalyticsUnitOfWork, messages: Sequence[RawMessage], decode: Decoder) -> BatchResult:
    """Store new events, update the aggregates and park undecodable messages, all in one transaction."""
    events: list[PatientEvent] = []
    sources: list[RawMessage] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            events.append(decode(message.value))
            sources.append(message)
        except InvalidEvent as exc:
            dead.append(DeadLetter(message, str(exc)))
    with uow:
        new = uow.events.add_new_events(events, sources)
        uow.events.add_to_aggregates(Tally.of(new))
        parked = uow.events.park(dead)
        # After the inserts: a purge erases the events of the same batch that came before it too.
        for patient_id in {e.patient_id for e in new if e.event_type is EventType.PURGED}:
            uow.events.erase_patient(patient_id)
        uow.commit()
    return BatchResult(recorded=len(new), duplicates=len(events) - len(new), parked=parked)


class AnalyticsReader(Protocol):
    """Raises StoreUnavailable when the database cannot be reached."""

    def summary(self) -> Summary: ...

    def recent_events(self, limit: int) -> list[PatientEvent]: ...
