"""Billing use cases over a unit of work holding the account repository."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from pm.billing.domain.model import AccountNotFound, BillingAccount, open_account, parse_patient_id
from pm.common.ports import Transaction


class AccountRepository(Protocol):
    def add_if_absent(self, account: BillingAccount) -> BillingAccount:
        """Store `account` unless its patient already has one; return the patient's stored account.

        Must hold under concurrent calls for one patient: exactly one account is ever stored.
        """

    def get(self, patient_id: uuid.UUID) -> BillingAccount | None: ...

    def erase_personal_data(self, patient_id: uuid.UUID, erased_at: datetime) -> bool:
        """Blank the account's name and email and note when; False if the patient has no account."""


class UnitOfWork(Transaction, Protocol):
    @property
    def accounts(self) -> AccountRepository: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_billing_account(
    uow: UnitOfWorkFactory,
    *,
    patient_id: str,
    name: str,
    email: str,
    now: Callable[[], datetime] = utc_now,
) -> BillingAccount:
    """Open the patient's account, or return the one already open (idempotent on patient_id)."""
    candidate = open_account(
        patient_id=patient_id, name=name, email=email, account_id=uuid.uuid4(), now=now()
    )
    with uow() as work:
        account = work.accounts.add_if_absent(candidate)
        work.commit()
    return account


def get_billing_account(uow: UnitOfWorkFactory, *, patient_id: str) -> BillingAccount:
    wanted = parse_patient_id(patient_id)
    with uow() as work:
        account = work.accounts.get(wanted)
    if account is None:
        raise AccountNotFound(f"no billing account for patient {wanted}")
    return account


def erase_patient_data(
    uow: UnitOfWorkFactory, *, patient_id: str, now: Callable[[], datetime] = utc_now
) -> bool:
    """Erase the patient's name and email from its account (a purge of the patient). Idempotent: a second
    erasure, or one for a patient without an account, changes nothing and succeeds."""
    wanted = parse_patient_id(patient_id)
    with uow() as work:
        found = work.accounts.erase_personal_data(wanted, now())
        work.commit()
    return found
