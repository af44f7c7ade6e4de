"""The embedded trace store: OTLP/HTTP exports in (loopback only), `/api/traces` out (ADMIN only), bounded."""

from __future__ import annotations

import gzip
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode, set_span_in_context

from pm.common.tracing import configure_tracing
from pm.gateway.adapters.traces import StoreExporter, TraceStore
from tests.gateway.conftest import Gateway, SigningKey, echoed_headers

PROTOBUF = {"content-type": "application/x-protobuf"}


def spans_of(service: str, build: object) -> Sequence[ReadableSpan]:
    """Real SDK spans of one service (a provider of their own, not the process's)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    build(provider.get_tracer("test"))  # type: ignore[operator]
    return memory.get_finished_spans()


def request_trace(tracer: object) -> None:
    with tracer.start_as_current_span(  # type: ignore[attr-defined]
        "POST /patients",
        kind=SpanKind.SERVER,
        attributes={"http.target": "/patients?search=alice", "url.query": "search=alice"},
    ) as server:
        with tracer.start_as_current_span("INSERT", kind=SpanKind.CLIENT) as db:  # type: ignore[attr-defined]
            db.set_status(StatusCode.ERROR, "duplicate")
    assert server is not None


def export_body(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


@pytest.fixture
def store() -> TraceStore:
    return TraceStore(max_traces=10)


@pytest.fixture
def traced_gateway(gateway: Gateway, store: TraceStore) -> httpx.Client:
    return gateway(traces=store)


def test_exported_spans_are_served_as_a_trace_to_an_admin(
    traced_gateway: httpx.Client, signing_key: SigningKey
) -> None:
    spans = spans_of("patient", request_trace)
    trace_id = f"{spans[0].context.trace_id:032x}"
    response = traced_gateway.post("/v1/traces", content=export_body(spans), headers=PROTOBUF)
    assert response.status_code == 200, response.text
    admin = {"authorization": f"Bearer {signing_key.token()}"}

    recent = traced_gateway.get("/api/traces?limit=5", headers=admin)
    assert recent.status_code == 200
    (summary,) = recent.json()
    assert summary["traceId"] == trace_id
    assert summary["rootSpan"] == {"name": "POST /patients", "service": "patient"}
    assert summary["services"] == ["patient"]
    assert summary["spanCount"] == 2 and summary["errors"] == 1
    assert summary["durationMs"] >= 0

    one = traced_gateway.get(f"/api/traces/{trace_id}", headers=admin)
    assert one.status_code == 200
    body = one.json()
    assert body["traceId"] == trace_id
    server, db = body["spans"]
    assert set(server) == {
        "spanId",
        "parentSpanId",
        "service",
        "name",
        "kind",
        "startTime",
        "durationMs",
        "status",
        "attributes",
    }
    assert (server["kind"], server["parentSpanId"], server["status"]) == ("SERVER", None, "UNSET")
    assert (db["kind"], db["parentSpanId"], db["status"]) == ("CLIENT", server["spanId"], "ERROR")
    # A search term is personal data: query strings never reach the store.
    assert server["attributes"]["http.target"] == "/patients"
    assert "url.query" not in server["attributes"]


def test_traces_are_for_admins_only(traced_gateway: httpx.Client, signing_key: SigningKey) -> None:
    assert traced_gateway.get("/api/traces").status_code == 401
    user = {"authorization": f"Bearer {signing_key.token(role='USER')}"}
    assert traced_gateway.get("/api/traces", headers=user).status_code == 403
    assert traced_gateway.get(f"/api/traces/{'a' * 32}", headers=user).status_code == 403


def test_unknown_traces_and_bad_limits_are_problems(
    traced_gateway: httpx.Client, signing_key: SigningKey
) -> None:
    admin = {"authorization": f"Bearer {signing_key.token()}"}
    for path, status in (
        (f"/api/traces/{'a' * 32}", 404),
        ("/api/traces/not-a-trace-id", 404),
        ("/api/traces?limit=0", 400),
        ("/api/traces?limit=many", 400),
    ):
        response = traced_gateway.get(path, headers=admin)
        assert response.status_code == status, path
        assert response.headers["content-type"].startswith("application/problem+json")


def test_the_receiver_takes_gzip_and_refuses_what_is_not_an_export(traced_gateway: httpx.Client) -> None:
    spans = spans_of("billing", request_trace)
    zipped = traced_gateway.post(
        "/v1/traces",
        content=gzip.compress(export_body(spans)),
        headers={**PROTOBUF, "content-encoding": "gzip"},
    )
    assert zipped.status_code == 200
    assert traced_gateway.post("/v1/traces", content=b"\xff\x00junk", headers=PROTOBUF).status_code == 400
    assert traced_gateway.post("/v1/traces", json={"resourceSpans": []}).status_code == 400
    assert traced_gateway.get("/v1/traces").status_code == 405


def test_the_store_keeps_the_most_recent_traces_by_count_and_age() -> None:
    now = [1000.0]
    store = TraceStore(max_traces=3, max_age_seconds=60, clock=lambda: now[0])
    ids = []
    for _ in range(5):
        spans = spans_of("patient", request_trace)
        ids.append(f"{spans[0].context.trace_id:032x}")
        store.add(encode_spans(spans))
        now[0] += 10
    assert [t["traceId"] for t in store.recent(10)] == ids[:1:-1]  # newest first, two evicted
    assert store.get(ids[0]) is None and store.get(ids[4]) is not None
    now[0] += 45  # the oldest two kept are now over a minute old
    assert [t["traceId"] for t in store.recent(10)] == [ids[4]]


def test_the_gateways_own_spans_are_kept_as_their_otlp_export_would_be() -> None:
    def spans(tracer: object) -> None:
        request_trace(tracer)
        with tracer.start_as_current_span(  # type: ignore[attr-defined]
            "GET", kind=SpanKind.CLIENT, attributes={"http.url": "http://p/x?q=1", "list": ("a", "b"), "n": 3}
        ):
            pass

    finished = spans_of("gateway", spans)
    through_otlp, direct = TraceStore(), TraceStore()
    through_otlp.add(encode_spans(finished))
    StoreExporter(direct).export(finished)
    ids = {f"{span.context.trace_id:032x}" for span in finished if span.context is not None}
    assert len(ids) == 2
    for trace_id in ids:
        assert direct.get(trace_id) == through_otlp.get(trace_id)
    assert direct.recent(5) == through_otlp.recent(5)


def test_spans_of_one_trace_from_several_services_join(store: TraceStore) -> None:
    def two_services() -> tuple[Sequence[ReadableSpan], Sequence[ReadableSpan]]:
        gateway_spans = spans_of("gateway", lambda t: t.start_span("GET", kind=SpanKind.SERVER).end())
        parent = set_span_in_context(_NonRecording(gateway_spans[0]))
        patient_spans = spans_of(
            "patient", lambda t: t.start_span("GET /patients", context=parent, kind=SpanKind.SERVER).end()
        )
        return gateway_spans, patient_spans

    gateway_spans, patient_spans = two_services()
    store.add(encode_spans(patient_spans))
    store.add(encode_spans(gateway_spans))
    (summary,) = store.recent(5)
    assert summary["services"] == ["gateway", "patient"]
    assert summary["rootSpan"]["service"] == "gateway"


def _NonRecording(span: ReadableSpan) -> NonRecordingSpan:  # - stands for a remote parent
    assert span.context is not None
    return NonRecordingSpan(span.context)


def _proxied_with_traceparent(
    gateway: Gateway, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch, traceparent: str
) -> tuple[httpx.Response, list[str], list[str]]:
    """A proxied `GET /api/patients` carrying the caller's `traceparent` (the gateway's sampler follows
    the caller's decision); the response, the traceparent the upstream got and the traceresponse, split."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    assert configure_tracing("gateway", exporter=InMemorySpanExporter())
    response = gateway().get(
        "/api/patients",
        headers={"authorization": f"Bearer {signing_key.token()}", "traceparent": traceparent},
    )
    assert response.status_code == 200
    (forwarded,) = echoed_headers(response)["traceparent"]
    return response, forwarded.split("-"), response.headers["traceresponse"].split("-")


