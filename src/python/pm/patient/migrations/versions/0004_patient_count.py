"""On PostgreSQL, the number of patients kept by triggers, so that the list's total is exact at any size
and a page asked for by number past the middle is read backwards from the end (a short walk) instead of
skipping every entry before it. Counting a million index entries costs tens of milliseconds per request;
reading this table costs one small scan.

Every statement that inserts or deletes patients adds its row count to one of a few slots (chosen by
the connection's server process, so concurrent writers rarely wait on the same row); the total is their
sum. TRUNCATE empties it. SQLite counts its (development-sized) table instead.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

SLOTS = 16


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.create_table(
        "patient_count",
        sa.Column("slot", sa.SmallInteger, primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
    )
    op.execute(f"""
        CREATE FUNCTION patient_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            changed bigint;
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                DELETE FROM patient_count;
                RETURN NULL;
            ELSIF TG_OP = 'INSERT' THEN
                SELECT count(*) INTO changed FROM inserted_rows;
            ELSE
                SELECT -count(*) INTO changed FROM deleted_rows;
            END IF;
            IF changed <> 0 THEN
                INSERT INTO patient_count AS c (slot, total) VALUES (pg_backend_pid() % {SLOTS}, changed)
                ON CONFLICT (slot) DO UPDATE SET total = c.total + excluded.total;
            END IF;
            RETURN NULL;
        END $$
        """)
    # The triggers first: creating them locks out writers, so the count below misses none.
    op.execute("""
        CREATE TRIGGER patient_count_insert AFTER INSERT ON patients
        REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION patient_count_change()
        """)
    op.execute("""
        CREATE TRIGGER patient_count_delete AFTER DELETE ON patients
        REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION patient_count_change()
        """)
    op.execute("""
        CREATE TRIGGER patient_count_truncate AFTER TRUNCATE ON patients
        FOR EACH STATEMENT EXECUTE FUNCTION patient_count_change()
        """)
    op.execute("INSERT INTO patient_count (slot, total) SELECT 0, count(*) FROM patients")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for trigger in ("patient_count_truncate", "patient_count_delete", "patient_count_insert"):
        op.execute(f"DROP TRIGGER {trigger} ON patients")
    op.execute("DROP FUNCTION patient_count_change()")
    op.drop_table("patient_count")
