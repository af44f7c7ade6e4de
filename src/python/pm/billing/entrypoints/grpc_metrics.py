"""Prometheus counters for gRPC calls, in the same registry as the HTTP side's /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from pm.common.web import Metrics


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts unary calls by method and status code and times them."""

    def __init__(self, metrics: Metrics) -> None:
        self.calls = Counter(
            "pm_grpc_requests_total", "gRPC calls served", ["method", "code"], registry=metrics.registry
        )
        self.latency = Histogram(
            "pm_grpc_request_duration_seconds",
            "gRPC call latency",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=metrics.registry,
        )

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        behaviour = handler.unary_unary

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = False
            try:
                return behaviour(request, context)
            except BaseException:
                failed = True
                raise
            finally:
                code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)  # type: ignore[attr-defined]
                self.calls.labels(method, code.name).inc()
                self.latency.labels(method).observe(time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
