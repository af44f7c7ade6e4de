"""What every request meets before routing: the CORS preflight policy, the client's address and rate
limit, and the refusal of dot segments. Starlette middleware classes; their answers are problems."""

from __future__ import annotations

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from pm.gateway.domain.clients import ClientAddresses
from pm.gateway.domain.cors import CorsPolicy
from pm.gateway.domain.ratelimit import RateLimiter, retry_after_seconds
from pm.gateway.entrypoints.problems import not_found, problem_response

# Where the client's address is kept for the proxy (`request.state.client_address`).
CLIENT_ADDRESS = "client_address"


class PreflightGate:
    """Preflights the CORS policy refuses get a 403 problem; Starlette's CORSMiddleware (inside this
    one) answers the others and adds the headers to actual responses."""

    def __init__(self, app: ASGIApp, *, policy: CorsPolicy, rejected: Counter) -> None:
        self.app = app
        self.policy = policy
        self.rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            method = headers.get("access-control-request-method")
            if (
                origin is not None
                and method is not None
                and not self.policy.allows_preflight(
                    origin, method, headers.get("access-control-request-headers")
                )
            ):
                self.rejected.labels("cors").inc()
                response = problem_response(
                    403, "Forbidden", "Cross-origin requests from this origin are not allowed."
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ClientGate:
    """Names the client (the TCP peer, or what a trusted proxy says: domain.clients), applies its rate
    limit, and refuses `.`/`..` path segments before any route can take them."""

    def __init__(
        self, app: ASGIApp, *, clients: ClientAddresses, limiter: RateLimiter, rejected: Counter
    ) -> None:
        self.app = app
        self.clients = clients
        self.limiter = limiter
        self.rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        client = self.clients.client(peer[0] if peer else None, scope["headers"])
        wait = self.limiter.acquire(client)
        if wait:
            self.rejected.labels("rate_limit").inc()
            response = problem_response(
                429,
                "Too Many Requests",
                "This client is sending requests too quickly; retry later.",
                {"Retry-After": str(retry_after_seconds(wait))},
            )
        elif any(segment in (".", "..") for segment in scope["path"].split("/")):
            response = not_found()
        else:
            scope.setdefault("state", {})[CLIENT_ADDRESS] = client
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