def test_the_proxied_request_continues_the_callers_trace_from_the_gateways_own_span(
    gateway: Gateway, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response, upstream, answered = _proxied_with_traceparent(
        gateway, signing_key, monkeypatch, f"00-{trace_id}-{caller_span}-01"
    )
    _, upstream_trace, upstream_parent, flags = upstream
    _, answered_trace, gateway_span, _ = answered
    assert upstream_trace == answered_trace == trace_id and flags == "01"
    # The upstream's parent is the gateway's CLIENT span: neither the caller's span nor the server span.
    assert upstream_parent not in (caller_span, gateway_span)
    # One traceresponse: the gateway's own (an upstream's copy would be replaced).
    assert response.headers.get_list("traceresponse") == [response.headers["traceresponse"]]


def test_an_unrecorded_request_sends_its_context_on_without_a_client_span(
    gateway: Gateway, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4737", "00f067aa0ba902b8"
    _, upstream, answered = _proxied_with_traceparent(
        gateway, signing_key, monkeypatch, f"00-{trace_id}-{caller_span}-00"
    )
    _, upstream_trace, upstream_parent, flags = upstream
    _, answered_trace, gateway_span, answered_flags = answered
    # The caller's trace goes on, unrecorded (flags 00): the service records nothing of it either.
    assert upstream_trace == answered_trace == trace_id and flags == answered_flags == "00"
    # No CLIENT span was made for it: the upstream's parent is the gateway's own (unrecorded) span.
    assert upstream_parent == gateway_span != caller_span
