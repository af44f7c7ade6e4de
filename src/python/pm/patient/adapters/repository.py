"""The ports over SQLAlchemy: patients, the outbox, and the unit of work that joins them."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pm.common import tracing
from pm.common.db import Database, UnitOfWork, row_by_id
from pm.patient.adapters import filters, tables
from pm.patient.adapters.audit import SqlAuditLog
from pm.patient.adapters.events import event_type, scrub, serialize
from pm.patient.adapters.history import SqlTombstoneRepository, SqlVersionRepository
from pm.patient.adapters.records import patient_of, record_values
from pm.patient.domain.model import (
    Cursor,
    Direction,
    DuplicateEmail,
    InvalidPatient,
    Patient,
    PatientChanged,
    PatientPage,
    PatientQuery,
    email_key,
)
from pm.patient.service_layer.audit import current_access

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


# Trigram indexes need 3 characters to narrow a substring search; shorter searches match from the start.
MIN_SUBSTRING = 3
# Above this many matches X-Total-Count is an estimate: counting means reading each match from the table
# (about 10k of a million cost 120-180 ms on the development machine; 1,000 cost a tenth of that).
EXACT_COUNT_LIMIT = 1_000


def _like_pattern(search: str) -> str:
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%" if len(search) >= MIN_SUBSTRING else f"{escaped}%"


def _patient(row: Any) -> Patient:
    return patient_of(row, row.id, updated_at=row.updated_at)


# Writes as statements built once with the row as parameters: `insert(...).values(row)` per write cost about
# 0.1 ms of CPU to build (docs/benchmarks.md, "Statements built once").
_INSERT = sa.insert(_t)
_UPDATE = sa.update(_t).where(_t.c.id == sa.bindparam("patient_key"))
_INSERT_EVENT = sa.insert(tables.outbox)


def _values(patient: Patient) -> dict[str, Any]:
    return {
        **record_values(patient),
        "email_key": email_key(patient.email),
        "version": patient.version,
        "updated_at": _now(),
    }


class SqlPatientRepository:
    def __init__(self, session: Session, *, exact_count_limit: int = EXACT_COUNT_LIMIT) -> None:
        self.session = session
        self.exact_count_limit = exact_count_limit

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient | None:
        row = row_by_id(self.session, _t, patient_id, for_update=for_update)
        return _patient(row) if row else None

    def email_taken(self, email: str, *, other_than: uuid.UUID | None = None) -> bool:
        query = sa.select(_t.c.id).where(_t.c.email_key == email_key(email))
        if other_than is not None:
            query = query.where(_t.c.id != other_than)
        return self.session.execute(query.limit(1)).first() is not None

    def add(self, patient: Patient) -> None:
        self._write(_INSERT, {"id": patient.id, "created_at": _now(), **_values(patient)}, patient)

    def save(self, patient: Patient) -> None:
        self._write(_UPDATE, {"patient_key": patient.id, **_values(patient)}, patient)

    def _write(self, statement: Any, row: dict[str, Any], patient: Patient) -> None:
        # A concurrent request may take the email between our check and this write: the unique index
        # has the last word. No savepoint (two more round trips per write): DuplicateEmail ends the unit
        # of work, which rolls the whole transaction back.
        try:
            self.session.execute(statement, row)
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
        if query.filters:
            condition = sa.and_(condition, *(filters.condition(f) for f in query.filters))
        # Ties are broken by id in the direction of the last key, so that one index per key, (key, id),
        # serves the order both ways and a keyset position is a plain row comparison.
        keys = [(_SORT_COLUMNS[key.field], key.descending) for key in query.sort]
        keys.append((_t.c.id, query.sort[-1].descending))
        cursor = self._resolved(query.cursor, keys)
        # On PostgreSQL the whole list's size is exact and cheap (kept by triggers, migration 0004).
        counted = None if query.search or query.filters else self._count_all()
        # A page number past the middle is read backwards from the end: fewer index entries to skip.
        from_end = cursor is None and counted is not None and query.offset > counted // 2
        backwards = from_end or (cursor is not None and cursor.direction is not Direction.AFTER)
        order = [column.desc() if descending != backwards else column.asc() for column, descending in keys]
        # The page's ids first, then their rows: the ids come from the sort index alone (an index-only
        # scan, the search filter included for the name order), so the rows skipped by `page=N` or
        # filtered out by a search are never read from the table.
        ids = sa.select(_t.c.id).where(condition).order_by(*order)
        if from_end:
            assert counted is not None
            # The page and the row after it (is there more?) are the entries counted-1-offset-size
            # ... counted-1-offset of the reversed list.
            skip = max(0, counted - query.offset - query.size - 1)
            ids = ids.offset(skip).limit(max(0, counted - query.offset - skip))
        elif cursor is None:
            ids = ids.offset(query.offset).limit(query.size + 1)
        elif cursor.direction is Direction.LAST:
            ids = ids.limit(query.size + 1)
        else:
            ids = ids.where(_beyond(keys, (*cursor.values, cursor.id), backwards)).limit(query.size + 1)
        page = ids.subquery()
        statement = sa.select(_t, *(column.label(f"k{i}") for i, (column, _) in enumerate(keys[:-1])))
        rows = list(self.session.execute(statement.join(page, page.c.id == _t.c.id).order_by(*order)))
        if from_end:
            rows.reverse()  # the row after the page, if any, is now the last one
        more = len(rows) > query.size
        rows = rows[: query.size]
        if backwards and not from_end:
            rows.reverse()
        if counted is not None:
            total, estimated = counted, False
        elif cursor is None and not more and (rows or query.page == 0):
            total, estimated = query.offset + len(rows), False  # this page holds the end of the list
        else:
            total, estimated = self._total(condition)

        def position(row: Any, direction: Direction) -> Cursor:
            return Cursor(direction, tuple(getattr(row, f"k{i}") for i in range(len(keys) - 1)), row.id)

        before = position(rows[0], Direction.BEFORE) if rows else None
        after = position(rows[-1], Direction.AFTER) if rows else None
        if cursor is None:
            prev, next_ = (before if query.page > 0 else None), (after if more else None)
        elif backwards:
            prev, next_ = (before if more else None), (
                after if cursor.direction is Direction.BEFORE else None
            )
        else:
            prev, next_ = before, (after if more else None)
        return PatientPage([_patient(r) for r in rows], total, query, estimated, next_, prev)

    def _resolved(self, cursor: Cursor | None, keys: list[tuple[Any, bool]]) -> Cursor | None:
        """A cursor from a link names a row by id only: read that row's sort key."""
        if cursor is None or cursor.direction is Direction.LAST or cursor.values:
            return cursor
        columns = [column for column, _ in keys[:-1]]
        row = self.session.execute(sa.select(*columns).where(_t.c.id == cursor.id)).first()
        if row is None:
            raise InvalidPatient(
                {
                    "cursor": "The cursor's position is gone (that patient was deleted); start from the first page."
                }
            )
        return replace(cursor, values=tuple(row))

    def _count_all(self) -> int | None:
        """The number of patients on PostgreSQL (the triggers' slots summed); None elsewhere."""
        if self.session.get_bind().dialect.name != "postgresql":
            return None
        total = sa.func.coalesce(sa.func.sum(tables.patient_count.c.total), 0)
        return int(self.session.execute(sa.select(total)).scalar_one())

    def _total(self, condition: sa.ColumnElement[bool]) -> tuple[int, bool]:
        """(count, estimated) of a search's matches (and of the whole list on SQLite). On PostgreSQL the
        planner's row estimate comes first (trigram statistics): above the limit, it is the answer. Else
        the rows are counted, at most limit + 1 of them. SQLite has no estimate and counts."""
        limit = self.exact_count_limit
        estimate = self._estimate(condition) if self.session.get_bind().dialect.name == "postgresql" else None
        if estimate is not None and estimate > limit:
            return estimate, True
        capped = sa.select(sa.literal(1)).select_from(_t).where(condition).limit(limit + 1).subquery()
        count = self.session.execute(sa.select(sa.func.count()).select_from(capped)).scalar_one()
        if count <= limit:
            return count, False
        if estimate is None:
            return (
                self.session.execute(
                    sa.select(sa.func.count()).select_from(_t).where(condition)
                ).scalar_one(),
                False,
            )
        return max(estimate, limit + 1), True

    def _estimate(self, condition: sa.ColumnElement[bool]) -> int:
        compiled = (
            sa.select(sa.literal(1))
            .select_from(_t)
            .where(condition)
            .compile(dialect=self.session.get_bind().dialect)
        )
        plan = (
            self.session.connection()
            .exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
            .scalar_one()
        )
        return int(plan[0]["Plan"]["Plan Rows"])


