"""Analytics' schema as SQLAlchemy Core tables (the migrations are the source of truth for DDL)."""

from __future__ import annotations

import sqlalchemy as sa

from pm.common.db import BIGINT_KEY, timestamp

metadata = sa.MetaData()

patient_event = sa.Table(
    "patient_event",
    metadata,
    sa.Column("seq", BIGINT_KEY, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("patient_id", sa.String(64), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    timestamp("occurred_at"),
    sa.Column("registered_date", sa.Date, nullable=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("event_id", name="uq_patient_event_event_id"),
)

# Every recorded event's id, kept after its raw event is purged (PM_ANALYTICS_EVENT_RETENTION) for as long
# as the patient outbox may publish it again (PM_OUTBOX_RETENTION): the de-duplication key.
processed_event = sa.Table(
    "processed_event",
    metadata,
    sa.Column("event_id", sa.Uuid, primary_key=True),
    timestamp("occurred_at"),
)

totals = sa.Table(
    "totals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("patients_created", sa.BigInteger, nullable=False),
    sa.Column("patients_updated", sa.BigInteger, nullable=False),
    sa.Column("patients_deleted", sa.BigInteger, nullable=False),
    timestamp("last_event_at", nullable=True),
)
TOTALS_ROW = 1

registrations_per_month = sa.Table(
    "registrations_per_month",
    metadata,
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

dead_letter = sa.Table(
    "dead_letter",
    metadata,
    sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.String(255), nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=True),
    sa.Column("error", sa.Text, nullable=False),
    timestamp("parked_at"),
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letter_position"),
)
