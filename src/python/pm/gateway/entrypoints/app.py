"""The gateway as a Starlette Router: the route table's proxy routes, the pages it serves itself, and
around them (the router's own middleware) the preflight gate, CORS, the client gate and one layer that
turns every error into problem+json."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.routing import Route as StarletteRoute
from starlette.types import Receive, Scope, Send

from pm.gateway.adapters.openapi import ApiDocs
from pm.gateway.adapters.upstream import Proxy, RequestTooLarge, UpstreamFailure
from pm.gateway.domain import cors
from pm.gateway.domain.clients import ClientAddresses
from pm.gateway.domain.headers import upstream_request_headers
from pm.gateway.domain.ratelimit import RateLimiter
from pm.gateway.domain.routes import Route
from pm.gateway.entrypoints.edge import CLIENT_ADDRESS, ClientGate, PreflightGate
from pm.gateway.entrypoints.pages import dashboard_routes, docs_routes
from pm.gateway.entrypoints.problems import Problems, not_found, outcome_response, problem_response
from pm.gateway.service_layer.authentication import BearerAuthenticator, Unauthenticated

log = logging.getLogger(__name__)


def create_app(
    *,
    routes: Sequence[Route],
    proxy: Proxy,
    authenticator: BearerAuthenticator,
    limiter: RateLimiter,
    clients: ClientAddresses,
    cors_policy: cors.CorsPolicy,
    docs: ApiDocs,
    swagger_ui: Path,
    dashboard: Path,
    production: bool,
    registry: CollectorRegistry,
) -> Router:
    """A Router used directly as the ASGI app (not `Starlette()`): `Starlette()` would add its
    ServerErrorMiddleware and ExceptionMiddleware, two more layers wrapping `send`, where `Problems`
    alone does both jobs (docs/benchmarks.md, "Gateway CPU per proxied read")."""
    rejected = Counter(
        "pm_gateway_rejected_total",
        "Requests the gateway answered itself with an error",
        ["reason"],
        registry=registry,
    )
    middleware = [Middleware(PreflightGate, policy=cors_policy, rejected=rejected)]
    if cors_policy.origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=cors_policy.origins,
                allow_methods=cors.ALLOWED_METHODS,
                allow_headers=cors.ALLOWED_HEADERS,
                expose_headers=cors.EXPOSED_HEADERS,
                max_age=cors.PREFLIGHT_MAX_AGE,
            )
        )
    middleware.append(Middleware(ClientGate, clients=clients, limiter=limiter, rejected=rejected))
    middleware.append(Middleware(Problems))
    return Router(
        routes=[
            *proxy_routes(routes, proxy, authenticator, rejected),
            *docs_routes(docs, swagger_ui),
            *dashboard_routes(dashboard, production=production),
        ],
        # `/auth/login/` is not `/auth/login`: an unknown path is a 404 problem, never a redirect.
        redirect_slashes=False,
        default=not_found_app,
        middleware=middleware,
    )


async def not_found_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What the router answers for a path no route takes."""
    await not_found()(scope, receive, send)


def proxy_routes(
    table: Sequence[Route], proxy: Proxy, authenticator: BearerAuthenticator, rejected: Counter
) -> list[BaseRoute]:
    """Starlette routes for the route table: `prefix` itself, and `prefix/...` unless it is exact."""
    routes: list[BaseRoute] = []
    for route in table:
        endpoint = Forward(route, proxy, authenticator, rejected)
        routes.append(StarletteRoute(route.prefix, endpoint))
        if not route.exact:
            routes.append(StarletteRoute(route.prefix + "/{rest:path}", endpoint))
    return routes


class Forward:
    """The endpoint of one public route, for every method: token check, then the proxy.

    An ASGI endpoint class rather than a `request -> response` function because Starlette routes such
    functions for GET only unless every method is listed; a proxy passes whatever method it gets.
    """

    def __init__(
        self, route: Route, proxy: Proxy, authenticator: BearerAuthenticator, rejected: Counter
    ) -> None:
        self.route = route
        self.proxy = proxy
        self.authenticator = authenticator
        self.rejected = rejected
        self.prefix = route.prefix.encode()
        self.target = route.target.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(scope, receive)
        await response(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        # One pass over the request's headers for what the proxy needs of them: no Request object (it
        # would build a Headers view per access) unless there is a body to stream.
        authorization: str | None = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
                has_body = True
        route = self.route
        problem = outcome_response if route.fhir else problem_response
        if route.needs_token:
            try:
                claims = await self.authenticator.authenticate(authorization)
            except Unauthenticated as exc:
                self.rejected.labels("unauthenticated").inc()
                log.info("request without a valid token", extra={"reason": str(exc)})
                challenge = 'Bearer realm="pm"'
                if authorization is not None:
                    challenge += ', error="invalid_token"'
                return problem(401, "Unauthorized", str(exc), {"WWW-Authenticate": challenge})
            if route.roles and claims.get("role") not in route.roles:
                self.rejected.labels("forbidden").inc()
                detail = f"This operation requires role {' or '.join(route.roles)}."
                return problem(403, "Forbidden", detail)
        # The raw path keeps the client's percent-encoding (`a%2Fb` stays one segment upstream).
        raw_path: bytes = scope.get("raw_path") or b""
        if raw_path.startswith(self.prefix):
            path = self.target + raw_path[len(self.prefix) :]
        else:  # the client encoded part of the prefix itself
            path = self.target + quote(scope["path"][len(route.prefix) :]).encode()
        query: bytes = scope.get("query_string", b"")
        headers = upstream_request_headers(
            scope["headers"],
            client=scope["state"][CLIENT_ADDRESS],
            scheme=scope.get("scheme", "http"),
            forwarded_prefix=route.forwarded_prefix,
        )
        body = Request(scope, receive).stream() if has_body else None
        try:
            return await self.proxy.forward(
                route.upstream, scope["method"], path + b"?" + query if query else path, headers, body
            )
        except UpstreamFailure as failure:
            retry = {"Retry-After": "1"} if failure.status == 503 else None
            return problem(failure.status, failure.title, failure.detail, retry)
        except RequestTooLarge:
            self.rejected.labels("too_large").inc()
            return problem(413, "Payload Too Large", "The request body is larger than the gateway accepts.")
        except ClientDisconnect:
            # Nobody is left to read it: the server drops this answer.
            log.info("client went away during the request", extra={"upstream": route.upstream})
            return problem(400, "Bad Request", "The request body ended early.")
