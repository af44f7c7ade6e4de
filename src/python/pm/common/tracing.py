"""Distributed tracing for every service: OpenTelemetry, set up once, from the standard `OTEL_*` variables.

- `OTEL_SERVICE_NAME` (default: the service's own name), `OTEL_RESOURCE_ATTRIBUTES`;
- `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn tracing off (no spans, no headers);
- `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`: `always_on`, `always_off`, `traceidratio`,
  `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` (the default, at
  `DEFAULT_RATIO`). A caller's sampled `traceparent` is honoured by the `parentbased_*` samplers;
- `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the OTLP/HTTP collector (read by
  the exporter itself). Unset, spans go to `http://localhost:4318/v1/traces`, OTLP's default, which is
  where the gateway's embedded receiver listens in the devstack (`pm.gateway.adapters.traces`).

Traces start only where work enters a service: a request served or a message consumed. A span without a
parent anywhere else (the background health pings' SQL, the token-feed polls) is not recorded, so the
periodic chatter of a running system never fills the trace store.

The hooks the services use are all here: `asgi` (server spans, in `pm.common.web.serve`), `traceresponse`
(the W3C Trace Context level 2 response header), `grpc_channel` / `grpc_server_interceptors`,
`http_transport` (the gateway's proxy), a span per SQL statement (every engine's, installed by
`configure_tracing`, which `pm.common.service.run` calls for `serve`), `current_traceparent` /
`context_from_traceparent` (the outbox), `kafka_headers` / `context_from_kafka_headers` (the relay and
analytics) and `log_fields` (every log line).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import httpx
import sqlalchemy as sa
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import (
    collect_request_attributes,
    get_default_span_details,
    set_status_code,
)
from opentelemetry.instrumentation.grpc import client_interceptor, filters, server_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from pm.common.config import ConfigError, Env, load_or_exit

log = logging.getLogger(__name__)

DEFAULT_SAMPLER = "parentbased_traceidratio"
# The share of traces started here that are recorded (a caller's sampled traceparent is always honoured);
# why 10 %: docs/observability.md.
DEFAULT_RATIO = 0.1
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# Server-side paths that never start a trace: probes and scrapes arrive every few seconds, and the
# embedded receiver's exports would trace themselves.
EXCLUDED_PATHS = "/health,/health/live,/metrics,/v1/traces"
TRACERESPONSE = b"traceresponse"
TRACEPARENT = "traceparent"
# The health checks of the gRPC server are probes too.
_NOT_HEALTH = filters.negate(filters.service_prefix("grpc.health"))
_ENTRY_KINDS = frozenset({SpanKind.SERVER, SpanKind.CONSUMER})
_propagator = TraceContextTextMapPropagator()
_NO_CONTEXT = Context()
_ids = RandomIdGenerator()
_configured = False
_exporter: SpanExporter | None = None


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether tracing is on by the environment (it is unless switched off)."""
    environ = os.environ if env is None else env
    return (
        environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"
        and environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"
    )


def collector_endpoint(env: Mapping[str, str] | None = None) -> str | None:
    """The OTLP endpoint set in the environment, if any (None means: the embedded default)."""
    environ = os.environ if env is None else env
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def sampler_from_env(env: Env) -> Sampler:
    """The sampler named by OTEL_TRACES_SAMPLER(_ARG), entered only at entry points (see the module doc)."""
    name = env.text("OTEL_TRACES_SAMPLER", DEFAULT_SAMPLER).lower()
    if name not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(SAMPLERS)}, got {name!r}")
    ratio = env.number("OTEL_TRACES_SAMPLER_ARG", DEFAULT_RATIO)
    if ratio > 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG must be between 0 and 1, got {ratio}")
    root = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[name.removeprefix("parentbased_")]
    chosen = sampling.ParentBased(root) if name.startswith("parentbased_") else root
    return EntryPointSampler(chosen)


