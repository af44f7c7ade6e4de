"""The devstack's embedded trace store: an OTLP/HTTP receiver in the gateway process, and the recent traces.

When no collector is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` unset), the gateway keeps the most recent
traces itself: the other services export to it (`POST /v1/traces` on the gateway's port, OTLP/HTTP
protobuf, the standard wire format, accepted from loopback peers only), and the gateway's own spans go to
the same store in-process, kept as the receiver keeps what it decodes. The store is bounded by count
(`PM_TRACES_MAX`) and age (`PM_TRACES_MAX_AGE`); the gateway serves it as `/api/traces`.

Query strings are cut from URL attributes as spans arrive: a search term is personal data.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 4 * 1024 * 1024
MAX_SPANS_PER_TRACE = 2_000
_KINDS = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUSES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}
_URL_ATTRIBUTES = frozenset({"http.target", "http.url", "url.full"})
_DROPPED_ATTRIBUTES = frozenset({"url.query"})


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def _attributes(pairs: Sequence[Any]) -> dict[str, Any]:
    attributes = {}
    for pair in pairs:
        if pair.key in _DROPPED_ATTRIBUTES:
            continue
        value = _value(pair.value)
        if pair.key in _URL_ATTRIBUTES and isinstance(value, str):
            value = value.split("?", 1)[0]
        attributes[pair.key] = value
    return attributes


def _iso(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _entry(
    span_id: str,
    parent_span_id: str | None,
    service: str,
    name: str,
    kind: str,
    status: str,
    attributes: dict[str, Any],
    start: int,
    end: int,
) -> dict[str, Any]:
    return {
        "spanId": span_id,
        "parentSpanId": parent_span_id,
        "service": service,
        "name": name,
        "kind": kind,
        "startTime": _iso(start),
        "durationMs": round((end - start) / 1e6, 3),
        "status": status,
        "attributes": attributes,
        "_start": start,
        "_end": end,
    }


def _own_attributes(attributes: Any) -> dict[str, Any]:
    """A span's attributes as `_attributes` gives them from OTLP (sequences as lists, bytes in hex)."""
    result = {}
    for key, value in (attributes or {}).items():
        if key in _DROPPED_ATTRIBUTES:
            continue
        if isinstance(value, tuple | list):
            value = [v.hex() if isinstance(v, bytes) else v for v in value]
        elif isinstance(value, bytes):
            value = value.hex()
        elif key in _URL_ATTRIBUTES and isinstance(value, str):
            value = value.split("?", 1)[0]
        result[key] = value
    return result


_OWN_KINDS = {kind: kind.name for kind in SpanKind}
_OWN_STATUSES = {code: code.name for code in StatusCode}


class _Trace:
    __slots__ = ("spans", "updated")

    def __init__(self) -> None:
        self.spans: dict[str, dict[str, Any]] = {}
        self.updated = 0.0


