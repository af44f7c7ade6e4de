"""Indexes for the patient list: one (key, id) index per sort key, read both ways by keyset paging, and
on PostgreSQL trigram indexes for the substring search on name and email."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

SORT_INDEXES: dict[str, list[str | sa.TextClause]] = {
    "ix_patients_name": [sa.text("lower(name)"), "id"],
    "ix_patients_email": ["email_key", "id"],
    "ix_patients_address": [sa.text("lower(address)"), "id"],
    "ix_patients_date_of_birth": ["date_of_birth", "id"],
    "ix_patients_registered_date": ["registered_date", "id"],
}


# The column under lower(), so that reading ids in this order is an index-only scan (PostgreSQL plans one
# only when the index holds every column the query names); email_key too for the default order, so that
# the search filter runs on the index.
INCLUDE = {"ix_patients_name": ["name", "email_key"], "ix_patients_address": ["address"]}


def upgrade() -> None:
    for name, columns in SORT_INDEXES.items():
        op.create_index(name, "patients", columns, postgresql_include=INCLUDE.get(name, []))
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite's LIKE scans; it is the single-user development database
    _create_pg_trgm()
    op.execute("CREATE INDEX ix_patients_name_trgm ON patients USING gin (lower(name) gin_trgm_ops)")
    op.execute("CREATE INDEX ix_patients_email_trgm ON patients USING gin (email_key gin_trgm_ops)")


def _create_pg_trgm() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first():
        return
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
    if not available:
        raise sa.exc.SQLAlchemyError(
            "the PostgreSQL extension pg_trgm (patient search) is not installed on the server; "
            "install the server's contrib package (e.g. postgresql-contrib) and migrate again"
        )
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION pg_trgm"))
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        raise sa.exc.SQLAlchemyError(
            f"cannot create the PostgreSQL extension pg_trgm (patient search): {reason}; "
            "a superuser can run CREATE EXTENSION pg_trgm in this database once, then migrate again"
        ) from None


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_index("ix_patients_email_trgm", table_name="patients")
        op.drop_index("ix_patients_name_trgm", table_name="patients")
    for name in reversed(SORT_INDEXES):
        op.drop_index(name, table_name="patients")
