"""Every access to patient data recorded in the audit trail, from one place; `GET /audit-events`; the verifier.

How an operation is audited (docs/services/patient.md, "Audit trail"):

- `install_audit(app, trail)` adds a Flask `before_request` / `after_request` pair to the service's
  Connexion app. Before the handler runs, the request's entry is prepared from what Connexion resolved
  (the operationId, the token's `sub` and `role`) and what the kit put in the request (request id, trace
  id, the client address uvicorn took from the trusted gateway's `X-Forwarded-For`), and made the
  *current access* (pm.patient.service_layer.audit.current_access).
- A unit of work that changes a patient writes that entry in its own transaction
  (`SqlUnitOfWork.commit`): create, update, delete and purge are recorded with the change or not at all.
- Anything else (reads, searches, history, FHIR, refusals: 403, 404, 409, 412...) is recorded after the
  handler, with the answer's status, before the answer leaves. If that write fails the client gets a
  503 problem instead of the data: nothing is read unrecorded.
- The action is `ACTIONS[operationId]` when named there, else the operationId itself: an operation added
  to the spec is audited without any code. The patient is the path's `id` (or the `patient` filter);
  a list's query and the number of patients it returned (a JSON array's length, a FHIR Bundle's
  entries) go into `detail`. Operations without a token (none read patient data) and `NOT_AUDITED` ones
  (the outbox backlog) are not recorded.

What is not recorded: requests refused before the handler by the token check (401: no identity to
record) or by request validation (400: nothing was read).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from connexion import FlaskApp
from connexion import context as connexion_context
from flask import Response, request

from pm.common import tracing
from pm.common.logs import request_id_var
from pm.common.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS, ErrorTable, problem_bytes, unavailable
from pm.common.tokens import require_role
from pm.patient.domain.audit import AuditEntry, AuditQuery, AuditUnavailable, ChainedEntry
from pm.patient.domain.model import InvalidPatient
from pm.patient.service_layer.audit import Access, AuditService, current_access

log = logging.getLogger(__name__)

# Names of the audited operations; any other operation is recorded under its operationId.
ACTIONS: Mapping[str, str | Callable[[], str]] = {
    "patients.get_patient": "patient.read",
    "patients.list_patients": "patient.search",
    "patients.create_patient": "patient.create",
    "patients.update_patient": "patient.update",
    "patients.delete_patient": lambda: (
        "patient.purge" if (request.args.get("purge") or "").lower() == "true" else "patient.delete"
    ),
    "patients.patient_history": "patient.history",
    "patients.patient_version": "patient.history",
    "audit.list_audit_events": "audit.read",
    "fhir.fhir_patient_read": "fhir.read",
    "fhir.fhir_patient_search": "fhir.search",
    "fhir.fhir_patient_history": "fhir.history",
    "fhir.fhir_patient_vread": "fhir.history",
}
# Operations that touch no patient data.
NOT_AUDITED = frozenset({"broker.outbox", "fhir.fhir_metadata"})
_ID_PARAMETERS = ("id", "patient_id", "patientId")
_MAX_DETAIL_TEXT = 200
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")

AUDIT_ERRORS: ErrorTable = {
    AuditUnavailable: unavailable(
        "The audit trail cannot be written, so the request was not served; retry later."
    ),
}


def _action(operation_id: str) -> str:
    named = ACTIONS.get(operation_id, operation_id)
    return named() if callable(named) else named


def _success_status(operation: Any) -> int:
    """The first 2xx status the operation declares (201 for a create), 200 if none."""
    codes = sorted(str(code) for code in (getattr(operation, "responses", None) or {}))
    return next((int(code) for code in codes if code.isdigit() and code.startswith("2")), 200)


def _trace_id() -> str | None:
    current = tracing.log_fields().get("trace_id")
    if current:
        return current
    parts = (request.headers.get("traceparent") or "").split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and all(c in "0123456789abcdef" for c in parts[1]):
        return parts[1]
    return None


def _patient(detail: dict[str, Any]) -> uuid.UUID | None:
    """The patient a request names: its path's id, else a `patient` filter. An id that is not a UUID is
    kept (cut short) in `detail`: a guessed id is worth recording."""
    raw = _path_id()
    if raw is None:
        raw = request.args.get("patient")
    if raw is None:
        return None
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        detail["id"] = str(raw)[:_MAX_DETAIL_TEXT]
        return None


def _path_id() -> Any:
    view_args = request.view_args or {}
    return next((view_args[name] for name in _ID_PARAMETERS if name in view_args), None)


def _query() -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name in request.args:
        values = [value[:_MAX_DETAIL_TEXT] for value in request.args.getlist(name)]
        query[name[:_MAX_DETAIL_TEXT]] = values[0] if len(values) == 1 else values
    return query


def _returned(response: Response) -> int | None:
    """How many records a successful list answer holds: a JSON array's items, a FHIR Bundle's entries."""
    if response.status_code != 200 or not (response.mimetype or "").endswith("json"):
        return None
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return None
    if isinstance(body, list):
        return len(body)
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        return len(body.get("entry") or [])
    return None


def install_audit(app: FlaskApp, trail: AuditService) -> None:
    """Record every audited operation of `app` in `trail` (see the module's docstring)."""
    flask_app = app.app

    @flask_app.before_request
    def begin() -> None:
        current_access.set(None)
        try:
            operation = connexion_context.operation
            operation_id = operation.operation_id
            token = connexion_context.context.get("token_info")
        except (LookupError, RuntimeError):  # not an operation of the spec (Flask answers 404/405)
            return
        if not token or not operation_id or operation_id in NOT_AUDITED:
            return
        detail: dict[str, Any] = {}
        patient_id = _patient(detail)
        query = _query()
        if query:
            detail["query"] = query
        entry = AuditEntry(
            at=datetime.now(UTC),
            action=_action(operation_id)[:64],
            status=0,
            actor=str(token.get("sub") or "")[:254] or None,
            role=str(token.get("role") or "")[:16] or None,
            patient_id=patient_id,
            request_id=request_id_var.get(),
            trace_id=_trace_id(),
            client=(request.remote_addr or "")[:64] or None,
            detail=detail or None,
        )
        current_access.set(Access(entry, _success_status(operation), listing=_path_id() is None))

    @flask_app.after_request
    def finish(response: Response) -> Response:
        access = current_access.get()
        current_access.set(None)
        if access is None or access.recorded:
            return response
        entry = access.entry
        returned = _returned(response) if access.listing else None
        if returned is not None:
            entry = replace(entry, detail={**(entry.detail or {}), "returned": returned})
        try:
            trail.record(replace(entry, status=response.status_code))
        except Exception as exc:  # noqa: BLE001 - whatever stops the record stops the answer
            log.warning("audit entry not written; request refused", extra={"error": type(exc).__name__})
            problem = AUDIT_ERRORS[AuditUnavailable]
            assert isinstance(problem.detail, str)
            return Response(
                problem_bytes(503, problem.title, problem.detail),
                status=503,
                mimetype=PROBLEM_JSON,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        return response


# --- GET /audit-events ---------------------------------------------------------------------------

_CURSOR_VERSION = b"\x01"


def _filters_digest(filters: Mapping[str, Any]) -> bytes:
    text = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(b"pm.patient.audit-cursor\0" + text.encode()).digest()[:8]


def encode_cursor(before_seq: int, filters: Mapping[str, Any]) -> str:
    body = _CURSOR_VERSION + before_seq.to_bytes(8, "big") + _filters_digest(filters)
    return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, filters: Mapping[str, Any]) -> int:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 17 or raw[:1] != _CURSOR_VERSION:
        raise InvalidPatient({"cursor": "The cursor is not one this service made."})
    if raw[9:] != _filters_digest(filters):
        raise InvalidPatient({"cursor": "The cursor was made for other filters; start from the first page."})
    return int.from_bytes(raw[1:9], "big")


# RFC 3339 date-time (what the spec's `format: date-time` means), offset optional (UTC then).
_INSTANT = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?$"
)


