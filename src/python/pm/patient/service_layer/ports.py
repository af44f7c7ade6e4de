"""What the use cases need from the outside world, as abstract interfaces."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

from pm.common.ports import Transaction
from pm.patient.domain.model import Patient, PatientChanged, PatientPage, PatientQuery


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


class UnitOfWork(Transaction, Protocol):
    """One transaction (pm.common.db.UnitOfWork): patient changes and their outbox events commit
    together on `commit()`; leaving without it rolls back."""

    @property
    def patients(self) -> PatientRepository: ...

    @property
    def outbox(self) -> Outbox: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class Billing(Protocol):
    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        """The account id (idempotent per patient); raises BillingUnavailable / BillingRejected."""