class EntryPointSampler(Sampler):
    """Delegates, except that a span without a parent that is not an entry point is dropped."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and kind not in _ENTRY_KINDS:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"EntryPoint{{{self.delegate.get_description()}}}"


class CollectorExporter(SpanExporter):
    """The OTLP exporter, reporting an unreachable collector once instead of once per batch.

    A service run on its own has no collector at the default endpoint: the SDK's exporter would log an
    error (and a warning per retry) for every batch, every few seconds. This wrapper silences the
    exporter's own logger and logs the change of state instead: one warning when exports start to fail,
    one line when they succeed again, with the number of batches dropped in between.
    """

    QUIET_LOGGERS = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.exporter.otlp.common")

    def __init__(self, delegate: SpanExporter, endpoint: str | None) -> None:
        self.delegate = delegate
        self.endpoint = endpoint or "http://localhost:4318 (default)"
        self.failed_batches = 0
        for name in self.QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.delegate.export(spans)
        if result is SpanExportResult.SUCCESS:
            if self.failed_batches:
                log.info(
                    "trace collector reachable again",
                    extra={"endpoint": self.endpoint, "dropped_batches": self.failed_batches},
                )
                self.failed_batches = 0
        else:
            if not self.failed_batches:
                log.warning(
                    "trace collector unreachable: spans are dropped until it answers",
                    extra={"endpoint": self.endpoint},
                )
            self.failed_batches += 1
        return result

    def shutdown(self) -> None:
        self.delegate.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.delegate.force_flush(timeout_millis)


def configure_tracing(service: str, *, exporter: SpanExporter | None = None, env: Env | None = None) -> bool:
    """Install the tracer provider for this process (once); returns whether tracing is on.

    `exporter` replaces the OTLP/HTTP exporter (the gateway passes its embedded store's). A bad
    `OTEL_*` value stops the service with one line naming the variable, like any other setting.
    """
    global _configured, _exporter
    if not enabled() or _configured:
        return _configured
    sampler = load_or_exit(lambda: sampler_from_env(env or Env()), service)
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or service
    provider = TracerProvider(sampler=sampler, resource=Resource.create({SERVICE_NAME: name}))
    chosen = exporter or CollectorExporter(OTLPSpanExporter(timeout=2), collector_endpoint())
    provider.add_span_processor(BatchSpanProcessor(chosen))
    trace.set_tracer_provider(provider)
    _configured, _exporter = True, exporter
    _trace_statements()
    log.info(
        "tracing on",
        extra={
            "otel_service": name,
            "sampler": sampler.get_description(),
            "exporter": type(exporter).__name__ if exporter else "OTLP/HTTP",
            "endpoint": collector_endpoint() or "http://localhost:4318 (default)",
        },
    )
    return True


def is_configured() -> bool:
    return _configured


def configured_exporter() -> SpanExporter | None:
    """The exporter given to `configure_tracing` (None: OTLP/HTTP, or tracing off)."""
    return _exporter


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def asgi(app: Any) -> Any:
    """`app` with a server span per request (the caller's traceparent continued), when tracing is on."""
    if not _configured:
        return app
    return ServerSpans(app)


class ServerSpans:
    """A SERVER span per HTTP request but the probes', continuing the caller's context: the span the ASGI
    instrumentation's middleware makes, with its name and attributes (its own functions build them).

    Why not that middleware: it computes the span's attributes (a dozen header scans and URL parses) and
    its metrics' attributes for every request, also for the nine in ten the sampler leaves out; this
    builds them only for a span that is recorded (~40 µs a request less; docs/benchmarks.md, "Gateway CPU
    per proxied read"). The samplers here decide on the parent and the trace id, never on attributes.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.tracer = trace.get_tracer(__name__)
        self.excluded = re.compile("|".join(EXCLUDED_PATHS.split(",")))
        # The headers the configured propagators read (traceparent, tracestate, baggage by default).
        self.fields = frozenset(field.encode("latin-1") for field in propagate.get_global_textmap().fields)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.excluded.search(scope["path"]):
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self.fields
        }
        # No propagation header: the trace starts here (what extracting from nothing would give).
        context = propagate.extract(carrier) if carrier else _NO_CONTEXT
        # Named by the method until the sampler has decided (it never looks at the name): the full name
        # (`GET /path`) is only worth its cost for a span that is recorded.
        span = self.tracer.start_span(scope["method"], context=context, kind=SpanKind.SERVER)
        if span.is_recording():
            span.update_name(get_default_span_details(scope)[0])
            span.set_attributes(collect_request_attributes(scope))
            with trace.use_span(span, end_on_exit=True):
                await self.app(scope, receive, _status_recorder(span, send))
            return
        # Not recorded: only made current (what `use_span` does of it: nothing to end or record).
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


def _status_recorder(span: trace.Span, send: Any) -> Any:
    async def recording(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            set_status_code(span, message["status"])
        await send(message)

    return recording


def traceresponse(request_traceparent: bytes | None = None) -> bytes | None:
    """The `traceresponse` header (W3C Trace Context level 2): `00-<trace id>-<span id>-<flags>` of the
    current server span. A request that starts no span (a probe) when tracing is on gets an unrecorded
    answer: the caller's trace id (or a new one), a new span id, flags 00. None when tracing is off."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}".encode()
    if not _configured:
        return None
    caller = context_from_traceparent(request_traceparent.decode("latin-1") if request_traceparent else None)
    trace_id = (
        trace.get_current_span(caller).get_span_context().trace_id if caller else _ids.generate_trace_id()
    )
    return f"00-{trace_id:032x}-{_ids.generate_span_id():016x}-00".encode()


def log_fields() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span, for a log line (empty outside a trace)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}


def current_traceparent() -> str | None:
    """The current span's context as a `traceparent` value (kept with an outbox row); None outside one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """The context a stored `traceparent` names; None when there is none or it is malformed."""
    if not traceparent:
        return None
    context = _propagator.extract({TRACEPARENT: traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def kafka_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """Kafka record headers carrying `context` (default: the current one); empty outside a trace."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=context)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_kafka_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Context | None:
    """The producer's context from a record's headers; None when it carries none."""
    carrier = {
        key.lower(): value.decode("latin-1")
        for key, value in headers or ()
        if key.lower() in (TRACEPARENT, "tracestate") and value
    }
    return context_from_traceparent(carrier.get(TRACEPARENT)) and _propagator.extract(carrier)


def attach(context: Context | None) -> object | None:
    """Make `context` current (for log lines and child spans); pass the token to `detach`."""
    return otel_context.attach(context) if context is not None else None


def detach(token: object | None) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


def grpc_channel(channel: grpc.Channel) -> grpc.Channel:
    """`channel` with a CLIENT span per call and the context sent in the metadata, when tracing is on."""
    if not _configured:
        return channel
    return intercept_channel(channel, client_interceptor(filter_=_NOT_HEALTH))


def grpc_server_interceptors() -> list[grpc.ServerInterceptor]:
    """For `grpc.server(interceptors=...)`: a SERVER span per call continuing the caller's (none when off)."""
    return [server_interceptor(filter_=_NOT_HEALTH)] if _configured else []


def http_transport(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """An httpx async transport that records a CLIENT span per request and sends the context on."""
    if not _configured:
        return transport
    return _TracedTransport(transport)


class _TracedTransport(httpx.AsyncBaseTransport):
    """A CLIENT span per request, the one the httpx instrumentation makes (named by the method;
    `http.method`, `http.url`, `http.status_code`; ERROR from status 400 on; an exception recorded),
    with the context sent on in the request's headers.

    Why not the instrumentation's transport: for every request it copies and normalises the request's
    and the answer's headers (for headers-as-attributes, which nothing here configures), parses the URL
    again and computes metrics' attributes, also for spans that are not recorded: measured ~0.3 ms a
    recorded request in-process, and ~85 µs an unrecorded one (docs/benchmarks.md, "Gateway CPU per
    proxied read"). Inside a trace the sampler left out (nine in ten at the default ratio) no span is
    started at all: the request only carries the current context on (flags 00, so the service records
    nothing of it either).
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._tracer = trace.get_tracer(__name__)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        current = trace.get_current_span()
        if not current.is_recording() and current.get_span_context().is_valid:
            propagate.inject(request.headers)
            return await self._transport.handle_async_request(request)
        method = request.method
        with self._tracer.start_as_current_span(
            method,
            kind=SpanKind.CLIENT,
            attributes={"http.method": method, "http.url": str(request.url)},
        ) as span:
            propagate.inject(request.headers)
            response = await self._transport.handle_async_request(request)
            if span.is_recording():
                span.set_attribute("http.status_code", response.status_code)
                if response.status_code >= 400:
                    span.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self._transport.aclose()


_STATEMENT_SPAN = "_pm_statement_span"


def _trace_statements() -> None:
    """A CLIENT span per SQL statement any engine of this process runs inside a trace (statement text
    only, never its parameters), installed once by `configure_tracing`: SQLAlchemy's engine events on the
    `Engine` class, so that `pm.common.db` needs no tracing import. The official SQLAlchemy
    instrumentation declares support below 2.1 only, and forcing it needs greenlet (its asyncio
    wrapping) which the services lack."""
    tracer = trace.get_tracer(__name__)

    def _start(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        # Inside a trace the sampler left out, a child span would be dropped too: none is started.
        if context is None or not trace.get_current_span().is_recording():
            return
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = tracer.start_span(
            verb,
            kind=SpanKind.CLIENT,
            attributes={"db.system": conn.dialect.name, "db.statement": statement[:2000]},
        )
        setattr(context, _STATEMENT_SPAN, span)

    def _end(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        span = getattr(context, _STATEMENT_SPAN, None)
        if span is not None:
            span.end()
            setattr(context, _STATEMENT_SPAN, None)

    def _failed(exception_context: Any) -> None:
        context = exception_context.execution_context
        span = getattr(context, _STATEMENT_SPAN, None) if context is not None else None
        if span is not None:
            span.set_status(StatusCode.ERROR, type(exception_context.original_exception).__name__)
            span.end()
            setattr(context, _STATEMENT_SPAN, None)

    sa.event.listen(sa.Engine, "before_cursor_execute", _start)
    sa.event.listen(sa.Engine, "after_cursor_execute", _end)
    sa.event.listen(sa.Engine, "handle_error", _failed)
