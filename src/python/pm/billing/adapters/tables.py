"""The billing schema as SQLAlchemy Core tables (the migrations are the source of truth for DDL)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

billing_account = sa.Table(
    "billing_account",
    metadata,
    sa.Column("account_id", sa.Uuid, primary_key=True),
    sa.Column("patient_id", sa.Uuid, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # When the patient's name and email were erased (a purge of the patient; migration 0002).
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("patient_id", name="uq_billing_account_patient_id"),
)
