"""Patient events as analytics sees them, and the aggregates they add up to."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class EventType(StrEnum):
    CREATED = "PATIENT_CREATED"
    UPDATED = "PATIENT_UPDATED"
    DELETED = "PATIENT_DELETED"
    # The patient's personal data was erased upstream: analytics erases what it kept (aggregates stay).
    PURGED = "PATIENT_PURGED"


class InvalidEvent(Exception):
    """A message that is not a usable patient event; the message says why (no personal data in it)."""


@dataclass(frozen=True)
class PatientEvent:
    event_id: uuid.UUID
    event_type: EventType
    patient_id: str
    name: str
    email: str
    actor: str
    occurred_at: datetime
    registered_date: date | None = None

    @property
    def registration_month(self) -> str:
        """`YYYY-MM` of the registration: the registered date, or when the event happened without one."""
        day = self.registered_date or self.occurred_at.date()
        # Not strftime: glibc's %Y does not pad years below 1000 ("124-10"), which breaks the API's pattern.
        return f"{day.year:04d}-{day.month:02d}"


@dataclass(frozen=True)
class Tally:
    """What a set of new (never seen before) events adds to the aggregates."""

    created: int = 0
    updated: int = 0
    deleted: int = 0
    registrations: dict[str, int] = field(default_factory=dict)
    latest: datetime | None = None

    @classmethod
    def of(cls, events: Iterable[PatientEvent]) -> Tally:
        events = list(events)
        kinds = Counter(e.event_type for e in events)
        months = Counter(e.registration_month for e in events if e.event_type is EventType.CREATED)
        return cls(
            created=kinds[EventType.CREATED],
            updated=kinds[EventType.UPDATED],
            deleted=kinds[EventType.DELETED],
            registrations=dict(months),
            latest=max((e.occurred_at for e in events), default=None),
        )


@dataclass(frozen=True)
class Summary:
    patients_created: int
    patients_updated: int
    patients_deleted: int
    registrations_per_month: list[tuple[str, int]]
    last_event_at: datetime | None

    @property
    def current_patients(self) -> int:
        # Patients that existed before analytics started (e.g. seeded) may be deleted: never below zero.
        return max(0, self.patients_created - self.patients_deleted)
