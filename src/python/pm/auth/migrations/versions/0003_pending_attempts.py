"""Login attempts still in flight are stored as pending failures until their outcome is known."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.add_column(
        "login_failures", sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_column("pending")
