"""The one way billing's gRPC interceptors wrap a call: `UnaryInterceptor.wrap(call, behaviour)`.

grpc's public interceptor API hands over a method handler; rebuilding it around a new behaviour (same
serializers) is the same few lines for every interceptor, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


class UnaryInterceptor(grpc.ServerInterceptor):
    """Wraps the behaviour of unary-unary methods; other handlers (health's watch, reflection) pass as is."""

    def wrap(self, call: grpc.HandlerCallDetails, behaviour: Behaviour) -> Behaviour:
        """The behaviour to run for `call` (its method, its metadata); `behaviour` itself leaves it alone."""
        raise NotImplementedError

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        wrapped = self.wrap(handler_call_details, handler.unary_unary)
        if wrapped is handler.unary_unary:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