def _beyond(keys: list[tuple[Any, bool]], values: tuple[Any, ...], backwards: bool) -> sa.ColumnElement[bool]:
    """Rows strictly past `values` in the scan order. One direction for every key (the usual case) is a
    row comparison that the (key, id) index answers as a range; mixed directions spell it out, with the
    first key's bound in front so that its index still narrows the scan."""
    later = [descending == backwards for _, descending in keys]  # True: later rows have greater values
    columns = [column for column, _ in keys]
    bound = [
        sa.bindparam(None, value, type_=column.type) for column, value in zip(columns, values, strict=True)
    ]
    if all(later) or not any(later):
        left, right = sa.tuple_(*columns), sa.tuple_(*bound)
        return left > right if later[0] else left < right
    alternatives = []
    for i, column in enumerate(columns):
        step = column > bound[i] if later[i] else column < bound[i]
        alternatives.append(sa.and_(*(columns[j] == bound[j] for j in range(i)), step))
    first = columns[0] >= bound[0] if later[0] else columns[0] <= bound[0]
    return sa.and_(first, sa.or_(*alternatives))


class SqlOutbox:
    def __init__(self, session: Session) -> None:
        self.session = session
        # The patients this transaction changed (their events), for the audit entry joining the commit.
        self.patient_ids: list[uuid.UUID] = []

    def add(self, event: PatientChanged) -> None:
        self.patient_ids.append(event.patient.id)
        self.session.execute(
            _INSERT_EVENT,
            {
                "event_id": event.event_id,
                "patient_id": event.patient.id,
                "event_type": event_type(event.change),
                "payload": serialize(event),
                "created_at": event.occurred_at,
                "traceparent": tracing.current_traceparent(),
            },
        )

    def erase(self, patient_id: uuid.UUID) -> int:
        """Rewrite the stored events of a patient without personal data (published or not); how many."""
        o = tables.outbox
        rows = list(
            self.session.execute(
                sa.select(o.c.id, o.c.payload).where(o.c.patient_id == patient_id).with_for_update()
            )
        )
        for row in rows:
            self.session.execute(sa.update(o).where(o.c.id == row.id).values(payload=scrub(row.payload)))
        return len(rows)


