"""The audit chain's rules, in plain Python: what the verifier names for each kind of tampering."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pm.patient.domain.audit import (
    GENESIS,
    AuditEntry,
    StoredEntry,
    canonical,
    chain,
    detail_text,
    verify,
)

START = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def stored_chain(length: int) -> list[StoredEntry]:
    rows: list[StoredEntry] = []
    prev = GENESIS
    for seq in range(1, length + 1):
        entry = AuditEntry(
            at=START + timedelta(seconds=seq),
            action="patient.read",
            status=200,
            actor="admin@example.com",
            role="ADMIN",
            patient_id=uuid.UUID(int=seq),
            request_id=f"req-{seq}",
            detail={"query": {"search": "ann"}, "returned": seq} if seq % 2 else None,
        )
        chained = chain(seq, entry, prev)
        rows.append(StoredEntry(seq, entry, detail_text(entry.detail), chained.prev_hash, chained.hash))
        prev = chained.hash
    return rows


def test_an_untouched_chain_is_intact_and_its_head_is_the_last_hash() -> None:
    rows = stored_chain(5)
    verdict = verify(rows, 5, rows[-1].hash)
    assert (verdict.intact, verdict.entries, verdict.head) == (True, 5, rows[-1].hash)
    assert verify([], 0, GENESIS).intact


def test_an_altered_entry_is_named() -> None:
    rows = stored_chain(5)
    rows[2] = replace(rows[2], entry=replace(rows[2].entry, actor="someone@else"))
    assert verify(rows, 5, rows[-1].hash).breaks == [
        (3, "entry 3 was altered (its contents do not match its hash)")
    ]


def test_an_altered_detail_text_is_named_even_when_it_means_the_same() -> None:
    rows = stored_chain(5)
    rows[0] = replace(rows[0], detail=rows[0].detail.replace(",", ", ") if rows[0].detail else None)
    assert [seq for seq, _ in verify(rows, 5, rows[-1].hash).breaks] == [1]


def test_an_entry_rehashed_after_its_change_breaks_the_link_to_the_next() -> None:
    rows = stored_chain(5)
    changed = replace(rows[1].entry, status=404)
    rehashed = hashlib.sha256(canonical(2, changed, rows[1].prev_hash)).digest()
    rows[1] = replace(rows[1], entry=changed, hash=rehashed)
    assert verify(rows, 5, rows[-1].hash).breaks == [
        (3, "entry 3 does not follow entry 2 (that entry was changed or replaced)")
    ]


def test_removed_entries_in_the_middle_and_at_the_end_are_named() -> None:
    rows = stored_chain(6)
    head = rows[-1].hash
    kept = [r for r in rows if r.seq not in (2, 3)]
    assert verify(kept, 6, head).breaks == [(2, "entries 2 to 3 are missing (removed)")]
    assert verify(rows[:5], 6, head).breaks == [(6, "entry 6 is missing (removed)")]


def test_a_replaced_last_entry_is_caught_by_the_chain_head() -> None:
    rows = stored_chain(3)
    head = rows[-1].hash
    forged = chain(3, replace(rows[2].entry, actor="someone@else"), rows[2].prev_hash)
    rows[2] = StoredEntry(3, forged.entry, rows[2].detail, forged.prev_hash, forged.hash)
    assert verify(rows, 3, head).breaks == [
        (3, "entry 3 is not the entry the chain head recorded (changed or replaced)")
    ]


AWKWARD = 'quote " backslash \\ tab \t newline \n nul \x00 bell \x07 del \x7f é 漢 😀 \u2028'


def test_the_canonical_form_is_the_json_array_of_every_field() -> None:
    """Written in parts (so the database can build it the same way), it is still `json.dumps` of the
    fields, for any text a field can hold: entries hashed before stay valid."""
    entry = AuditEntry(
        at=datetime(2026, 12, 3, 13, 0, 1, 120034, tzinfo=UTC),
        action="patient.search",
        status=200,
        actor=AWKWARD,
        role="USER",
        patient_id=uuid.UUID(int=7),
        request_id="req-1",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        client="10.0.0.1",
        detail={"query": {AWKWARD: [AWKWARD, "x"]}, "returned": 3},
    )
    prev = hashlib.sha256(b"previous").digest()
    fields = [
        41,
        "2026-12-03T13:00:01.120034Z",
        AWKWARD,
        "USER",
        "patient.search",
        str(uuid.UUID(int=7)),
        200,
        "req-1",
        "0af7651916cd43dd8448eb211c80319c",
        "10.0.0.1",
        detail_text(entry.detail),
        prev.hex(),
    ]
    expected = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert canonical(41, entry, prev) == expected
    bare = replace(entry, actor=None, role=None, patient_id=None, trace_id=None, client=None, detail=None)
    assert canonical(1, bare, GENESIS) == json.dumps(
        [1, fields[1], None, None, "patient.search", None, 200, "req-1", None, None, None, GENESIS.hex()],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
