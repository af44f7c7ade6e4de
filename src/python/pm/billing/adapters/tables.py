"""The billing schema as SQLAlchemy Core tables (the migrations are the source of truth for DDL)."""

from __future__ import annotations

import sqlalchemy as sa

from pm.common.db import timestamp

metadata = sa.MetaData()

billing_account = sa.Table(
    "billing_account",
    metadata,
    sa.Column("account_id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    timestamp("created_at"),
    # When the patient's name and email were erased (a purge of the patient; migration 0002).
    timestamp("erased_at", nullable=True),
    sa.UniqueConstraint("patient_id", name="uq_billing_account_patient_id"),
)
