"""The audit trail of access to patient data: what an entry holds, and how the entries are chained.

Every entry carries the SHA-256 of the one before it (`prev_hash`) and its own hash over its canonical
form, which includes `prev_hash`: changing, removing or reordering an entry breaks the chain at that
point, and `verify` says where. Plain Python: no framework or database here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)  # the `prev_hash` of the first entry


@dataclass(frozen=True)
class AuditEntry:
    """One access: who (`actor` is the token's `sub`, `role` its role), what (`action`, the patient when
    there is one, the HTTP `status` it was answered with), and where it came from (`request_id`,
    `trace_id`, `client`: the address the gateway saw). `detail` is small JSON: a search's query and how
    many patients it returned, an id that named no patient."""

    at: datetime
    action: str
    status: int
    actor: str | None = None
    role: str | None = None
    patient_id: uuid.UUID | None = None
    request_id: str | None = None
    trace_id: str | None = None
    client: str | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class ChainedEntry:
    """An entry at its place in the chain: `seq` (1, 2, ... without gaps), the previous hash and its own."""

    seq: int
    entry: AuditEntry
    prev_hash: bytes
    hash: bytes


def detail_text(detail: dict[str, Any] | None) -> str | None:
    """The stored (and hashed) form of `detail`: compact JSON with sorted keys, or None."""
    if detail is None:
        return None
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(seq: int, entry: AuditEntry, prev_hash: bytes, detail: str | None = None) -> bytes:
    """The bytes an entry's hash is taken over: every field, in a fixed order, as a JSON array. `detail` is
    the stored text (what the verifier reads back); by default the entry's detail in its stored form.

    Written as `[<seq>,"<at>",<middle_text>,"<prev hash hex>"]`: the same bytes as `json.dumps` of the
    whole list gives, in a form the database's `audit_append` (patient migration 0008) builds as well."""
    at = entry.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    text = f'[{seq},"{at}",{middle_text(entry, detail)},"{prev_hash.hex()}"]'
    return text.encode("utf-8")


def middle_text(entry: AuditEntry, detail: str | None = None) -> str:
    """The JSON of the fields between the time and the previous hash, without the enclosing brackets."""
    fields = [
        entry.actor,
        entry.role,
        entry.action,
        str(entry.patient_id) if entry.patient_id else None,
        entry.status,
        entry.request_id,
        entry.trace_id,
        entry.client,
        detail if detail is not None else detail_text(entry.detail),
    ]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False)[1:-1]


def chain(seq: int, entry: AuditEntry, prev_hash: bytes) -> ChainedEntry:
    """`entry` placed after the entry `seq - 1` whose hash is `prev_hash`."""
    return ChainedEntry(seq, entry, prev_hash, hashlib.sha256(canonical(seq, entry, prev_hash)).digest())


@dataclass(frozen=True)
class StoredEntry:
    """An entry as read back for verification: its fields as stored, `detail` as the stored text."""

    seq: int
    entry: AuditEntry
    detail: str | None
    prev_hash: bytes
    hash: bytes


@dataclass
class Verdict:
    """What the verifier found: how many entries it read, the last hash, and every break (seq, why)."""

    entries: int = 0
    head: bytes = GENESIS
    breaks: list[tuple[int, str]] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify(rows: Iterable[StoredEntry], head_seq: int, head_hash: bytes, *, max_breaks: int = 100) -> Verdict:
    """Walk the entries in `seq` order and check each against the one before it and its own hash; the
    chain head (`head_seq`, `head_hash`, kept beside the table) catches entries removed from the end."""
    verdict = Verdict()
    expected_seq, prev_hash = 1, GENESIS

    def found(seq: int, reason: str) -> None:
        if len(verdict.breaks) < max_breaks:
            verdict.breaks.append((seq, reason))

    for row in rows:
        verdict.entries += 1
        if row.seq != expected_seq:
            missing = (
                f"entry {expected_seq} is missing"
                if row.seq == expected_seq + 1
                else f"entries {expected_seq} to {row.seq - 1} are missing"
            )
            found(expected_seq, f"{missing} (removed)")
        if row.prev_hash != prev_hash and row.seq == expected_seq:
            found(
                row.seq,
                f"entry {row.seq} does not follow entry {row.seq - 1} (that entry was changed or replaced)",
            )
        recomputed = hashlib.sha256(canonical(row.seq, row.entry, row.prev_hash, row.detail)).digest()
        if recomputed != row.hash:
            found(row.seq, f"entry {row.seq} was altered (its contents do not match its hash)")
        expected_seq, prev_hash = row.seq + 1, row.hash
    last_seq = expected_seq - 1
    if head_seq > last_seq:
        found(
            last_seq + 1,
            (
                f"entry {head_seq} is missing (removed)"
                if head_seq == last_seq + 1
                else f"entries {last_seq + 1} to {head_seq} are missing (removed)"
            ),
        )
    elif head_seq < last_seq:
        found(head_seq + 1, f"entries after {head_seq} were added behind the chain head's back")
    elif head_hash != prev_hash:
        found(last_seq, f"entry {last_seq} is not the entry the chain head recorded (changed or replaced)")
    verdict.head = prev_hash
    return verdict


class AuditUnavailable(Exception):
    """The audit trail could not be written: the access it should record must not happen (503)."""


@dataclass(frozen=True)
class AuditQuery:
    """A page of the trail, newest first: entries before `before_seq` (a cursor) matching every filter."""

    patient_id: uuid.UUID | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_seq: int | None = None
    size: int = 50


@dataclass(frozen=True)
class AuditPage:
    entries: list[ChainedEntry]
    next_before: int | None  # the cursor position of the next (older) page, None at the end
