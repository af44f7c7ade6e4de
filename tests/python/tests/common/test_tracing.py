"""Tracing as every service sets it up: W3C Trace Context in and out over a real socket, spans, log fields,
the sampler's entry points, and the context carried through an outbox row and Kafka headers."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pm.common import tracing
from pm.common.config import ConfigError, Env
from pm.common.db import Database
from pm.common.logs import configure_logging
from tests.common import webapp
from tests.support.servers import LiveServer

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def exported() -> Iterator[InMemorySpanExporter]:
    os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
    os.environ["OTEL_TRACES_SAMPLER_ARG"] = "0"  # only what a caller asks for is recorded
    memory = InMemorySpanExporter()
    assert tracing.configure_tracing("testapp", exporter=memory)
    yield memory


def finished(memory: InMemorySpanExporter) -> list[ReadableSpan]:
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    return list(memory.get_finished_spans())


@pytest.fixture(scope="module")
def server(exported: InMemorySpanExporter) -> Iterator[str]:
    with LiveServer(tracing.asgi(webapp.build())) as live:
        yield live.url


def test_a_callers_traceparent_is_continued_and_the_response_names_the_servers_span(
    server: str, exported: InMemorySpanExporter
) -> None:
    exported.clear()
    response = httpx.get(
        f"{server}/items/1", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}, timeout=5
    )
    assert response.status_code == 200
    version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
    assert (version, trace_id, flags) == ("00", CLIENT_TRACE, "01")
    server_spans = [s for s in finished(exported) if s.kind is SpanKind.SERVER]
    assert len(server_spans) == 1
    span = server_spans[0]
    assert f"{span.context.trace_id:032x}" == CLIENT_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CLIENT_SPAN
    assert f"{span.context.span_id:016x}" == span_id
    # Named and described as the ASGI instrumentation does (its functions build them).
    assert span.name == "GET /items/1"
    assert span.attributes is not None
    assert (span.attributes["http.method"], span.attributes["http.target"]) == ("GET", "/items/1")
    assert span.attributes["http.status_code"] == 200


def test_every_response_carries_traceresponse_even_unsampled_and_errors(
    server: str, exported: InMemorySpanExporter
) -> None:
    exported.clear()
    for response in (httpx.get(f"{server}/items/99", timeout=5), httpx.get(f"{server}/nowhere", timeout=5)):
        assert response.status_code == 404
        version, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
        assert len(trace_id) == 32 and len(span_id) == 16 and int(trace_id, 16) != 0
        assert int(flags, 16) & 1 == 0  # ratio 0: started here, not recorded (02 says: random trace id)
    assert finished(exported) == []


def test_probes_and_scrapes_start_no_trace_but_still_answer_traceresponse(
    server: str, exported: InMemorySpanExporter
) -> None:
    exported.clear()
    sampled = {"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    for path in ("/health", "/health/live", "/metrics"):
        response = httpx.get(f"{server}{path}", headers=sampled, timeout=5)
        assert response.status_code == 200
        _, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
        assert (trace_id, flags) == (CLIENT_TRACE, "00") and span_id != CLIENT_SPAN
    assert finished(exported) == []


def test_log_lines_inside_a_trace_carry_its_ids(
    exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("testapp", "INFO")
    try:
        parent = tracing.context_from_traceparent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
        with trace.get_tracer("test").start_as_current_span("work", context=parent) as span:
            logging.getLogger("pm.test").info("inside")
        logging.getLogger("pm.test").info("outside")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    inside, outside = (json.loads(line) for line in stderr.getvalue().splitlines())
    assert inside["trace_id"] == CLIENT_TRACE
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


def test_only_entry_points_start_traces(exported: InMemorySpanExporter) -> None:
    sampler = tracing.sampler_from_env(Env({"OTEL_TRACES_SAMPLER": "always_on"}))
    decide = sampler.should_sample
    assert decide(None, 1, "GET /patients", SpanKind.SERVER).decision.is_sampled()
    assert decide(None, 1, "process patient", SpanKind.CONSUMER).decision.is_sampled()
    # A background health ping's SQL or a token-feed poll: no parent, not an entry point.
    assert not decide(None, 1, "SELECT", SpanKind.CLIENT).decision.is_sampled()
    assert not decide(None, 1, "poll", SpanKind.INTERNAL).decision.is_sampled()
    in_trace = tracing.context_from_traceparent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
    assert decide(in_trace, 1, "SELECT", SpanKind.CLIENT).decision.is_sampled()


def test_the_samplers_settings_are_checked_like_any_other() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER must be one of"):
        tracing.sampler_from_env(Env({"OTEL_TRACES_SAMPLER": "sometimes"}))
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER_ARG"):
        tracing.sampler_from_env(Env({"OTEL_TRACES_SAMPLER_ARG": "1.5"}))
    default = tracing.sampler_from_env(Env({}))
    assert "ParentBased" in default.get_description() and "0.1" in default.get_description()


def test_context_goes_through_a_stored_traceparent_and_kafka_headers(exported: InMemorySpanExporter) -> None:
    exported.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span(
        "request", context=tracing.context_from_traceparent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
    ) as request_span:
        stored = tracing.current_traceparent()
    assert stored == f"00-{CLIENT_TRACE}-{request_span.get_span_context().span_id:016x}-01"
    # Later, in the relay's thread: the publish span continues the stored context...
    with tracer.start_as_current_span(
        "publish", context=tracing.context_from_traceparent(stored), kind=SpanKind.PRODUCER
    ) as publish:
        headers = tracing.kafka_headers()
    # ...and the consumer's processing span is its child.
    consumer_side = tracing.context_from_kafka_headers([("event-id", b"1"), *headers])
    with tracer.start_as_current_span("process", context=consumer_side, kind=SpanKind.CONSUMER) as process:
        pass
    finished_process = next(s for s in finished(exported) if s.name == "process")
    assert finished_process.parent is not None
    assert finished_process.parent.span_id == publish.get_span_context().span_id
    assert process.get_span_context().trace_id == int(CLIENT_TRACE, 16)
    assert tracing.context_from_kafka_headers([("event-id", b"1")]) is None
    assert tracing.context_from_traceparent("garbage") is None


def test_sql_statements_inside_a_trace_are_child_spans_without_their_parameters(
    exported: InMemorySpanExporter,
) -> None:
    database = Database("sqlite://")
    try:
        with database.engine.connect() as conn:
            conn.execute(sa.text("SELECT :secret"), {"secret": "alice@example.com"})  # outside: no span
            exported.clear()
            parent = tracing.context_from_traceparent(f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
            with trace.get_tracer("test").start_as_current_span("request", context=parent) as request:
                conn.execute(sa.text("SELECT :secret"), {"secret": "alice@example.com"})
    finally:
        database.dispose()
    (statement,) = (s for s in finished(exported) if s.kind is SpanKind.CLIENT)
    assert statement.name == "SELECT"
    assert statement.parent is not None
    assert statement.parent.span_id == request.get_span_context().span_id
    assert statement.attributes is not None
    assert statement.attributes["db.system"] == "sqlite"
    assert "alice" not in str(dict(statement.attributes))
