"""What the use cases need from the outside world, as abstract interfaces."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from pm.common.ports import Transaction
from pm.patient.domain.model import (
    Patient,
    PatientChanged,
    PatientPage,
    PatientQuery,
    PatientVersion,
    Tombstone,
)


class PatientRepository(Protocol):
    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient | None: ...

    def email_taken(self, email: str, *, other_than: uuid.UUID | None = None) -> bool: ...

    def add(self, patient: Patient) -> None:
        """Raises DuplicateEmail if the email is already taken."""

    def save(self, patient: Patient) -> None:
        """Store a changed patient; raises DuplicateEmail if the new email is taken."""

    def remove(self, patient_id: uuid.UUID) -> None: ...

    def find(self, query: PatientQuery) -> PatientPage: ...


class Outbox(Protocol):
    def add(self, event: PatientChanged) -> None: ...

    def erase(self, patient_id: uuid.UUID) -> int:
        """Rewrite the patient's stored events without personal data."""


class VersionRepository(Protocol):
    def add(self, version: PatientVersion) -> None: ...

    def list(
        self, patient_id: uuid.UUID, *, size: int, after_version: int | None = None
    ) -> list[PatientVersion]:
        """Newest first; `after_version`: only the versions older than that one."""

    def get(self, patient_id: uuid.UUID, version: int) -> PatientVersion | None: ...

    def latest(self, patient_id: uuid.UUID) -> int | None: ...

    def erase(self, patient_id: uuid.UUID) -> int:
        """Null the personal data of every version of the patient."""


class TombstoneRepository(Protocol):
    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Tombstone | None: ...

    def add(self, tombstone: Tombstone) -> None: ...

    def mark_purged(self, patient_id: uuid.UUID, version: int, purged_at: datetime) -> None: ...


class UnitOfWork(Transaction, Protocol):
    """One transaction (pm.common.db.UnitOfWork): patient changes and their outbox events commit
    together on `commit()`; leaving without it rolls back."""

    @property
    def patients(self) -> PatientRepository: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def versions(self) -> VersionRepository: ...

    @property
    def tombstones(self) -> TombstoneRepository: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, autocommit: bool = False) -> UnitOfWork:
        """A new unit of work; `autocommit=True`: no transaction, for a lone read (one round trip)."""


class Billing(Protocol):
    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        """The account id (idempotent per patient); raises BillingUnavailable / BillingRejected."""

    def erase_patient_data(self, patient_id: uuid.UUID) -> None:
        """Erase billing's copy of the patient's name and email (idempotent; nothing to erase is fine);
        raises BillingUnavailable / BillingRejected."""
