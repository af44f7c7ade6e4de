"""The audit trail in SQL: appending under the chain head's lock, pages newest first, the verifier's read.

Appending several entries is three statements in the caller's transaction: `UPDATE audit_chain ...
RETURNING` takes the chain head's row lock (PostgreSQL) or the database's write lock (SQLite), moves its
`seq` past the new entries and reads the previous hash, the entries are inserted (one multi-row insert),
the head gets the last entry's hash. One entry on PostgreSQL is one call of `audit_append` (migration
0008), which does the same in the server: under the lock, one round trip before the commit instead of
two, and no hashing here. Concurrent writers queue on that lock until the holder commits, so each sees
its predecessor's hash: the chain has no forks and `seq` no gaps. The cost of that serialization is
measured in docs/benchmarks.md ("Audit trail", "The audit trail's cost, cut twice").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from pm.common.db import UtcDateTime, from_row
from pm.patient.adapters import tables
from pm.patient.domain.audit import (
    AuditEntry,
    AuditPage,
    AuditQuery,
    AuditUnavailable,
    ChainedEntry,
    StoredEntry,
    Verdict,
    chain,
    detail_text,
    middle_text,
    verify,
)

_e = tables.audit_events
_head = tables.audit_chain
HEAD_ID = 1
VERIFY_BATCH = 1000


def _now() -> datetime:
    return datetime.now(UTC)


def _entry(row: Any) -> AuditEntry:
    return from_row(AuditEntry, row, detail=json.loads(row.detail) if row.detail else None)


def _row(chained: ChainedEntry) -> dict[str, Any]:
    """The `audit_events` row of an entry at its place in the chain (`_entry` reads it back)."""
    entry = chained.entry
    return asdict(entry) | {
        "detail": detail_text(entry.detail),
        "seq": chained.seq,
        "prev_hash": chained.prev_hash,
        "hash": chained.hash,
    }


# The appending statements, built once: building them per entry cost about 0.6 ms of CPU on every audited
# access (docs/benchmarks.md, "Statements built once").
_NEXT_SEQ = (
    sa.update(_head)
    .where(_head.c.id == HEAD_ID)
    .values(seq=_head.c.seq + sa.bindparam("count", type_=_head.c.seq.type))
    .returning(_head.c.seq, _head.c.hash)
)
# PostgreSQL: the head's clock too, so that every entry is timed by the database's clock, as
# `audit_append` times a single one.
_NEXT_SEQ_TIMED = _NEXT_SEQ.returning(sa.func.clock_timestamp(type_=UtcDateTime()).label("now"))
# Every column of an entry from `_row`, as `entry_<column>`; the head's new hash as `head_hash`.
_INSERT_ENTRY = sa.insert(_e).values({c: sa.bindparam(f"entry_{c.name}", type_=c.type) for c in _e.c})
_NEW_HEAD = (
    sa.update(_head)
    .where(_head.c.id == HEAD_ID)
    .values(hash=sa.bindparam("head_hash", type_=_head.c.hash.type))
)
# PostgreSQL, one entry: the function of migration 0008 takes the head, times, hashes and inserts the entry
# in the server, one round trip, so the head's lock is held only from that call to the commit.
_APPEND_ONE = (
    sa.text(
        "SELECT entry_seq, entry_at, entry_prev_hash, entry_hash FROM audit_append(:actor, :role, :action,"
        " :patient_id, CAST(:status AS smallint), :request_id, :trace_id, :client, :detail, :middle)"
    )
    .bindparams(sa.bindparam("patient_id", type_=sa.Uuid))
    .columns(
        entry_seq=sa.BigInteger,
        entry_at=UtcDateTime,
        entry_prev_hash=sa.LargeBinary,
        entry_hash=sa.LargeBinary,
    )
)


class SqlAuditLog:
    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, entry: AuditEntry) -> ChainedEntry:
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[AuditEntry]) -> list[ChainedEntry]:
        """Extend the chain by `entries`, in order: one lock of the head and one insert for all of them."""
        if len(entries) == 1 and self.session.get_bind().dialect.name == "postgresql":
            try:
                return [self._append_in_server(entries[0])]
            except SQLAlchemyError as exc:
                # The class only: the driver's message may quote the values (a search's query).
                raise AuditUnavailable(type(exc).__name__) from exc
        return self.append_here(entries)

    def append_here(self, entries: Sequence[AuditEntry]) -> list[ChainedEntry]:
        """`append_many` with the entries timed on the head's clock and hashed in this process: what
        several entries, and SQLite, always use (and a single entry used before migration 0008)."""
        try:
            postgres = self.session.get_bind().dialect.name == "postgresql"
            head = self.session.execute(
                _NEXT_SEQ_TIMED if postgres else _NEXT_SEQ, {"count": len(entries)}
            ).one()
            # Timed under the lock: the trail's order is its time order.
            at = head.now if postgres else _now()
            seq, prev_hash = head.seq - len(entries) + 1, head.hash
            chained: list[ChainedEntry] = []
            for entry in entries:
                link = chain(seq, replace(entry, at=at), prev_hash)
                chained.append(link)
                seq, prev_hash = seq + 1, link.hash
            rows = [{f"entry_{name}": value for name, value in _row(link).items()} for link in chained]
            self.session.execute(_INSERT_ENTRY, rows)
            self.session.execute(_NEW_HEAD, {"head_hash": prev_hash})
        except SQLAlchemyError as exc:
            raise AuditUnavailable(type(exc).__name__) from exc
        return chained

    def _append_in_server(self, entry: AuditEntry) -> ChainedEntry:
        detail = detail_text(entry.detail)
        values = asdict(entry) | {"detail": detail, "middle": middle_text(entry, detail)}
        del values["at"]
        row = self.session.execute(_APPEND_ONE, values).one()
        return ChainedEntry(
            row.entry_seq, replace(entry, at=row.entry_at), row.entry_prev_hash, row.entry_hash
        )

    def find(self, query: AuditQuery) -> AuditPage:
        conditions: list[sa.ColumnElement[bool]] = []
        if query.patient_id is not None:
            conditions.append(_e.c.patient_id == query.patient_id)
        if query.actor is not None:
            conditions.append(_e.c.actor == query.actor)
        if query.action is not None:
            conditions.append(_e.c.action == query.action)
        if query.since is not None:
            conditions.append(_e.c.at >= query.since)
        if query.until is not None:
            conditions.append(_e.c.at < query.until)
        if query.before_seq is not None:
            conditions.append(_e.c.seq < query.before_seq)
        statement = sa.select(_e).where(*conditions).order_by(_e.c.seq.desc()).limit(query.size + 1)
        rows = list(self.session.execute(statement))
        more = len(rows) > query.size
        rows = rows[: query.size]
        entries = [ChainedEntry(r.seq, _entry(r), r.prev_hash, r.hash) for r in rows]
        return AuditPage(entries, rows[-1].seq if more else None)

    def verify(self) -> Verdict:
        # The head first: entries appended while the walk runs come after it and are left for next time.
        head = self.session.execute(sa.select(_head.c.seq, _head.c.hash).where(_head.c.id == HEAD_ID)).one()
        return verify(self._stored(head.seq), head.seq, head.hash)

    def _stored(self, up_to: int) -> Iterator[StoredEntry]:
        after = 0
        while True:
            rows = list(
                self.session.execute(
                    sa.select(_e)
                    .where(_e.c.seq > after, _e.c.seq <= up_to)
                    .order_by(_e.c.seq)
                    .limit(VERIFY_BATCH)
                )
            )
            for row in rows:
                yield StoredEntry(row.seq, _entry(row), row.detail, row.prev_hash, row.hash)
            if len(rows) < VERIFY_BATCH:
                return
            after = rows[-1].seq
