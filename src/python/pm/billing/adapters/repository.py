"""Billing accounts in SQL (PostgreSQL or SQLite), inside the unit of work's transaction."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pm.billing.adapters.tables import billing_account
from pm.billing.domain.model import ERASED, BillingAccount
from pm.common.db import UnitOfWork, dialect_insert


@functools.cache
def _add_if_absent(insert: Any) -> Any:
    """The insert of an account (its columns are the entity's fields, given as parameters), built once per
    dialect: building it per call cost about 0.25 ms of CPU (docs/benchmarks.md, "Statements built once")."""
    return (
        insert(billing_account)
        .on_conflict_do_nothing(index_elements=["patient_id"])
        .returning(*billing_account.c)
    )


class SqlAccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._add = _add_if_absent(dialect_insert(session))

    def add_if_absent(self, account: BillingAccount) -> BillingAccount:
        # ON CONFLICT DO NOTHING makes a concurrent duplicate wait for the winner and then skip. The insert
        # returns the row it stored (one round trip for a new account); when it skipped, the SELECT after
        # it (a new snapshot under READ COMMITTED) sees the one stored account.
        inserted = self.session.execute(self._add, dataclasses.asdict(account)).mappings().first()
        stored = _account(inserted) if inserted is not None else self.get(account.patient_id)
        if stored is None:
            raise RuntimeError(f"account for patient {account.patient_id} vanished after insert")
        return stored

    def get(self, patient_id: uuid.UUID) -> BillingAccount | None:
        row = (
            self.session.execute(sa.select(billing_account).where(billing_account.c.patient_id == patient_id))
            .mappings()
            .first()
        )
        return _account(row) if row is not None else None

    def erase_personal_data(self, patient_id: uuid.UUID, erased_at: datetime) -> bool:
        # The first erasure's time is kept: a retry finds the data gone and changes nothing.
        result = self.session.execute(
            sa.update(billing_account)
            .where(billing_account.c.patient_id == patient_id)
            .values(
                name=ERASED,
                email=ERASED,
                erased_at=sa.func.coalesce(billing_account.c.erased_at, erased_at),
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _account(row: Any) -> BillingAccount:
    return BillingAccount(**row)


class SqlUnitOfWork(UnitOfWork):
    accounts: SqlAccountRepository

    def attach(self, session: Session) -> None:
        self.accounts = SqlAccountRepository(session)
