"""Only internal callers reach BillingService: they present the service token in gRPC metadata.

Mutual TLS, when configured, is enforced earlier by the TLS handshake itself (a client without a
certificate our CA signed never gets a channel). Health and reflection stay open: they carry no personal
data and orchestrators probe health without credentials.
"""

from __future__ import annotations

import hmac
from typing import Any

import grpc

from pm.billing.entrypoints.grpc_interceptors import Behaviour, UnaryInterceptor
from pm.billing.entrypoints.grpc_service import SERVICE_NAME

METADATA_KEY = "authorization"
SCHEME = "Bearer "


def bearer(token: str) -> tuple[tuple[str, str]]:
    """The metadata a caller sends with each BillingService call."""
    return ((METADATA_KEY, f"{SCHEME}{token}"),)


class ServiceTokenInterceptor(UnaryInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"{SCHEME}{token}".encode()

    def wrap(self, call: grpc.HandlerCallDetails, behaviour: Behaviour) -> Behaviour:
        if not call.method.startswith(f"/{SERVICE_NAME}/"):
            return behaviour
        metadata = dict(call.invocation_metadata or ())
        presented = str(metadata.get(METADATA_KEY, "")).encode()
        # Constant time: the comparison must not reveal how much of a guess was right.
        if hmac.compare_digest(presented, self._expected):
            return behaviour
        return _refuse


def _refuse(_request: Any, context: grpc.ServicerContext) -> Any:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "a service credential is required")
