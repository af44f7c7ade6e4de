"""PostgreSQL only: `audit_append(...)`, one entry appended to the audit trail in one round trip.

The chain head's row lock is held from the moment an entry takes its place until the transaction
commits. Appending from Python took two round trips under that lock (the head's `UPDATE ... RETURNING`,
then the insert), with the hash computed in between; under concurrent writes every transaction that
changes a patient queued on it (docs/benchmarks.md, "The audit trail's cost, cut twice"). The function
does the same steps in the server: it takes the head, times the entry, hashes it, inserts it and moves
the head.

The hash is taken over the same bytes as `pm.patient.domain.audit.canonical`: the caller passes the JSON
of the entry's fields between the time and the previous hash (`middle`, made by
`pm.patient.domain.audit.middle_text`), and the function writes the rest around it — `seq` as digits, the
time as `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, the previous hash as lower-case hex. The verifier, which
recomputes every hash in Python, checks that the two agree.
"""

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE FUNCTION audit_append(
            p_actor text, p_role text, p_action text, p_patient_id uuid, p_status smallint,
            p_request_id text, p_trace_id text, p_client text, p_detail text, p_middle text,
            OUT entry_seq bigint, OUT entry_at timestamptz, OUT entry_prev_hash bytea, OUT entry_hash bytea
        ) LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE audit_chain AS c SET seq = c.seq + 1 WHERE c.id = 1 RETURNING c.seq, c.hash
                INTO entry_seq, entry_prev_hash;
            entry_at := clock_timestamp();
            entry_hash := sha256(convert_to(
                '[' || entry_seq || ',"'
                || to_char(entry_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                || '",' || p_middle || ',"' || encode(entry_prev_hash, 'hex') || '"]',
                'UTF8'
            ));
            INSERT INTO audit_events (seq, at, actor, role, action, patient_id, status, request_id,
                                      trace_id, client, detail, prev_hash, hash)
            VALUES (entry_seq, entry_at, p_actor, p_role, p_action, p_patient_id, p_status, p_request_id,
                    p_trace_id, p_client, p_detail, entry_prev_hash, entry_hash);
            UPDATE audit_chain AS c SET hash = entry_hash WHERE c.id = 1;
        END $$
    """)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION audit_append(text, text, text, uuid, smallint, text, text, text, text, text)"
        )
