"""Adds a column, so that downgrade to a middle revision is tested too."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("widget") as batch:
        batch.add_column(sa.Column("colour", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("widget") as batch:
        batch.drop_column("colour")
