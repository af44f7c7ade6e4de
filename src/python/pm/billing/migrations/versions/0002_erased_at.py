"""Accounts note when the patient's name and email were erased (a purge of the patient in the patient
service blanks them through `ErasePatientData`)."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("billing_account") as batch:
        batch.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_account") as batch:
        batch.drop_column("erased_at")
