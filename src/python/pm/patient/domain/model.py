"""Patients, the events their changes produce, and the rules that hold regardless of transport."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pm.patient.domain.filters import Filter


@dataclass(frozen=True)
class PatientDetails:
    """What a client supplies; `registered_date` may be omitted on update (the stored one is kept)."""

    name: str
    email: str
    address: str
    date_of_birth: date
    registered_date: date | None = None

    def check(self, today: date) -> None:
        """Rules the request schema cannot express; raises InvalidPatient naming each field."""
        errors = {}
        if self.date_of_birth > today:
            errors["dateOfBirth"] = "Date of birth cannot be in the future"
        if errors:
            raise InvalidPatient(errors)


@dataclass(frozen=True)
class Patient:
    id: uuid.UUID
    name: str
    email: str
    address: str
    date_of_birth: date
    registered_date: date
    billing_account_id: str | None
    version: int = 1
    # When the stored row last changed (as read from the database; None on a patient not yet stored).
    updated_at: datetime | None = field(default=None, compare=False)

    @property
    def email_key(self) -> str:
        """Emails are unique case-insensitively."""
        return email_key(self.email)

    @property
    def etag(self) -> str:
        """Strong validator: changes with every stored change of this patient."""
        return f'"{self.id.hex[:12]}-{self.version}"'

    def changed(self, details: PatientDetails) -> Patient:
        return replace(
            self,
            name=details.name,
            email=details.email,
            address=details.address,
            date_of_birth=details.date_of_birth,
            registered_date=details.registered_date or self.registered_date,
            version=self.version + 1,
        )

    def precondition_holds(self, if_match: str | None) -> bool:
        """RFC 9110 If-Match: absent or `*` always holds; otherwise one listed strong tag must be ours."""
        if if_match is None or if_match.strip() == "*":
            return True
        return any(tag.strip() == self.etag for tag in if_match.split(","))


def email_key(email: str) -> str:
    return email.strip().lower()


class ChangeType(enum.Enum):
    """What one change did to a patient: its version's `changeType` and, as `PATIENT_<name>`, the type of
    the event it publishes."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    # The patient's personal data was erased everywhere it was copied; the event carries none.
    PURGED = "PURGED"


@dataclass(frozen=True)
class PatientChanged:
    """One change to a patient, recorded in the outbox in the transaction that made it."""

    event_id: uuid.UUID
    change: ChangeType
    occurred_at: datetime
    patient: Patient
    actor: str


@dataclass(frozen=True)
class PatientVersion:
    """One stored change of a patient, immutable once written: the record as it was after the change
    (for DELETED, as it was when deleted). `patient` is None once the patient was purged."""

    patient_id: uuid.UUID
    version: int
    changed_at: datetime
    actor: str
    change_type: ChangeType
    patient: Patient | None


@dataclass(frozen=True)
class Tombstone:
    """What is left of a deleted patient in the patient table's place: ids and timestamps only."""

    patient_id: uuid.UUID
    deleted_at: datetime
    version: int
    purged_at: datetime | None = None


SORTABLE_FIELDS = ("name", "email", "address", "dateOfBirth", "registeredDate")


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = False


def parse_sort(text: str) -> tuple[SortKey, ...]:
    """`-registeredDate,name` -> keys; unknown fields are refused (the spec's pattern says the same)."""
    keys = []
    for part in (p.strip() for p in text.split(",")):
        descending = part.startswith("-")
        field = part.lstrip("-")
        if field not in SORTABLE_FIELDS:
            raise InvalidPatient(
                {"sort": f"Cannot sort by {field!r}; use one of {', '.join(SORTABLE_FIELDS)}"}
            )
        keys.append(SortKey(field, descending))
    return tuple(keys)


def sort_text(keys: tuple[SortKey, ...]) -> str:
    """The canonical spelling of a sort (`-registeredDate,name`), as links and cursors carry it."""
    return ",".join(("-" if key.descending else "") + key.field for key in keys)


class Direction(enum.Enum):
    AFTER = "a"  # the rows after a position, in the list's order
    BEFORE = "b"  # the rows before a position
    LAST = "l"  # the final rows of the list (no position)


Value = str | date


@dataclass(frozen=True)
class Cursor:
    """A keyset position: the sort key values and id of a row, and which side of it to read. A cursor
    from a link carries the id only (no personal data in URLs); the repository reads the values."""

    direction: Direction
    values: tuple[Value, ...] = ()
    id: uuid.UUID | None = None


@dataclass(frozen=True)
class PatientQuery:
    page: int = 0
    size: int = 20
    search: str | None = None
    sort: tuple[SortKey, ...] = (SortKey("name"),)
    # When set, `page` is ignored: the rows are read from this position by the sort index.
    cursor: Cursor | None = None
    # More conditions, all of which a patient must meet (the FHIR search parameters; domain/filters.py).
    filters: tuple[Filter, ...] = ()

    @property
    def offset(self) -> int:
        return self.page * self.size


@dataclass(frozen=True)
class PatientPage:
    items: list[Patient]
    total: int
    query: PatientQuery
    # The total is an estimate (too many matches to count on every page).
    total_estimated: bool = False
    next: Cursor | None = None
    prev: Cursor | None = None


class PatientError(Exception):
    """Base of the domain's errors; each protocol maps them in one place."""


class InvalidPatient(PatientError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class PatientNotFound(PatientError):
    def __init__(self, patient_id: object) -> None:
        super().__init__(f"Patient {patient_id} not found.")


class PatientGone(PatientError):
    """The patient existed and was deleted (410): its history stays readable."""

    def __init__(self, patient_id: object, *, purged: bool = False) -> None:
        what = "deleted and its personal data erased" if purged else "deleted"
        super().__init__(
            f"Patient {patient_id} was {what}. Its history is still available at /patients/{patient_id}/history."
        )
        self.purged = purged


class VersionNotFound(PatientError):
    def __init__(self, patient_id: object, version: int) -> None:
        super().__init__(f"Patient {patient_id} has no version {version}.")


class DuplicateEmail(PatientError):
    def __init__(self, email: str) -> None:
        super().__init__(f"A patient with email {email} already exists.")


class StalePatient(PatientError):
    def __init__(self, patient_id: uuid.UUID) -> None:
        super().__init__(f"Patient {patient_id} has changed since the given ETag; fetch it again.")


class BillingUnavailable(PatientError):
    """Billing could not open the account in time; nothing was stored, the client may retry."""


class ErasureUnavailable(BillingUnavailable):
    """Billing could not erase its copy of a patient's data in time; nothing was erased, retry the purge."""


class BillingRejected(PatientError):
    """Billing answered with an error that a retry will not fix."""
