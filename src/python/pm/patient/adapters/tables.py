"""The patient database as SQLAlchemy Core tables (the migrations create exactly these)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

patients = sa.Table(
    "patients",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    # Lower-cased email with a unique index: uniqueness is case-insensitive on every database.
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
    sa.Column("address", sa.String(255), nullable=False),
    sa.Column("date_of_birth", sa.Date, nullable=False),
    sa.Column("registered_date", sa.Date, nullable=False),
    sa.Column("billing_account_id", sa.String(64), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    # The publication order; SQLite only auto-increments a plain INTEGER primary key.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("patient_id", sa.Uuid, nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    # The writing request's W3C traceparent, sent on as a Kafka header (migration 0004).
    sa.Column("traceparent", sa.String(55), nullable=True),
)

# The topic id the relay last published to: a different id means the broker lost its log (an in-memory
# broker restarted, or the topic was recreated) and every retained event is published again.
relay_state = sa.Table(
    "relay_state",
    metadata,
    sa.Column("topic", sa.String(255), primary_key=True),
    sa.Column("topic_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Data seeds applied once per database (so a deleted demo patient is not brought back on restart).
seeds = sa.Table(
    "seeds",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# PostgreSQL only: the number of patients, kept by triggers in slots that sum to the total (migration 0004).
patient_count = sa.Table(
    "patient_count",
    metadata,
    sa.Column("slot", sa.SmallInteger, primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
)

# Every stored change of a patient, newest last; written in the transaction that made the change
# (migration 0006). A purge nulls the personal columns of all of a patient's rows (`name` null: erased).
patient_versions = sa.Table(
    "patient_versions",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(254), nullable=False),
    sa.Column("change_type", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("address", sa.String(255), nullable=True),
    sa.Column("date_of_birth", sa.Date, nullable=True),
    sa.Column("registered_date", sa.Date, nullable=True),
    sa.Column("billing_account_id", sa.String(64), nullable=True),
)

# Deleted patients leave `patients` (its list indexes, count triggers and unique email index stay as they
# were) and leave a tombstone here: a GET that misses `patients` looks here to answer 410 (migration 0006).
deleted_patients = sa.Table(
    "deleted_patients",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    # The version the deletion wrote (the last one unless a purge came after).
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
)
