"""OneHopWSGI: a WSGI app served over ASGI with the whole request in one worker thread, on a real socket."""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from pm.common.logs import request_id_var
from pm.common.specapp import COMPACT_JSON, OneHopWSGI, cache_security_signatures
from pm.common.web import Receive, Scope, Send
from tests.support.servers import LiveServer

StartResponse = Callable[..., Any]


def echo(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answers what it saw: method, path, query, body, the request id variable and its thread's name."""
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("handler failed")
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "body": body.decode(),
        "request_id": request_id_var.get(),
        "thread": threading.current_thread().name,
    }
    start_response("201 Created", [("Content-Type", "application/json"), ("X-Seen", "yes")])
    return iter([b'{"seen": ', json.dumps(seen).encode(), b"}"])  # several chunks, sent as one body


def with_request_id(app: Any) -> Any:
    """Sets the request id context variable the way ServiceMiddleware does, around the app."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        token = request_id_var.set("rid-42")
        try:
            await app(scope, receive, send)
        except RuntimeError:
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"caught outside"})
        finally:
            request_id_var.reset(token)

    return middleware


@pytest.fixture
def url() -> Iterator[str]:
    with LiveServer(with_request_id(OneHopWSGI(echo))) as server:
        yield server.url


def test_status_headers_and_every_chunk_arrive_as_one_response(url: str) -> None:
    response = httpx.post(f"{url}/patients?page=2", content=b'{"name": "Jane"}', timeout=10)
    assert response.status_code == 201
    assert response.headers["x-seen"] == "yes"
    seen = response.json()["seen"]
    assert seen["method"] == "POST"
    assert seen["path"] == "/patients"
    assert seen["query"] == "page=2"
    assert seen["body"] == '{"name": "Jane"}'


def test_a_chunked_body_without_content_length_reaches_the_app(url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"a": '
        yield b"1}"

    response = httpx.post(f"{url}/x", content=chunks(), timeout=10)
    assert response.status_code == 201
    assert response.json()["seen"]["body"] == '{"a": 1}'


def test_the_app_runs_in_a_worker_thread_with_the_requests_context(url: str) -> None:
    seen = httpx.get(f"{url}/x", timeout=10).json()["seen"]
    assert seen["thread"].startswith("WSGI")
    assert seen["request_id"] == "rid-42"
    assert contextvars.copy_context().get(request_id_var) is None  # nothing leaked into this thread


def test_an_exception_in_the_app_reaches_the_asgi_middleware_around_it(url: str) -> None:
    response = httpx.get(f"{url}/boom", timeout=10)
    assert response.status_code == 500
    assert response.text == "caught outside"


def test_responses_are_compact_json() -> None:
    assert COMPACT_JSON.dumps({"a": [1, 2], "b": "c"}) == '{"a":[1,2],"b":"c"}\n'


def test_connexions_signature_inspection_is_cached_and_still_right() -> None:
    import connexion.security

    cache_security_signatures()
    cache_security_signatures()  # idempotent: one cache, not a cache of a cache
    inspect = connexion.security.inspect_function_arguments
    assert hasattr(inspect, "cache_info")
    assert not hasattr(inspect.__wrapped__, "cache_info")

    def bearer(token: str, request: Any = None) -> None:
        return None

    assert inspect(bearer) == (["token", "request"], False)
    assert inspect(bearer) == (["token", "request"], False)
    assert inspect.cache_info().hits >= 1
