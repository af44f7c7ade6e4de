"""The `cursor` query parameter: a keyset position as opaque base64url text.

It carries the sort and search it was made for (a cursor is refused under another one) and a digest, so
that an edited or truncated cursor is refused rather than read as some other position. The digest is an
integrity check, not a secret: every field is validated, so a hand-made cursor can only choose where in a
list the caller may read anyway the page starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from datetime import date
from typing import Any

from pm.patient.domain.model import Cursor, Direction, InvalidPatient, SortKey, Value

_DIGEST_BYTES = 8
_DATE_FIELDS = frozenset({"dateOfBirth", "registeredDate"})
_MAX_TEXT = 400


def _digest(payload: bytes) -> bytes:
    return hashlib.sha256(b"pm.patient.cursor\0" + payload).digest()[:_DIGEST_BYTES]


def encode(cursor: Cursor, sort: str, search: str | None) -> str:
    fields: dict[str, Any] = {"d": cursor.direction.value, "s": sort, "q": search or ""}
    if cursor.direction is not Direction.LAST:
        assert cursor.id is not None
        fields["k"] = [v.isoformat() if isinstance(v, date) else v for v in cursor.values]
        fields["i"] = cursor.id.hex
    payload = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(_digest(payload) + payload).rstrip(b"=").decode("ascii")


def decode(text: str, keys: tuple[SortKey, ...], sort: str, search: str | None) -> Cursor:
    """The position in `text`; InvalidPatient (400) unless it is intact and made for this sort and search."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("is not a cursor this service made") from None
    digest, payload = raw[:_DIGEST_BYTES], raw[_DIGEST_BYTES:]
    if len(digest) != _DIGEST_BYTES or _digest(payload) != digest:
        raise _invalid("is not a cursor this service made")
    try:
        fields = json.loads(payload)
        if fields.get("s") != sort or fields.get("q") != (search or ""):
            raise _invalid("was made for another sort or search; start again from the first page")
        direction = Direction(fields["d"])
        if direction is Direction.LAST:
            return Cursor(direction)
        return Cursor(direction, _values(fields["k"], keys), uuid.UUID(hex=fields["i"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _invalid("is not a cursor this service made") from None


def _values(values: Any, keys: tuple[SortKey, ...]) -> tuple[Value, ...]:
    if not isinstance(values, list) or len(values) != len(keys):
        raise _invalid("does not match the sort")
    parsed: list[Value] = []
    for key, value in zip(keys, values, strict=True):
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            raise _invalid("does not match the sort")
        parsed.append(date.fromisoformat(value) if key.field in _DATE_FIELDS else value)
    return tuple(parsed)


def _invalid(reason: str) -> InvalidPatient:
    return InvalidPatient({"cursor": f"The cursor {reason}."})
