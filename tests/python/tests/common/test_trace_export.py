"""A collector that cannot be reached is reported once, not once per batch, and its return is reported.

The real OTLP/HTTP exporter of the SDK sends to a closed loopback port, then to a live receiver.
"""

from __future__ import annotations

import logging
import socket

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pm.common.tracing import CollectorExporter
from tests.support.servers import LiveServer


def some_spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("test").start_as_current_span("work"):
        pass
    return list(memory.get_finished_spans())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def traces(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        return Response(b"", media_type="application/x-protobuf")


def test_an_unreachable_collector_is_logged_once_and_its_return_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver()
    with LiveServer(Starlette(routes=[Route("/v1/traces", receiver.traces, methods=["POST"])])) as live:
        live_endpoint = f"{live.url}/v1/traces"
        dead_endpoint = f"http://127.0.0.1:{closed_port()}/v1/traces"
        dead = CollectorExporter(OTLPSpanExporter(endpoint=dead_endpoint, timeout=1), dead_endpoint)
        caplog.set_level(logging.DEBUG)

        results = [dead.export(some_spans()) for _ in range(3)]

        assert results == [SpanExportResult.FAILURE] * 3
        assert dead.failed_batches == 3
        ours = [r for r in caplog.records if r.name == "pm.common.tracing"]
        assert [r.getMessage() for r in ours] == [
            "trace collector unreachable: spans are dropped until it answers"
        ]
        assert ours[0].levelno == logging.WARNING
        assert ours[0].__dict__["endpoint"] == dead_endpoint
        # The SDK's own exporter says nothing more: no line per batch, none per retry.
        assert [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")] == []

        # The same wrapper, now sending to a collector that answers (as after a collector restart).
        dead.delegate = OTLPSpanExporter(endpoint=live_endpoint, timeout=2)
        caplog.clear()
        assert dead.export(some_spans()) is SpanExportResult.SUCCESS
        assert dead.export(some_spans()) is SpanExportResult.SUCCESS

    back = [r for r in caplog.records if r.name == "pm.common.tracing"]
    assert [r.getMessage() for r in back] == ["trace collector reachable again"]
    assert back[0].__dict__["dropped_batches"] == 3
    assert dead.failed_batches == 0
    assert len(receiver.bodies) == 2 and all(receiver.bodies)
