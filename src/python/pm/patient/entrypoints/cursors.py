"""The `cursor` query parameter: a keyset position as opaque base64url text that carries no personal data.

Links end up in access logs, proxies and browser history, so a cursor holds only the id of the row at
the page's edge (the service reads that row's sort key when the cursor comes back), which side of it to
read, and digests: one of the sort and search it was made for (a cursor is refused under another one),
one of the rest, so that an edited or truncated cursor is refused rather than read as some other
position. The digests are integrity checks, not secrets: the id is looked up, so a hand-made cursor can
only choose where in a list the caller may read anyway the page starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid

from pm.patient.domain.model import Cursor, Direction, InvalidPatient

_VERSION = b"\x01"
_DIGEST_BYTES = 8
_DIRECTIONS = {d.value.encode("ascii"): d for d in Direction}


def _digest(label: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(b"pm.patient.cursor." + label + b"\0" + payload).digest()[:_DIGEST_BYTES]


def _made_for(sort: str, search: str | None) -> bytes:
    return _digest(b"list", f"{sort}\0{search or ''}".encode())


def encode(cursor: Cursor, sort: str, search: str | None) -> str:
    body = _VERSION + cursor.direction.value.encode("ascii")
    if cursor.direction is not Direction.LAST:
        assert cursor.id is not None
        body += cursor.id.bytes
    body += _made_for(sort, search)
    return base64.urlsafe_b64encode(body + _digest(b"check", body)).rstrip(b"=").decode("ascii")


def decode(text: str, sort: str, search: str | None) -> Cursor:
    """The position in `text` (its id only: the repository reads the sort key of that row); InvalidPatient
    (400) unless it is intact and made for this sort and search."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _invalid("is not a cursor this service made") from None
    body, check = raw[:-_DIGEST_BYTES], raw[-_DIGEST_BYTES:]
    if len(body) < 2 + _DIGEST_BYTES or body[:1] != _VERSION or _digest(b"check", body) != check:
        raise _invalid("is not a cursor this service made")
    direction = _DIRECTIONS.get(body[1:2])
    position, made_for = body[2:-_DIGEST_BYTES], body[-_DIGEST_BYTES:]
    if direction is None or len(position) != (0 if direction is Direction.LAST else 16):
        raise _invalid("is not a cursor this service made")
    if made_for != _made_for(sort, search):
        raise _invalid("was made for another sort or search; start again from the first page")
    return Cursor(direction, id=uuid.UUID(bytes=position) if position else None)


def _invalid(reason: str) -> InvalidPatient:
    return InvalidPatient({"cursor": f"The cursor {reason}."})