class TraceStore:
    """The most recent traces, at most `max_traces`, none older than `max_age_seconds` (since its last span)."""

    def __init__(
        self, *, max_traces: int = 1_000, max_age_seconds: float = 3_600.0, clock: Any = time.monotonic
    ) -> None:
        self.max_traces = max_traces
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._traces: OrderedDict[str, _Trace] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, request: ExportTraceServiceRequest) -> int:
        """Keep the spans of one OTLP export request; returns how many were kept."""
        entries = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            service = str(resource.get("service.name", "unknown"))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    entries.append(
                        (
                            span.trace_id.hex(),
                            _entry(
                                span.span_id.hex(),
                                span.parent_span_id.hex() or None,
                                service,
                                span.name,
                                _KINDS.get(span.kind, "INTERNAL"),
                                _STATUSES.get(span.status.code, "UNSET"),
                                _attributes(span.attributes),
                                span.start_time_unix_nano,
                                span.end_time_unix_nano,
                            ),
                        )
                    )
        return self.keep(entries)

    def keep(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Keep spans given as (trace id, entry) (what `add` and StoreExporter make of them)."""
        kept = 0
        now = self.clock()
        with self._lock:
            for trace_id, entry in entries:
                kept_trace = self._traces.get(trace_id)
                if kept_trace is None:
                    kept_trace = self._traces[trace_id] = _Trace()
                if len(kept_trace.spans) >= MAX_SPANS_PER_TRACE:
                    continue
                kept_trace.spans[entry["spanId"]] = entry
                kept_trace.updated = now
                self._traces.move_to_end(trace_id)
                kept += 1
            self._evict(now)
        return kept

    def _evict(self, now: float) -> None:
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
        while self._traces:
            oldest = next(iter(self._traces.values()))
            if now - oldest.updated <= self.max_age_seconds:
                break
            self._traces.popitem(last=False)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Summaries of the most recently updated traces, newest first."""
        with self._lock:
            self._evict(self.clock())
            chosen = [(tid, list(t.spans.values())) for tid, t in reversed(self._traces.items())][:limit]
        return [_summary(trace_id, spans) for trace_id, spans in chosen]

    def get(self, trace_id: str) -> dict[str, Any] | None:
        """One trace's spans in start order, or None when it is not (or no longer) kept."""
        with self._lock:
            self._evict(self.clock())
            entry = self._traces.get(trace_id.lower())
            spans = list(entry.spans.values()) if entry is not None else None
        if spans is None:
            return None
        spans.sort(key=lambda s: s["_start"])
        return {"traceId": trace_id.lower(), "spans": [_public(s) for s in spans]}


def _public(span: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in span.items() if not k.startswith("_")}


def _summary(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    ids = {s["spanId"] for s in spans}
    roots = [s for s in spans if s["parentSpanId"] not in ids] or spans
    root = min(roots, key=lambda s: s["_start"])
    start = min(s["_start"] for s in spans)
    end = max(s["_end"] for s in spans)
    return {
        "traceId": trace_id,
        "rootSpan": {"name": root["name"], "service": root["service"]},
        "services": sorted({s["service"] for s in spans}),
        "startTime": _iso(start),
        "durationMs": round((end - start) / 1e6, 3),
        "spanCount": len(spans),
        "errors": sum(1 for s in spans if s["status"] == "ERROR"),
    }


class StoreExporter(SpanExporter):
    """The gateway's own spans into the store, as the receiver would keep them after their OTLP round
    trip, without it: encoding every span to protobuf and decoding it again cost ~44 µs a span
    (docs/benchmarks.md, "Gateway CPU per proxied read")."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        entries = []
        for span in spans:
            context = span.context
            if context is None:
                continue
            parent = span.parent
            resource = span.resource.attributes if span.resource is not None else {}
            start = span.start_time or 0
            entries.append(
                (
                    f"{context.trace_id:032x}",
                    _entry(
                        f"{context.span_id:016x}",
                        f"{parent.span_id:016x}" if parent is not None else None,
                        str(resource.get("service.name", "unknown")),
                        span.name,
                        _OWN_KINDS.get(span.kind, "INTERNAL"),
                        _OWN_STATUSES.get(span.status.status_code, "UNSET"),
                        _own_attributes(span.attributes),
                        start,
                        span.end_time or start,
                    ),
                )
            )
        self.store.keep(entries)
        return SpanExportResult.SUCCESS


def decode_export(body: bytes, content_type: str, content_encoding: str) -> ExportTraceServiceRequest:
    """One OTLP/HTTP export request (protobuf, optionally gzip); ValueError when it is not one."""
    if "protobuf" not in content_type:
        raise ValueError("only application/x-protobuf is accepted")
    try:
        if content_encoding.lower() == "gzip":
            body = gzip.decompress(body)
        return ExportTraceServiceRequest.FromString(body)
    except Exception as exc:  # noqa: BLE001 - whatever the sender got wrong, it is not an export
        raise ValueError(f"undecodable OTLP request: {str(exc)[:200]}") from None


EXPORT_RESPONSE = ExportTraceServiceResponse().SerializeToString()
