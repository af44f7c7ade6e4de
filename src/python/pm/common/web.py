"""ASGI plumbing shared by every HTTP service: request ids, health, metrics, limits, serving."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import signal
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from pm.common import tracing
from pm.common.health import DEFAULT_INTERVAL_SECONDS, HealthMonitor
from pm.common.health import HealthCheck as HealthCheck  # re-exported: services declare checks with it
from pm.common.logs import request_id_var
from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.tracing import TRACERESPONSE, traceresponse

if TYPE_CHECKING:
    from pm.common.tls import ServerTls

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
REQUEST_ID_HEADER = b"x-request-id"
TRACEPARENT_HEADER = b"traceparent"


class Metrics:
    """Per-service Prometheus registry with the HTTP request counters every service exports."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests, self.latency = self.served("http", "HTTP request", "status")

    def served(self, protocol: str, call: str, outcome: str) -> tuple[Counter, Histogram]:
        """`pm_<protocol>_requests_total` by method and `outcome`, `pm_<protocol>_request_duration_seconds`
        by method (HTTP here; gRPC in billing)."""
        counter = Counter(
            f"pm_{protocol}_requests_total", f"{call}s served", ["method", outcome], registry=self.registry
        )
        histogram = Histogram(
            f"pm_{protocol}_request_duration_seconds",
            f"{call} latency",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        return counter, histogram

    def render(self) -> bytes:
        return generate_latest(self.registry)


K = TypeVar("K")
V = TypeVar("V")


class MetricChildren(Generic[K, V]):
    """Metric children by label values, each made by `make(key)` once: `labels()` takes a lock and checks
    the values on every call, a cost on every request. At most `limit` kept (some label values, such as
    an HTTP method, are the client's): past it the cache starts again."""

    def __init__(self, make: Callable[[K], V], limit: int = 1024) -> None:
        self._make = make
        self._limit = limit
        self._children: dict[K, V] = {}

    def get(self, key: K) -> V:
        child = self._children.get(key)
        if child is None:
            if len(self._children) >= self._limit:
                self._children.clear()
            child = self._children[key] = self._make(key)
        return child


def _valid_request_id(value: str) -> bool:
    # ASCII only: the id is echoed in a response header and written to logs verbatim.
    return 0 < len(value) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_.:") for c in value)


class ServiceMiddleware:
    """Wraps a service's ASGI app.

    - `X-Request-ID`: kept when the client sent a sane one, generated otherwise, set for logs, echoed back;
    - `GET /health/live` answers 200 while the process can answer (what a container platform restarts on);
    - `GET /health` is readiness, answered from the last round of the dependency checks, which run in the
      background every `health_interval` seconds (pm.common.health): 503 DOWN naming a failing
      `health_checks` entry; 200 DEGRADED naming `informational_checks` that fail (a dependency whose
      outage only degrades the service, e.g. a broker behind an outbox); 200 UP otherwise. It is answered
      here, before the app (and before the gateway's rate limiter): it costs what a 429 would;
    - `GET /metrics` in Prometheus text format;
    - `state` entries are exposed to the app as `request.state.<name>` (no module globals);
    - request bodies over `max_body_bytes` are refused with 413 before the app reads them;
    - security headers on every response; one access log line per request at DEBUG;
    - `traceresponse` (W3C Trace Context level 2) naming this service's span of the request, when tracing is
      on (an upstream's copy, behind the gateway, is replaced by the gateway's own).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        health_checks: dict[str, HealthCheck] | None = None,
        metrics: Metrics | None = None,
        max_body_bytes: int = 1_048_576,
        health_timeout: float = 3.0,
        state: dict[str, Any] | None = None,
        informational_checks: dict[str, HealthCheck] | None = None,
        health_interval: float = DEFAULT_INTERVAL_SECONDS,
    ) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics or Metrics(service)
        self.max_body_bytes = max_body_bytes
        self.state = state or {}
        self.health = HealthMonitor(
            service,
            essential=health_checks or {},
            optional=informational_checks or {},
            interval=health_interval,
            timeout=health_timeout,
        )
        self._live = json.dumps({"status": "UP", "service": service}).encode()
        # The request counter's and the latency histogram's children for a method and status.
        self._children: MetricChildren[tuple[str, int], tuple[Any, Any]] = MetricChildren(
            lambda key: (
                self.metrics.requests.labels(key[0], str(key[1])),
                self.metrics.latency.labels(key[0]),
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The checks run from the first request on, on the loop that serves this app.
        self.health.ensure_started()
        # Per-app objects (e.g. the token verifier) reach handlers as `request.state.<name>`.
        scope.setdefault("state", {}).update(self.state)
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")
        request_id = incoming if _valid_request_id(incoming) else str(uuid.uuid4())
        if incoming != request_id:
            scope = dict(scope)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != REQUEST_ID_HEADER] + [
                (REQUEST_ID_HEADER, request_id.encode())
            ]
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}
        recorded = False

        def record() -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            elapsed = time.perf_counter() - started
            counted, timed = self._children.get((scope["method"], status_holder["status"]))
            counted.inc()
            timed.observe(elapsed)
            log.debug(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status_holder["status"],
                    "ms": round(elapsed * 1000, 2),
                },
            )

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # Counted before the last byte leaves, so a client that reads /metrics next sees it.
                record()
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                response_headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in (REQUEST_ID_HEADER, TRACERESPONSE)
                ]
                present = {k.lower() for k, _ in response_headers}
                response_headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                response_headers.append((REQUEST_ID_HEADER, request_id.encode()))
                trace_header = traceresponse(headers.get(TRACEPARENT_HEADER))
                if trace_header is not None:
                    response_headers.append((TRACERESPONSE, trace_header))
                message = dict(message)
                message["headers"] = response_headers
            await send(message)

        try:
            method, path = scope["method"], scope["path"]
            if method in ("GET", "HEAD") and path == "/health":
                readiness = await self.health.readiness()
                await _respond(send_wrapper, readiness.status_code, readiness.body, "application/json")
            elif method in ("GET", "HEAD") and path == "/health/live":
                await _respond(send_wrapper, 200, self._live, "application/json")
            elif method in ("GET", "HEAD") and path == "/metrics":
                await _respond(send_wrapper, 200, self.metrics.render(), CONTENT_TYPE_LATEST)
            elif self._declared_length(headers) > self.max_body_bytes:
                await self._too_large(send_wrapper)
            elif b"content-length" not in headers and b"transfer-encoding" in headers:
                # A streamed (chunked) body is read up to the limit here: the app then sees an ordinary
                # body with a length (Connexion treats a body without Content-Length as missing).
                body = await read_body(receive, self.max_body_bytes)
                if body is None:
                    await self._too_large(send_wrapper)
                else:
                    scope = dict(scope)
                    scope["headers"] = [
                        (k, v)
                        for k, v in scope["headers"]
                        if k not in (b"transfer-encoding", b"content-length")
                    ] + [(b"content-length", str(len(body)).encode())]
                    await self.app(scope, _replay(body, receive), send_wrapper)
            else:
                await self.app(scope, self._limited(receive, send_wrapper), send_wrapper)
        finally:
            record()
            request_id_var.reset(token)

    async def _too_large(self, send: Send) -> None:
        await _respond_problem(
            send, 413, "Payload Too Large", f"Request bodies are limited to {self.max_body_bytes} bytes."
        )

    @staticmethod
    def _declared_length(headers: dict[bytes, bytes]) -> int:
        try:
            return int(headers.get(b"content-length", b"0"))
        except ValueError:
            return 0

    def _limited(self, receive: Receive, send: Send) -> Receive:
        """Count streamed (chunked) bodies too; past the limit the request is cut off."""
        received = 0
        limit = self.max_body_bytes

        async def wrapped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge()
            return message

        return wrapped


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """The whole request body, or None as soon as it grows past `limit` bytes (when there is one)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields `body` once, then whatever the client sends next (disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, extra_headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_problem(send: Send, status: int, title: str, detail: str) -> None:
    await _respond(send, status, problem_bytes(status, title, detail), PROBLEM_JSON)


def _listen(host: str, port: int, service: str) -> socket.socket:
    """A bound TCP socket, or SystemExit with one line naming the address and the setting to change."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror}"
        raise SystemExit(
            f"{service}: port {port} on {host} {reason} (set PM_{service.upper()}_PORT)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _uvicorn_tls(tls: ServerTls | None) -> dict[str, Any]:
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
    if tls.client_ca_file is not None:
        options.update(ssl_ca_certs=str(tls.client_ca_file), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def proxy_settings(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn's forwarded-header options: off unless proxies are named (its own default trusts loopback,
    so anything on the host could claim to be any client)."""
    return {"proxy_headers": bool(trusted_proxies), "forwarded_allow_ips": list(trusted_proxies)}


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    service: str,
    graceful_seconds: int = 8,
    on_start: Iterable[Callable[[], None]] = (),
    on_stop: Iterable[Callable[[], None]] = (),
    trusted_proxies: Sequence[str] = (),
    tls: ServerTls | None = None,
) -> None:
    """Run an ASGI app until SIGTERM/SIGINT, then drain in-flight requests and run the stop hooks.

    `trusted_proxies` (addresses or CIDRs) are the peers whose `X-Forwarded-For` names the client;
    from anyone else, and from everyone when it is empty, the client is the TCP peer. With `tls` it
    serves HTTPS only (and requires a client certificate when `tls` names a client CA).

    With tracing on (`pm.common.tracing.configure_tracing`), every request but the probes and scrapes
    gets a server span continuing the caller's `traceparent`.

    Background workers (outbox relay, consumers) start after the socket is bound so that a port clash
    stops the service before they do anything.
    """
    config = uvicorn.Config(
        tracing.asgi(app),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=graceful_seconds,
        timeout_keep_alive=30,
        server_header=False,
        **proxy_settings(trusted_proxies),
        **_uvicorn_tls(tls),
    )
    server = uvicorn.Server(config)
    # Bound here, before any hook runs, so that a clash is one line and nothing needs stopping.
    sock = _listen(host, port, service)

    async def main() -> None:
        for hook in on_start:
            hook()
        log.info("listening", extra={"host": host, "port": port})
        await server.serve(sockets=[sock])

    # uvicorn re-raises the signal that stopped it once it has drained; with the default handlers that
    # would kill the process before the stop hooks run. These handlers absorb the re-raise (and stop a
    # server that was signalled before uvicorn took over the signals).
    def _stop_requested(_signum: int, _frame: object) -> None:
        server.should_exit = True

    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, _stop_requested) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # uvicorn's own loop (uvloop): the stdlib loop leaves Nagle on for sockets bound with proto 0,
        # which costs ~40 ms per keep-alive response (headers and body are separate writes).
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main())
    finally:
        for hook in on_stop:
            try:
                hook()
            except Exception:  # - keep stopping the rest
                log.exception("stop hook failed")
        log.info("stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
