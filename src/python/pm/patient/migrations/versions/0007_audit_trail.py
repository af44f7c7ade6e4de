"""The audit trail of access to patient data (docs/services/patient.md, "Audit trail"): `audit_events`,
append-only and hash-chained, and `audit_chain`, the one-row chain head that appends lock.

Updates and deletes of entries are refused by triggers (PostgreSQL and SQLite): a mistake cannot
change the trail. Whoever can drop the triggers can still edit it; the hash chain is what shows that
(`python -m pm.patient.main audit-verify`)."""

import sqlalchemy as sa
from alembic import op

from pm.common.db import BIGINT_KEY

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", BIGINT_KEY, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(254), nullable=True),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.Uuid, nullable=True),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    # The filters of GET /audit-events, newest first: a patient's trail, an actor's, a time range.
    op.create_index("ix_audit_events_patient", "audit_events", ["patient_id", "seq"])
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "seq"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    chain = op.create_table(
        "audit_chain",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.bulk_insert(chain, [{"id": 1, "seq": 0, "hash": bytes(32)}])
    if op.get_context().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP;
            END $$
        """)
        op.execute("""
            CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
            FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
        """)
        op.execute("""
            CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()
        """)
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(f"""
                CREATE TRIGGER audit_events_no_{operation.lower()} BEFORE {operation} ON audit_events
                BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END
            """)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_no_truncate ON audit_events")
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_table("audit_chain")
    op.drop_table("audit_events")
