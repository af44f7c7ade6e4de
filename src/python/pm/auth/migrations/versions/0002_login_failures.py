"""Failed logins per email and per client, the shared state of the brute-force defence."""

import sqlalchemy as sa
from alembic import op

from pm.common.db import BIGINT_KEY

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", BIGINT_KEY, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(254), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["scope", "subject", "failed_at"])
    op.create_index("ix_login_failures_failed_at", "login_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_table("login_failures")
