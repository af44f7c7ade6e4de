"""Recorded patient events, running totals, registrations per month and parked messages."""

import sqlalchemy as sa
from alembic import op

from pm.common.db import BIGINT_KEY

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "patient_event",
        sa.Column("seq", BIGINT_KEY, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid, nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_date", sa.Date, nullable=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("event_id", name="uq_patient_event_event_id"),
    )
    op.create_index("ix_patient_event_recent", "patient_event", ["occurred_at", "seq"])
    totals = op.create_table(
        "totals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patients_created", sa.BigInteger, nullable=False),
        sa.Column("patients_updated", sa.BigInteger, nullable=False),
        sa.Column("patients_deleted", sa.BigInteger, nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(
        totals,
        [
            {
                "id": 1,
                "patients_created": 0,
                "patients_updated": 0,
                "patients_deleted": 0,
                "last_event_at": None,
            }
        ],
    )
    op.create_table(
        "registrations_per_month",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "dead_letter",
        sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_dead_letter_position"),
    )


def downgrade() -> None:
    op.drop_table("dead_letter")
    op.drop_table("registrations_per_month")
    op.drop_table("totals")
    op.drop_index("ix_patient_event_recent", table_name="patient_event")
    op.drop_table("patient_event")