class SqlUnitOfWork(UnitOfWork):
    patients: SqlPatientRepository
    outbox: SqlOutbox
    versions: SqlVersionRepository
    tombstones: SqlTombstoneRepository
    audit: SqlAuditLog

    def __init__(
        self, database: Database, *, exact_count_limit: int = EXACT_COUNT_LIMIT, autocommit: bool = False
    ) -> None:
        super().__init__(database, autocommit=autocommit)
        self.exact_count_limit = exact_count_limit

    def attach(self, session: Session) -> None:
        self.patients = SqlPatientRepository(session, exact_count_limit=self.exact_count_limit)
        self.outbox = SqlOutbox(session)
        self.versions = SqlVersionRepository(session)
        self.tombstones = SqlTombstoneRepository(session)
        self.audit = SqlAuditLog(session)

    def commit(self) -> None:
        """A transaction that changed patients (it wrote their events) also writes the audit entry of
        the request being served: the change and its record commit together or not at all."""
        access = current_access.get()
        if access is None or access.recorded or not self.outbox.patient_ids:
            super().commit()
            return
        entry = access.entry
        self.audit.append(
            replace(
                entry, status=access.success_status, patient_id=entry.patient_id or self.outbox.patient_ids[0]
            )
        )
        super().commit()
        access.recorded = True
