"""Real servers on loopback: echo upstreams for auth, patient and analytics, a JWKS server, the gateway."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from pm.common import tracing
from pm.common.config import Env
from pm.common.tokens import JwksKeys
from pm.gateway.adapters.traces import TraceStore
from pm.gateway.bootstrap import bootstrap
from pm.gateway.config import Settings
from tests.support import tokens
from tests.support.servers import LiveServer


class SigningKey(tokens.SigningKey):
    """An RS256 key whose tokens are the demo admin's unless told otherwise."""

    def token(self, *, kid: str | None = None, **overrides: Any) -> str:
        claims = {"sub": "testuser@test.com", "role": "ADMIN", **overrides}
        return self.mint(headers={"kid": kid} if kid else None, **claims)


class JwksServer:
    """Serves the public keys of `keys`; counts fetches so tests can see refreshes."""

    def __init__(self, keys: list[SigningKey]) -> None:
        self.keys = list(keys)
        self.fetches = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.fetches += 1
        body = json.dumps({"keys": [key.jwk() for key in self.keys]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class EchoUpstream:
    """A service behind the gateway that answers with what it received.

    Special paths: `/health` answers `health_status` (body status `health_report`, or UP/DOWN by the
    status) and counts the calls in `health_calls`; `/openapi.json` answers `openapi`; `.../slow`
    waits `delay` seconds; `.../stream` sends its body in three parts, `part_gap` seconds apart;
    `.../status/<code>` answers that status with a problem body; other paths echo the request (and
    `.../login-cookie` also sets a cookie).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.health_status = 200
        self.health_report: str | None = None
        self.health_calls = 0
        self.openapi: Any = {"openapi": "3.0.3", "info": {"title": name, "version": "1"}, "paths": {}}
        self.openapi_fetches = 0
        self.delay = 0.0
        self.part_gap = 0.3
        # Set when a `.../slow` request has arrived (a test can act while it is in flight).
        self.slow_arrived = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/health":
            self.health_calls += 1
            report = self.health_report or ("UP" if self.health_status == 200 else "DOWN")
            await _json(send, self.health_status, {"status": report})
            return
        if path == "/openapi.json":
            self.openapi_fetches += 1
            if isinstance(self.openapi, bytes):
                await _raw(send, 200, self.openapi, b"text/plain")
            else:
                await _json(send, 200, self.openapi)
            return
        digest = hashlib.sha256()
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            size += len(chunk)
            if not message.get("more_body"):
                break
        if "/status/" in path:
            code = int(path.rsplit("/", 1)[1])
            problem = {"type": "about:blank", "title": "From upstream", "status": code, "detail": self.name}
            await _raw(send, code, json.dumps(problem).encode(), b"application/problem+json")
            return
        if path.endswith("/slow"):
            self.slow_arrived.set()
            await asyncio.sleep(self.delay)
        if path.endswith("/stream"):
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
            )
            for part in (b"first,", b"second,", b"third"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
                await asyncio.sleep(self.part_gap)
            await send({"type": "http.response.body", "body": b""})
            return
        body = {
            "service": self.name,
            "method": scope["method"],
            "path": path,
            "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_size": size,
            "body_sha256": digest.hexdigest(),
        }
        headers = [
            (b"x-upstream", self.name.encode()),
            (b"keep-alive", b"timeout=99"),
            (b"server", b"upstream/1.0"),
        ]
        if path.endswith("/login-cookie"):
            headers.append((b"set-cookie", b"session=alice-secret; Path=/"))
        await _json(send, 200, body, headers)


async def _json(send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await _raw(send, status, json.dumps(body).encode(), b"application/json", headers)


async def _raw(
    send: Any, status: int, body: bytes, content_type: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})


def echoed_headers(response: httpx.Response) -> dict[str, list[str]]:
    """The request headers the upstream received, by lower-case name."""
    seen: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="session")
def foreign_key() -> SigningKey:
    return SigningKey("key-1")


@pytest.fixture(scope="session")
def jwks_server(signing_key: SigningKey) -> Iterator[tuple[JwksServer, str]]:
    server = JwksServer([signing_key])
    with LiveServer(server) as live:
        yield server, f"{live.url}/.well-known/jwks.json"


@pytest.fixture
def jwks(jwks_server: tuple[JwksServer, str], signing_key: SigningKey) -> tuple[JwksServer, str]:
    server, url = jwks_server
    server.keys = [signing_key]
    server.fetches = 0
    return server, url


@pytest.fixture(scope="session")
def upstream_servers() -> Iterator[dict[str, tuple[EchoUpstream, str]]]:
    with ExitStack() as stack:
        servers = {}
        for name in ("auth", "patient", "analytics"):
            app = EchoUpstream(name)
            servers[name] = (app, stack.enter_context(LiveServer(app)).url)
        yield servers


@pytest.fixture
def upstreams(upstream_servers: dict[str, tuple[EchoUpstream, str]]) -> dict[str, tuple[EchoUpstream, str]]:
    """The echo services, back to their defaults for each test."""
    for name, (app, _url) in upstream_servers.items():
        app.__init__(name)  # type: ignore[misc]
    return upstream_servers


Gateway = Callable[..., httpx.Client]


@pytest.fixture
def gateway(
    upstreams: dict[str, tuple[EchoUpstream, str]], jwks: tuple[JwksServer, str]
) -> Iterator[Gateway]:
    """Starts a gateway over the echo upstreams; keyword arguments are extra PM_* settings."""
    with ExitStack() as stack:

        def start(traces: TraceStore | None = None, **settings: str) -> httpx.Client:
            environ = {
                "PM_AUTH_URL": upstreams["auth"][1],
                "PM_PATIENT_URL": upstreams["patient"][1],
                "PM_ANALYTICS_URL": upstreams["analytics"][1],
                "PM_JWKS_URL": jwks[1],
                **settings,
            }
            config = Settings.from_env(Env(environ))
            # No refresh throttle: tests look at every refetch an unknown key id causes.
            built = bootstrap(config, keys=JwksKeys(config.jwks_url, min_refresh_interval=0.0), traces=traces)
            built.load_keys()
            # Wrapped as `serve` wraps it (no change unless a test switched tracing on).
            live = stack.enter_context(LiveServer(tracing.asgi(built.app)))
            return stack.enter_context(httpx.Client(base_url=live.url, timeout=10.0))

        yield start
