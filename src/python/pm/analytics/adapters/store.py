"""Analytics' store in SQL (PostgreSQL or SQLite): the batch unit of work and the read side."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pm.analytics.adapters.tables import (
    TOTALS_ROW,
    dead_letter,
    patient_event,
    processed_event,
    registrations_per_month,
    totals,
)
from pm.analytics.domain.model import EventType, PatientEvent, Summary, Tally
from pm.analytics.service_layer.services import DeadLetter, RawMessage
from pm.common.db import Database, UnitOfWork, dialect_insert, from_row

# What a stored event's name and email become when the patient is purged.
ERASED = ""


class SqlEventStore:
    """Events, aggregates and dead letters inside the unit of work's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._insert = dialect_insert(session)

    def add_new_events(
        self, events: Sequence[PatientEvent], messages: Sequence[RawMessage]
    ) -> list[PatientEvent]:
        if not events:
            return []
        # The id table decides what is new: it outlives the raw events, which retention purges.
        first_seen = set(
            self.session.execute(
                self._insert(processed_event)
                .values([{"event_id": e.event_id, "occurred_at": e.occurred_at} for e in events])
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(processed_event.c.event_id)
            ).scalars()
        )
        fresh = [(e, m) for e, m in zip(events, messages, strict=True) if e.event_id in first_seen]
        if not fresh:
            return []
        rows = [
            {
                "event_id": event.event_id,
                "event_type": event.event_type.value,
                "patient_id": event.patient_id,
                "name": event.name,
                "email": event.email,
                "actor": event.actor,
                "occurred_at": event.occurred_at,
                "registered_date": event.registered_date,
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
            }
            for event, message in fresh
        ]
        # One statement per batch; RETURNING names exactly the rows inserted (not the conflicts, and one
        # row for an id repeated within the batch).
        statement = (
            self._insert(patient_event)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(patient_event.c.event_id)
        )
        inserted = set(self.session.execute(statement).scalars())
        new: list[PatientEvent] = []
        for event, _message in fresh:
            if event.event_id in inserted:
                inserted.discard(event.event_id)
                new.append(event)
        return new

    def add_to_aggregates(self, tally: Tally) -> None:
        if tally.created == tally.updated == tally.deleted == 0:
            return
        latest = tally.latest
        self.session.execute(
            sa.update(totals)
            .where(totals.c.id == TOTALS_ROW)
            .values(
                patients_created=totals.c.patients_created + tally.created,
                patients_updated=totals.c.patients_updated + tally.updated,
                patients_deleted=totals.c.patients_deleted + tally.deleted,
                last_event_at=sa.case(
                    (totals.c.last_event_at.is_(None), latest),
                    (totals.c.last_event_at < latest, latest),
                    else_=totals.c.last_event_at,
                ),
            )
        )
        for month, count in sorted(tally.registrations.items()):
            upsert = self._insert(registrations_per_month).values(month=month, count=count)
            self.session.execute(
                upsert.on_conflict_do_update(
                    index_elements=["month"], set_={"count": registrations_per_month.c.count + count}
                )
            )

    def park(self, dead_letters: Sequence[DeadLetter]) -> list[DeadLetter]:
        parked: list[DeadLetter] = []
        now = datetime.now(UTC)
        for letter in dead_letters:
            message = letter.message
            statement = (
                self._insert(dead_letter)
                .values(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    payload=message.value,
                    error=letter.error,
                    parked_at=now,
                )
                .on_conflict_do_nothing(index_elements=["topic", "partition", "offset"])
            )
            if self.session.execute(statement).rowcount == 1:  # type: ignore[attr-defined]
                parked.append(letter)
        return parked

    def erase_patient(self, patient_id: str) -> int:
        events = self.session.execute(
            sa.update(patient_event)
            .where(patient_event.c.patient_id == patient_id)
            .values(name=ERASED, email=ERASED)
        )
        # A parked message of this patient (keyed by its id) may hold the data in its raw bytes.
        letters = self.session.execute(
            sa.update(dead_letter)
            .where(dead_letter.c.key == patient_id.encode("ascii"), dead_letter.c.payload.is_not(None))
            .values(payload=None, error=sa.literal("payload erased: the patient was purged"))
        )
        return int(events.rowcount or 0) + int(letters.rowcount or 0)  # type: ignore[attr-defined]


class SqlAnalyticsReader:
    """The read side: each query in its own unit of work."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def summary(self) -> Summary:
        with UnitOfWork(self.database) as uow:
            session = uow.session
            row = session.execute(sa.select(totals).where(totals.c.id == TOTALS_ROW)).one()
            months = session.execute(
                sa.select(registrations_per_month.c.month, registrations_per_month.c.count).order_by(
                    registrations_per_month.c.month
                )
            ).all()
        return Summary(
            patients_created=row.patients_created,
            patients_updated=row.patients_updated,
            patients_deleted=row.patients_deleted,
            registrations_per_month=[(month, count) for month, count in months],
            last_event_at=row.last_event_at,
        )

    def recent_events(self, limit: int) -> list[PatientEvent]:
        query = (
            sa.select(patient_event)
            .order_by(patient_event.c.occurred_at.desc(), patient_event.c.seq.desc())
            .limit(limit)
        )
        with UnitOfWork(self.database) as uow:
            rows = uow.session.execute(query).all()
        return [from_row(PatientEvent, row, event_type=EventType(row.event_type)) for row in rows]


class SqlUnitOfWork(UnitOfWork):
    """A batch from the topic: `events` stores, counts and parks, committed together."""

    events: SqlEventStore

    def attach(self, session: Session) -> None:
        self.events = SqlEventStore(session)


class SqlRetention:
    """Deletes raw events past their retention, and event ids past the replay window, in small batches."""

    def __init__(
        self, database: Database, *, event_seconds: float, id_seconds: float, batch_size: int = 500
    ) -> None:
        self.database = database
        self.event_seconds = event_seconds
        self.id_seconds = max(id_seconds, event_seconds)
        self.batch_size = batch_size

    def purge_batch(self) -> int:
        """One batch of each table, each in its own short transaction; how many rows went."""
        now = datetime.now(UTC)
        events = sa.select(patient_event.c.seq).where(
            patient_event.c.occurred_at < now - timedelta(seconds=self.event_seconds)
        )
        ids = sa.select(processed_event.c.event_id).where(
            processed_event.c.occurred_at < now - timedelta(seconds=self.id_seconds)
        )
        purged = 0
        for table, key, expired in (
            (patient_event, patient_event.c.seq, events),
            (processed_event, processed_event.c.event_id, ids),
        ):
            subquery = expired.limit(self.batch_size).scalar_subquery()
            with self.database.transaction() as session:
                result = session.execute(sa.delete(table).where(key.in_(subquery)))
                purged += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return purged

    def empty(self) -> None:
        """Forget every event and aggregate (a rebuild follows); parked dead letters stay."""
        with self.database.transaction() as session:
            for table in (patient_event, processed_event, registrations_per_month):
                session.execute(sa.delete(table))
            session.execute(
                sa.update(totals)
                .where(totals.c.id == TOTALS_ROW)
                .values(patients_created=0, patients_updated=0, patients_deleted=0, last_event_at=None)
            )
