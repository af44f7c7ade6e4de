"""The reverse proxy: pooled keep-alive HTTP connections, bodies streamed both ways, bounded waits."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pm.common import tracing
from pm.common.tls import ClientTls
from pm.common.web import BodyTooLarge, MetricChildren
from pm.gateway.domain.headers import Headers, client_response_headers

log = logging.getLogger(__name__)


class UpstreamFailure(Exception):
    """The upstream could not give an answer; `status` is what the client gets instead."""

    def __init__(self, status: int, title: str, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.reason = reason


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

    httpcore asks `sniffio` which event loop runs on every pooled request; the gateway's BUILD
    declares that package (nothing imports it) because without it each ask is a failed import
    (measured 164 µs against 3.5 µs; docs/services/gateway.md).
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


# Answers up to this declared length (and those without a body: 204, 304) are read whole and sent in
# one piece; longer ones, and answers without a length, are streamed. Starlette's StreamingResponse
# watches for a client disconnect in a task of its own (uvicorn speaks ASGI 2.3), which measured
# ~0.5 ms a response here: more than the gateway's whole cost per request, for the small JSON
# documents that nearly every answer is.
WHOLE_ANSWER_BYTES = 64 * 1024


class UpstreamStream(StreamingResponse):
    """A long service answer streamed to the client as it arrives; its connection goes back to the
    pool when the answer is done, broken off or abandoned by the client."""

    def __init__(self, proxy: Proxy, upstream: str, response: httpx.Response, headers: Headers) -> None:
        super().__init__(response.aiter_raw(), status_code=response.status_code)
        # The answer's headers as they are (no Content-Type of Starlette's; a Content-Length only if the
        # service sent one).
        self.raw_headers = headers
        self.proxy = proxy
        self.upstream = upstream
        self.response = response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except httpx.HTTPError as exc:
            # The status line is out: the server ends the connection, so the client sees a cut answer.
            self.proxy.failures.labels(self.upstream, "broken_response").inc()
            log.warning(
                "upstream response broke off", extra={"upstream": self.upstream, "error": type(exc).__name__}
            )
        finally:
            await self.response.aclose()


# A request without a body (a stream of no bytes can be read any number of times).
_NO_BODY = httpx.ByteStream(b"")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Proxy:
    """Forwards one request to an upstream and gives back its answer as a Starlette response."""

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
        self._responses: MetricChildren[tuple[str, int], Any] = MetricChildren(
            lambda key: self.responses.labels(key[0], str(key[1]))
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
        target: bytes,
        headers: Headers,
        body: AsyncIterator[bytes] | None,
    ) -> Response:
        """Send the request (`target` is the raw path and query) and return the answer: whole when it is
        short, else as soon as its status line is in. Raises UpstreamFailure, RequestTooLarge or
        ClientDisconnect, with nothing sent to the client."""
        base = self.upstreams[upstream]
        url = base.copy_with(raw_path=target)
        if body is None:
            # What `content=None` would give, without httpx building the headers twice: no body, Host
            # first, `Content-Length: 0` for the methods that expect a body.
            auto = [(b"Host", base.netloc)]
            if method.upper() in _BODY_METHODS:
                auto.append((b"Content-Length", b"0"))
            request = httpx.Request(method, url, headers=auto + headers, stream=_NO_BODY)
        else:
            request = httpx.Request(method, url, headers=headers, content=body)
        try:
            response = await self.pools.send(request)
        except BodyTooLarge:
            raise RequestTooLarge() from None
        except ClientDisconnect:
            raise
        except httpx.HTTPError as exc:
            failure = translate(exc, upstream, self.timeouts)
            self.failures.labels(upstream, failure.reason).inc()
            log.warning(
                "upstream request failed",
                extra={"upstream": upstream, "reason": failure.reason, "error": type(exc).__name__},
            )
            raise failure from None
        status = response.status_code
        self._responses.get((upstream, status)).inc()
        answer_headers, length = client_response_headers(response.headers.raw)
        short = length.isdigit() and int(length) <= WHOLE_ANSWER_BYTES
        if not (short or status in (204, 304)):
            return UpstreamStream(self, upstream, response, answer_headers)
        try:
            # The body as it came (no decoding: the client gets the service's Content-Encoding too).
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        except httpx.HTTPError as exc:
            self.failures.labels(upstream, "broken_response").inc()
            log.warning(
                "upstream response broke off", extra={"upstream": upstream, "error": type(exc).__name__}
            )
            raise translate(exc, upstream, self.timeouts) from None
        finally:
            await response.aclose()
        whole = Response(content, status)
        # The service's headers as they are, its Content-Length included (not the body's: a HEAD
        # answer has none of the body it announces), instead of the ones Starlette would make.
        whole.raw_headers = answer_headers
        return whole
