"""The reverse proxy: one pooled keep-alive HTTP client, bodies streamed both ways, bounded waits."""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from prometheus_client import CollectorRegistry, Counter

from pm.common import tracing
from pm.common.tls import ClientTls
from pm.common.web import BodyTooLarge, Message, Receive, Send
from pm.gateway.domain.headers import Headers, client_response_headers

log = logging.getLogger(__name__)

try:
    import sniffio  # noqa: F401
except ImportError:
    # httpcore imports sniffio on every pooled request to tell asyncio from trio; when it is not
    # installed each attempt rescans sys.path (~0.1 ms a request). Remember the miss once: asyncio.
    sys.modules["sniffio"] = None  # type: ignore[assignment]


class UpstreamFailure(Exception):
    """The upstream could not give an answer; `status` is what the client gets instead."""

    def __init__(self, status: int, title: str, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.reason = reason


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class RequestTooLarge(Exception):
    """The request body grew past the gateway's limit while it was being forwarded."""


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float

    def httpx(self) -> httpx.Timeout:
        # Waiting for a pooled connection is bounded like connecting: a saturated pool means 503 soon.
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=self.connect)


class ConnectionPools:
    """Pooled keep-alive HTTP/1.1 connections to the upstreams, over a few httpx transports in turn.

    The transport (the pool under httpx.AsyncClient) is used directly: the client layer would keep a
    cookie jar shared by every caller, so one user's upstream `Set-Cookie` would ride along on other
    users' requests, and it adds headers the caller never sent (Accept-Encoding, User-Agent).

    httpx's pool scans all of its connections (with a poll() for each idle one) on every request, so
    its cost grows with concurrency: measured here at c=32, one pool of 32 connections cost ~1.4 ms CPU
    a request, sixteen pools of two ~0.4 ms. Requests are spread over `shards` pools.
    """

    def __init__(
        self, timeouts: Timeouts, max_connections: int, *, shards: int = 16, tls: ClientTls | None = None
    ) -> None:
        shards = max(1, min(shards, max_connections))
        per_shard = -(-max_connections // shards)
        # One TLS context for all: each would otherwise load the CA bundle again (~50 ms apiece).
        # https:// upstreams are checked against PM_HTTP_TLS_CA_FILE's CA when set.
        context = tls.ssl_context() if tls is not None else httpx.create_ssl_context()
        limits = httpx.Limits(
            max_connections=per_shard, max_keepalive_connections=per_shard, keepalive_expiry=20.0
        )
        # With tracing on, each forwarded request is a CLIENT span whose context goes upstream.
        self.transports = [
            tracing.http_transport(httpx.AsyncHTTPTransport(verify=context, limits=limits, trust_env=False))
            for _ in range(shards)
        ]
        self._next = itertools.cycle(self.transports).__next__
        self.timeout = timeouts.httpx().as_dict()

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send `request` (bounded by the pools' timeouts); the response body is still to be read."""
        request.extensions["timeout"] = self.timeout
        response = await self._next().handle_async_request(request)
        response.request = request
        return response

    async def aclose(self) -> None:
        for transport in self.transports:
            await transport.aclose()


def translate(exc: Exception, upstream: str, timeouts: Timeouts) -> UpstreamFailure:
    """One place where transport errors become the answers clients see."""
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamFailure(
            503, "Service Unavailable", f"Too many requests are waiting for the {upstream} service.", "pool"
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamFailure(
            504,
            "Gateway Timeout",
            f"The {upstream} service did not accept a connection within {timeouts.connect:g} s.",
            "connect_timeout",
        )
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamFailure(
            504,
            "Gateway Timeout",
            f"The {upstream} service did not answer within {timeouts.read:g} s.",
            "read_timeout",
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamFailure(
            502, "Bad Gateway", f"The {upstream} service refused the connection.", "connect_refused"
        )
    return UpstreamFailure(
        502, "Bad Gateway", f"The {upstream} service closed the connection unexpectedly.", "protocol"
    )


class Proxy:
    """Forwards one request to an upstream and streams the answer back to the client."""

    def __init__(
        self,
        pools: ConnectionPools,
        upstreams: dict[str, str],
        timeouts: Timeouts,
        registry: CollectorRegistry,
    ) -> None:
        self.pools = pools
        self.upstreams = {name: httpx.URL(url) for name, url in upstreams.items()}
        self.timeouts = timeouts
        self.responses = Counter(
            "pm_gateway_upstream_responses_total",
            "Responses received from upstream services",
            ["upstream", "status"],
            registry=registry,
        )
        self.failures = Counter(
            "pm_gateway_upstream_failures_total",
            "Requests for which an upstream service gave no answer",
            ["upstream", "reason"],
            registry=registry,
        )

    async def forward(
        self,
        upstream: str,
        method: str,
        raw_path: bytes,
        query_string: bytes,
        headers: Headers,
        receive: Receive,
        send: Send,
        *,
        has_body: bool,
    ) -> None:
        """Send the request upstream and stream the response to `send`.

        Raises UpstreamFailure (nothing sent yet), RequestTooLarge or ClientGone. Once the response has
        started, a broken upstream can only be signalled by ending the connection, which the server does
        when this returns without completing the response.
        """
        target = raw_path + (b"?" + query_string if query_string else b"")
        url = self.upstreams[upstream].copy_with(raw_path=target)
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=_request_body(receive) if has_body else None,
        )
        try:
            response = await self.pools.send(request)
        except (BodyTooLarge, RequestTooLarge):
            raise RequestTooLarge() from None
        except ClientGone:
            raise
        except httpx.HTTPError as exc:
            failure = translate(exc, upstream, self.timeouts)
            self.failures.labels(upstream, failure.reason).inc()
            log.warning(
                "upstream request failed",
                extra={"upstream": upstream, "reason": failure.reason, "error": type(exc).__name__},
            )
            raise failure from None
        self.responses.labels(upstream, str(response.status_code)).inc()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": client_response_headers(response.headers.raw),
                }
            )
            async for chunk in response.stream:  # type: ignore[union-attr]
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as exc:
            self.failures.labels(upstream, "broken_response").inc()
            log.warning(
                "upstream response broke off",
                extra={"upstream": upstream, "error": type(exc).__name__},
            )
        finally:
            await response.aclose()


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
