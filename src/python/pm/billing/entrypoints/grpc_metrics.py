"""Prometheus counters for gRPC calls, in the same registry as the HTTP side's /metrics."""

from __future__ import annotations

import time
from typing import Any

import grpc

from pm.billing.entrypoints.grpc_interceptors import Behaviour, UnaryInterceptor
from pm.common.web import Metrics


class MetricsInterceptor(UnaryInterceptor):
    """Counts unary calls by method and status code and times them."""

    def __init__(self, metrics: Metrics) -> None:
        self.calls, self.latency = metrics.served("grpc", "gRPC call", "code")

    def wrap(self, call: grpc.HandlerCallDetails, behaviour: Behaviour) -> Behaviour:
        method = call.method

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

        return observed