def _instant(name: str, text: str | None) -> datetime | None:
    """An RFC 3339 instant: a leap second counts as :59, digits past microseconds are dropped."""
    if text is None:
        return None
    match = _INSTANT.match(text)
    try:
        if match is None:
            raise ValueError(text)
        year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
        zone = UTC
        offset = match.group(8)
        if offset and offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
        micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
        # In UTC: PostgreSQL refuses offsets beyond +-15:59, which RFC 3339's syntax allows (up to 23:59).
        return datetime(
            max(1, year), month, day, hour, minute, min(second, 59), micro, tzinfo=zone
        ).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidPatient({name: f"{name} must be a date-time (e.g. 2026-12-02T14:00:00Z)"}) from None


def _json(chained: ChainedEntry) -> dict[str, Any]:
    entry = chained.entry
    return {
        "seq": chained.seq,
        "at": entry.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "patientId": str(entry.patient_id) if entry.patient_id else None,
        "status": entry.status,
        "requestId": entry.request_id,
        "traceId": entry.trace_id,
        "client": entry.client,
        "detail": entry.detail,
        "prevHash": chained.prev_hash.hex(),
        "hash": chained.hash.hex(),
    }


class AuditHandlers:
    """`audit.list_audit_events` (ADMIN)."""

    def __init__(self, trail: AuditService) -> None:
        self.trail = trail

    def list_audit_events(
        self,
        token_info: dict[str, Any],
        patient: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        cursor: str | None = None,
        size: int = 50,
    ) -> Any:
        require_role(token_info, "ADMIN")
        filters = {"patient": patient, "actor": actor, "action": action, "since": since, "until": until}
        try:
            patient_id = uuid.UUID(patient) if patient else None
        except ValueError:
            raise InvalidPatient({"patient": "patient must be a patient id (a UUID)"}) from None
        page = self.trail.find(
            AuditQuery(
                patient_id=patient_id,
                actor=actor,
                action=action,
                since=_instant("since", since),
                until=_instant("until", until),
                before_seq=decode_cursor(cursor, filters) if cursor else None,
                size=size,
            )
        )
        headers = {"Content-Type": "application/json"}
        if page.next_before is not None:
            params = {k: v for k, v in filters.items() if v is not None}
            params.update(size=str(size), cursor=encode_cursor(page.next_before, filters))
            headers["Link"] = f'<{_prefix()}/audit-events?{urlencode(params)}>; rel="next"'
        return [_json(e) for e in page.entries], 200, headers


def _prefix() -> str:
    """Path prefix the gateway mounted us under (X-Forwarded-Prefix, e.g. `/api`), for the Link."""
    prefix = (request.headers.get("x-forwarded-prefix") or "").rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


# --- audit-verify --------------------------------------------------------------------------------


def verify_command(trail: AuditService, out: Any = None) -> int:
    """Walk the whole chain; print what it found; 0 if intact, 1 if broken."""
    out = out or sys.stdout
    verdict = trail.verify()
    if verdict.intact:
        out.write(f"audit trail intact: {verdict.entries} entries, head {verdict.head.hex()}\n")
        return 0
    out.write(f"audit trail BROKEN: {len(verdict.breaks)} break(s) in {verdict.entries} entries\n")
    for seq, reason in verdict.breaks:
        out.write(f"  at entry {seq}: {reason}\n")
    return 1
