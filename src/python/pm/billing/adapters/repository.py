"""Billing accounts in SQL (PostgreSQL or SQLite), one short transaction per call."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pm.billing.adapters.tables import billing_account
from pm.billing.domain.model import BillingAccount
from pm.billing.service_layer.services import StoreUnavailable
from pm.common.db import Database

# Failures of the database itself (down, unreachable, pool exhausted), as opposed to bugs in our SQL.
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


class SqlAccountRepository:
    def __init__(self, database: Database) -> None:
        self.database = database
        dialect = postgresql if database.engine.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    def add_if_absent(self, account: BillingAccount) -> BillingAccount:
        # ON CONFLICT DO NOTHING makes a concurrent duplicate wait for the winner and then skip, so the
        # SELECT after it (a new snapshot under READ COMMITTED) always sees the one stored account.
        statement = (
            self._insert(billing_account)
            .values(
                account_id=account.account_id,
                patient_id=account.patient_id,
                name=account.name,
                email=account.email,
                status=account.status,
                created_at=account.created_at,
            )
            .on_conflict_do_nothing(index_elements=["patient_id"])
        )
        with self._transaction() as session:
            session.execute(statement)
            stored = _select(session, account.patient_id)
        if stored is None:
            raise RuntimeError(f"account for patient {account.patient_id} vanished after insert")
        return stored

    def get(self, patient_id: uuid.UUID) -> BillingAccount | None:
        with self._transaction() as session:
            return _select(session, patient_id)

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        try:
            with self.database.transaction() as session:
                yield session
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(type(exc).__name__) from exc


def _select(session: Session, patient_id: uuid.UUID) -> BillingAccount | None:
    row = (
        session.execute(sa.select(billing_account).where(billing_account.c.patient_id == patient_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    created_at = row["created_at"]
    # SQLite hands timestamps back without a zone; they were written in UTC.
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return BillingAccount(
        account_id=row["account_id"],
        patient_id=row["patient_id"],
        name=row["name"],
        email=row["email"],
        status=row["status"],
        created_at=created_at,
    )
