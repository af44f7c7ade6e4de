"""Patient history and soft deletion: `patient_versions` keeps every stored change of a patient (the record
as it was, who, when, what kind), `deleted_patients` the tombstones of deleted patients.

Existing patients (the seed among them) get one CREATED version holding the record as it is now, at its
current version number, by the actor `migration` (who made the earlier changes was not recorded).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "patient_versions",
        sa.Column("patient_id", sa.Uuid, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("change_type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("address", sa.String(255), nullable=True),
        sa.Column("date_of_birth", sa.Date, nullable=True),
        sa.Column("registered_date", sa.Date, nullable=True),
        sa.Column("billing_account_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "deleted_patients",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("""
        INSERT INTO patient_versions (patient_id, version, changed_at, actor, change_type, name, email,
                                      address, date_of_birth, registered_date, billing_account_id)
        SELECT id, version, updated_at, 'migration', 'CREATED', name, email, address, date_of_birth,
               registered_date, billing_account_id
        FROM patients
        """)


def downgrade() -> None:
    op.drop_table("deleted_patients")
    op.drop_table("patient_versions")
