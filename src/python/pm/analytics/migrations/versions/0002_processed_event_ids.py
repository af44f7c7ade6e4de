"""The ids of every event recorded, kept longer than the raw events: duplicates are dropped by id even after
the raw event (with its personal data) was purged."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "processed_event",
        sa.Column("event_id", sa.Uuid, primary_key=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_processed_event_occurred", "processed_event", ["occurred_at"])
    op.execute(
        "INSERT INTO processed_event (event_id, occurred_at) SELECT event_id, occurred_at FROM patient_event"
    )


def downgrade() -> None:
    op.drop_index("ix_processed_event_occurred", table_name="processed_event")
    op.drop_table("processed_event")
