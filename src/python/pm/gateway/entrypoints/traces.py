"""The embedded trace store's paths: `GET /api/traces?limit=` and `GET /api/traces/{traceId}` (ADMIN only),
and `POST /v1/traces`, the OTLP/HTTP receiver the other services export to (loopback peers only)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.web import ASGIApp, Receive, Scope, Send, read_body
from pm.gateway.adapters.traces import EXPORT_RESPONSE, TraceStore, decode_export
from pm.gateway.service_layer.authentication import BearerAuthenticator, Unauthenticated

PREFIX = "/api/traces"
RECEIVER = "/v1/traces"
MAX_EXPORT_BYTES = 4 * 1024 * 1024
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")
DEFAULT_LIMIT = 20
MAX_LIMIT = 200


@dataclass(eq=False)
class TracesApi:
    """Answers the trace paths itself and hands every other request to `app`.

    With a collector configured there is no store: the paths say where the traces went instead."""

    app: ASGIApp
    store: TraceStore | None
    authenticator: BearerAuthenticator
    collector: str | None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path == RECEIVER and self.store is not None:
            await self.receive_export(scope, receive, send)
            return
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, *_problem(405, "Method Not Allowed", "Only GET is allowed here."))
            return
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        try:
            claims = await self.authenticator.authenticate(authorization)
        except Unauthenticated as exc:
            await _answer(
                send,
                401,
                *_problem(401, "Unauthorized", str(exc)),
                [(b"www-authenticate", b'Bearer realm="pm"')],
            )
            return
        if claims.get("role") != "ADMIN":
            await _answer(send, 403, *_problem(403, "Forbidden", "Traces are for administrators only."))
            return
        if self.store is None:
            detail = (
                f"Traces are exported to the collector at {self.collector}; view them there."
                if self.collector
                else "Tracing is off in this gateway (OTEL_SDK_DISABLED or OTEL_TRACES_EXPORTER=none)."
            )
            await _answer(send, 404, *_problem(404, "Not Found", detail))
            return
        if path == PREFIX:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            raw = (query.get("limit") or [str(DEFAULT_LIMIT)])[0]
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
                detail = f"limit must be an integer from 1 to {MAX_LIMIT}."
                await _answer(send, 400, *_problem(400, "Bad Request", detail))
                return
            await _answer(send, 200, _json(self.store.recent(int(raw))), b"application/json")
            return
        trace_id = path[len(PREFIX) + 1 :]
        found = self.store.get(trace_id) if _TRACE_ID.fullmatch(trace_id) else None
        if found is None:
            detail = "No such trace is kept (not sampled, not yet exported, or already evicted)."
            await _answer(send, 404, *_problem(404, "Not Found", detail))
            return
        await _answer(send, 200, _json(found), b"application/json")

    async def receive_export(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.store is not None
        peer = scope.get("client")
        if not _loopback(peer[0] if peer else None):
            await _answer(send, 403, *_problem(403, "Forbidden", "Spans are accepted from this host only."))
            return
        if scope["method"] != "POST":
            await _answer(send, 405, *_problem(405, "Method Not Allowed", "Only POST is allowed here."))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await read_body(receive, MAX_EXPORT_BYTES)
        if body is None:
            detail = f"Exports are limited to {MAX_EXPORT_BYTES} bytes."
            await _answer(send, 413, *_problem(413, "Payload Too Large", detail))
            return
        try:
            export = decode_export(body, headers.get("content-type", ""), headers.get("content-encoding", ""))
        except ValueError as exc:
            await _answer(send, 400, *_problem(400, "Bad Request", str(exc)))
            return
        self.store.add(export)
        await _answer(send, 200, EXPORT_RESPONSE, b"application/x-protobuf")


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _problem(status: int, title: str, detail: str) -> tuple[bytes, bytes]:
    return problem_bytes(status, title, detail), PROBLEM_JSON.encode()


async def _answer(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
