"""The ports over SQLAlchemy: patients, the outbox, and the unit of work that joins them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pm.common.db import Database
from pm.patient.adapters import tables
from pm.patient.adapters.events import serialize
from pm.patient.domain.model import (
    DuplicateEmail,
    Patient,
    PatientChanged,
    PatientPage,
    PatientQuery,
    email_key,
)

_t = tables.patients
_SORT_COLUMNS: dict[str, Any] = {
    # Text sorts ignore case so that "alice" and "Bob" come out in the order people expect.
    "name": sa.func.lower(_t.c.name),
    "email": _t.c.email_key,
    "address": sa.func.lower(_t.c.address),
    "dateOfBirth": _t.c.date_of_birth,
    "registeredDate": _t.c.registered_date,
}


def _now() -> datetime:
    return datetime.now(UTC)


def _like_pattern(search: str) -> str:
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _patient(row: Any) -> Patient:
    return Patient(
        id=row.id,
        name=row.name,
        email=row.email,
        address=row.address,
        date_of_birth=row.date_of_birth,
        registered_date=row.registered_date,
        billing_account_id=row.billing_account_id,
        version=row.version,
    )


def _values(patient: Patient) -> dict[str, Any]:
    return {
        "name": patient.name,
        "email": patient.email,
        "email_key": email_key(patient.email),
        "address": patient.address,
        "date_of_birth": patient.date_of_birth,
        "registered_date": patient.registered_date,
        "billing_account_id": patient.billing_account_id,
        "version": patient.version,
        "updated_at": _now(),
    }


class SqlPatientRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient | None:
        query = sa.select(_t).where(_t.c.id == patient_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return _patient(row) if row else None

    def email_taken(self, email: str, *, other_than: uuid.UUID | None = None) -> bool:
        query = sa.select(_t.c.id).where(_t.c.email_key == email_key(email))
        if other_than is not None:
            query = query.where(_t.c.id != other_than)
        return self.session.execute(query.limit(1)).first() is not None

    def add(self, patient: Patient) -> None:
        self._write(sa.insert(_t).values(id=patient.id, created_at=_now(), **_values(patient)), patient)

    def save(self, patient: Patient) -> None:
        self._write(sa.update(_t).where(_t.c.id == patient.id).values(**_values(patient)), patient)

    def _write(self, statement: Any, patient: Patient) -> None:
        # A concurrent request may take the email between our check and this write: the unique index
        # has the last word. The savepoint keeps the transaction usable on PostgreSQL after the error.
        try:
            with self.session.begin_nested():
                self.session.execute(statement)
        except IntegrityError as exc:
            if "email_key" in str(exc.orig):
                raise DuplicateEmail(patient.email) from None
            raise

    def remove(self, patient_id: uuid.UUID) -> None:
        self.session.execute(sa.delete(_t).where(_t.c.id == patient_id))

    def find(self, query: PatientQuery) -> PatientPage:
        condition: sa.ColumnElement[bool] = sa.true()
        if query.search:
            pattern = _like_pattern(query.search)
            condition = sa.or_(
                sa.func.lower(_t.c.name).like(pattern, escape="\\"), _t.c.email_key.like(pattern, escape="\\")
            )
        total = self.session.execute(sa.select(sa.func.count()).select_from(_t).where(condition)).scalar_one()
        order = [
            _SORT_COLUMNS[key.field].desc() if key.descending else _SORT_COLUMNS[key.field].asc()
            for key in query.sort
        ]
        rows = self.session.execute(
            sa.select(_t).where(condition).order_by(*order, _t.c.id).offset(query.offset).limit(query.size)
        ).all()
        return PatientPage([_patient(r) for r in rows], total, query)


class SqlOutbox:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, event: PatientChanged) -> None:
        self.session.execute(
            sa.insert(tables.outbox).values(
                event_id=event.event_id,
                patient_id=event.patient.id,
                event_type=event.event_type.value,
                payload=serialize(event),
                created_at=event.occurred_at,
            )
        )


class SqlUnitOfWork:
    def __init__(self, session: Session) -> None:
        self.patients = SqlPatientRepository(session)
        self.outbox = SqlOutbox(session)


def unit_of_work_factory(database: Database) -> Callable[[], AbstractContextManager[SqlUnitOfWork]]:
    @contextmanager
    def unit_of_work() -> Iterator[SqlUnitOfWork]:
        with database.transaction() as session:
            yield SqlUnitOfWork(session)

    return unit_of_work
