"""The gateway as a raw ASGI application: CORS, rate limit, routing, token check, then the proxy."""

from __future__ import annotations

import logging
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from pm.common.problems import PROBLEM_JSON, problem_bytes
from pm.common.web import Message, Receive, Scope, Send
from pm.gateway.adapters.openapi import ApiDocs
from pm.gateway.adapters.upstream import ClientGone, Proxy, RequestTooLarge, UpstreamFailure
from pm.gateway.domain.clients import ClientAddresses
from pm.gateway.domain.cors import CorsPolicy
from pm.gateway.domain.headers import upstream_request_headers
from pm.gateway.domain.ratelimit import RateLimiter, retry_after_seconds
from pm.gateway.domain.routes import Match, RouteTable
from pm.gateway.entrypoints.authn import BearerAuthenticator, Unauthenticated
from pm.gateway.entrypoints.pages import NotFound, StaticFolder, swagger_config, swagger_index

log = logging.getLogger(__name__)

DOCS = "/docs"
API_DOCS = "/api-docs/"
DASHBOARD = "/dashboard"
WWW_AUTHENTICATE = b"www-authenticate"


class GatewayApp:
    def __init__(
        self,
        *,
        routes: RouteTable,
        proxy: Proxy,
        authenticator: BearerAuthenticator,
        limiter: RateLimiter,
        clients: ClientAddresses,
        cors: CorsPolicy,
        docs: ApiDocs,
        swagger_ui: StaticFolder,
        dashboard: StaticFolder,
        registry: CollectorRegistry,
    ) -> None:
        self.routes = routes
        self.proxy = proxy
        self.authenticator = authenticator
        self.limiter = limiter
        self.clients = clients
        self.cors = cors
        self.docs = docs
        self.swagger_ui = swagger_ui
        self.dashboard = dashboard
        self._swagger_index = swagger_index(DOCS)
        self._swagger_config = swagger_config([(name, API_DOCS + name) for name in docs.sources])
        self.rejected = Counter(
            "pm_gateway_rejected_total",
            "Requests the gateway answered itself with an error",
            ["reason"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        origin = authorization = preflight_method = None
        has_body = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight_method = value
            elif (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
                has_body = True
        method = scope["method"]

        if origin is not None:
            allowed = self.cors.allows(origin)
            if method == "OPTIONS" and preflight_method is not None:
                if allowed:
                    await _respond(send, 204, b"", None, self.cors.preflight_headers(origin))
                else:
                    self.rejected.labels("cors").inc()
                    await _problem(
                        send, 403, "Forbidden", "Cross-origin requests from this origin are not allowed."
                    )
                return
            if allowed:
                send = _adding_headers(send, self.cors.response_headers(origin))

        peer = scope.get("client")
        client = self.clients.client(peer[0] if peer else None, scope["headers"])
        wait = self.limiter.acquire(client)
        if wait:
            self.rejected.labels("rate_limit").inc()
            await _problem(
                send,
                429,
                "Too Many Requests",
                "This client is sending requests too quickly; retry later.",
                [(b"retry-after", str(retry_after_seconds(wait)).encode())],
            )
            return

        path: str = scope["path"]
        if any(segment in (".", "..") for segment in path.split("/")):
            await _not_found(send)
            return
        match = self.routes.match(path)
        if match is not None:
            await self._proxy(match, scope, receive, send, authorization, has_body, client)
        else:
            await self._local(path, method, scope, receive, send)

    async def _proxy(
        self,
        match: Match,
        scope: Scope,
        receive: Receive,
        send: Send,
        authorization: str | None,
        has_body: bool,
        client: str,
    ) -> None:
        route = match.route
        identity = None
        if route.needs_token:
            try:
                claims = await self.authenticator.authenticate(authorization)
            except Unauthenticated as exc:
                self.rejected.labels("unauthenticated").inc()
                log.info("request without a valid token", extra={"reason": str(exc)})
                challenge = (
                    b'Bearer realm="pm"'
                    if authorization is None
                    else b'Bearer realm="pm", error="invalid_token"'
                )
                await _problem(send, 401, "Unauthorized", str(exc), [(WWW_AUTHENTICATE, challenge)])
                return
            identity = (str(claims["sub"]), str(claims["role"]))
            if route.roles and identity[1] not in route.roles:
                self.rejected.labels("forbidden").inc()
                await _problem(
                    send, 403, "Forbidden", f"This operation requires role {' or '.join(route.roles)}.", []
                )
                return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        prefix = route.prefix.encode()
        if raw_path.startswith(prefix):
            upstream_path = route.target.encode() + raw_path[len(prefix) :]
        else:
            upstream_path = quote(match.upstream_path).encode()
        headers = upstream_request_headers(
            scope["headers"],
            client=client,
            scheme=scope.get("scheme", "http"),
            identity=identity,
            forwarded_prefix=route.forwarded_prefix,
        )
        try:
            await self.proxy.forward(
                route.upstream,
                scope["method"],
                upstream_path,
                scope.get("query_string", b""),
                headers,
                receive,
                send,
                has_body=has_body,
            )
        except UpstreamFailure as failure:
            extra = [(b"retry-after", b"1")] if failure.status == 503 else []
            await _problem(send, failure.status, failure.title, failure.detail, extra)
        except RequestTooLarge:
            self.rejected.labels("too_large").inc()
            await _problem(
                send, 413, "Payload Too Large", "The request body is larger than the gateway accepts."
            )
        except ClientGone:
            log.info("client went away during the request", extra={"upstream": route.upstream})

    async def _local(self, path: str, method: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Pages and documents the gateway serves itself (GET/HEAD only)."""
        if not path.startswith((API_DOCS, DOCS, DASHBOARD)) and path != "/":
            await _not_found(send)
            return
        if method not in ("GET", "HEAD"):
            await _problem(
                send,
                405,
                "Method Not Allowed",
                "Only GET and HEAD are allowed here.",
                [(b"allow", b"GET, HEAD")],
            )
            return
        try:
            if path.startswith(API_DOCS) and path[len(API_DOCS) :] in self.docs:
                document = await self.docs.document(path[len(API_DOCS) :])
                await _respond(send, 200, document, b"application/json")
            elif path in (DOCS, DOCS + "/"):
                await _respond(send, 200, self._swagger_index, b"text/html; charset=utf-8")
            elif path == DOCS + "/swagger-config.js":
                await _respond(send, 200, self._swagger_config, b"text/javascript; charset=utf-8")
            elif path.startswith(DOCS + "/"):
                await self.swagger_ui.serve(path[len(DOCS) + 1 :], scope, receive, send)
            elif path in ("/", DASHBOARD):
                await _respond(send, 307, b"", None, [(b"location", DASHBOARD.encode() + b"/")])
            elif path == DASHBOARD + "/":
                await self.dashboard.serve("index.html", scope, receive, send)
            elif path.startswith(DASHBOARD + "/"):
                await self.dashboard.serve(path[len(DASHBOARD) + 1 :], scope, receive, send)
            else:
                await _not_found(send)
        except NotFound:
            await _not_found(send)
        except UpstreamFailure as failure:
            await _problem(send, failure.status, failure.title, failure.detail)


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes | None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.extend(extra_headers or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await _respond(send, status, problem_bytes(status, title, detail), PROBLEM_JSON.encode(), extra_headers)


async def _not_found(send: Send) -> None:
    await _problem(send, 404, "Not Found", "No such resource.")
