"""The relay's memory of the topic it published to (to notice a broker that lost its log) and an index for
purging published outbox rows by age."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "relay_state",
        sa.Column("topic", sa.String(255), primary_key=True),
        sa.Column("topic_id", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Retention purges published rows by age (counted from creation, so that a replay cannot extend it).
    op.create_index(
        "ix_outbox_published",
        "outbox",
        ["created_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
        sqlite_where=sa.text("published_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_published", table_name="outbox")
    op.drop_table("relay_state")
