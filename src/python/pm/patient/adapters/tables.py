"""The patient database as SQLAlchemy Core tables (the migrations create exactly these)."""

from __future__ import annotations

import sqlalchemy as sa

from pm.common.db import BIGINT_KEY, timestamp

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
    timestamp("created_at"),
    timestamp("updated_at"),
)

# A patient's record: named alike in `patients`, `patient_versions` and on `Patient` (adapters/records.py).
RECORD_COLUMNS = ("name", "email", "address", "date_of_birth", "registered_date", "billing_account_id")

outbox = sa.Table(
    "outbox",
    metadata,
    # The publication order.
    sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("patient_id", sa.Uuid, nullable=False),
    sa.Column("event_type", sa.String(32), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    timestamp("created_at"),
    timestamp("published_at", nullable=True),
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
    timestamp("updated_at"),
)

# Data seeds applied once per database (so a deleted demo patient is not brought back on restart).
seeds = sa.Table(
    "seeds",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    timestamp("applied_at"),
)

# PostgreSQL only: the number of patients, kept by triggers in slots that sum to the total (migration 0004).
patient_count = sa.Table(
    "patient_count",
    metadata,
    sa.Column("slot", sa.SmallInteger, primary_key=True),
    sa.Column("total", sa.BigInteger, nullable=False),
)

# Every stored change of a patient, newest last; written in the transaction that made the change
# (migration 0006): the record as it was, in columns of the types `patients` has. A purge nulls the
# record columns of all of a patient's rows (`name` null: erased).
patient_versions = sa.Table(
    "patient_versions",
    metadata,
    sa.Column("patient_id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    timestamp("changed_at"),
    sa.Column("actor", sa.String(254), nullable=False),
    sa.Column("change_type", sa.String(16), nullable=False),
    *(sa.Column(column, patients.c[column].type, nullable=True) for column in RECORD_COLUMNS),
)

# Deleted patients leave `patients` (its list indexes, count triggers and unique email index stay as they
# were) and leave a tombstone here: a GET that misses `patients` looks here to answer 410 (migration 0006).
deleted_patients = sa.Table(
    "deleted_patients",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    timestamp("deleted_at"),
    # The version the deletion wrote (the last one unless a purge came after).
    sa.Column("version", sa.Integer, nullable=False),
    timestamp("purged_at", nullable=True),
)

# The audit trail of access to patient data (migration 0007): append-only, each entry chained to the one
# before by its hash (pm.patient.domain.audit). `seq` is the entry's place in the chain, 1, 2, ...
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", BIGINT_KEY, primary_key=True, autoincrement=False),
    timestamp("at"),
    sa.Column("actor", sa.String(254), nullable=True),
    sa.Column("role", sa.String(16), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("patient_id", sa.Uuid, nullable=True),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("trace_id", sa.String(32), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

# One row (id 1): the last entry's seq and hash. Appending locks it (one writer at a time extends the
# chain) and the verifier compares it with the last entry, so that removing entries at the end shows.
audit_chain = sa.Table(
    "audit_chain",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)
