"""spec_app and its pieces on real sockets: OneHopWSGI, the environ it builds, the bearer handler.

Two tests here fail when Connexion changes under the public extension points spec_app uses: the Flask
handler must run in OneHopWSGI's threads (the last entry of `middlewares=` is the innermost layer), and
the claims of a token must reach it (Connexion's Flask request reads its context from `asgi.scope`).
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx
import pytest

from pm.common.logs import request_id_var
from pm.common.specapp import COMPACT_JSON, bearer_info_function
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.common.web import Receive, Scope, Send
from pm.common.wsgi import OneHopWSGI, wsgi_environ
from tests.common import webapp
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

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
    assert seen["thread"].startswith("flask")
    assert seen["request_id"] == "rid-42"
    assert contextvars.copy_context().get(request_id_var) is None  # nothing leaked into this thread


def test_an_exception_in_the_app_reaches_the_asgi_middleware_around_it(url: str) -> None:
    response = httpx.get(f"{url}/boom", timeout=10)
    assert response.status_code == 500
    assert response.text == "caught outside"


def test_responses_are_compact_json() -> None:
    assert COMPACT_JSON.dumps({"a": [1, 2], "b": "c"}) == '{"a":[1,2],"b":"c"}\n'


def test_the_environ_follows_pep_3333_and_carries_the_asgi_scope() -> None:
    scope = {
        "type": "http",
        "method": "PUT",
        "root_path": "/api",
        "path": "/api/patients/é",
        "query_string": b"a=1&b=%C3%A9",
        "http_version": "1.1",
        "scheme": "https",
        "server": ("10.0.0.1", 8443),
        "client": ("10.0.0.2", 51000),
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"x-forwarded-for", b"2.2.2.2"),
        ],
    }
    environ = wsgi_environ(scope, b"{}")
    assert environ["SCRIPT_NAME"] == "/api"
    assert environ["PATH_INFO"] == "/patients/é".encode().decode("latin-1")
    assert environ["QUERY_STRING"] == "a=1&b=%C3%A9"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("10.0.0.1", "8443")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.2", "51000")
    assert environ["wsgi.url_scheme"] == "https"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "2")
    assert environ["HTTP_X_FORWARDED_FOR"] == "1.1.1.1,2.2.2.2"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["wsgi.input"].read() == b"{}"
    assert environ["asgi.scope"] is scope


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey("spec-key", "RS256")


@pytest.fixture(scope="module")
def service(signing_key: SigningKey) -> Iterator[httpx.Client]:
    verifier = TokenVerifier(StaticKeys({signing_key.kid: signing_key.public}), issuer=ISSUER)
    with LiveServer(webapp.build(verifier=verifier)) as server:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            yield http


def test_spec_app_handlers_run_in_the_one_hop_bridge_not_connexions(service: httpx.Client) -> None:
    response = service.get("/thread")
    assert response.status_code == 200
    assert response.json()["thread"].startswith("flask")  # a2wsgi's threads are named "WSGI_n"


def test_the_claims_of_a_token_reach_the_handler_through_connexions_context(
    service: httpx.Client, signing_key: SigningKey
) -> None:
    token = signing_key.mint(sub="user-1", role="USER")
    response = service.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "user-1", "role": "USER"}


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer Bearer x"]
)
def test_anything_but_one_bearer_token_is_a_401_problem(
    service: httpx.Client, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = service.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_spec_app_changes_nothing_inside_connexion() -> None:
    import connexion.security
    import connexion.utils

    webapp.build()
    # No process-wide replacement of Connexion's functions (an earlier version cached this one).
    assert connexion.security.inspect_function_arguments is connexion.utils.inspect_function_arguments


async def _good(token: str, request: Any) -> None:
    return None


def _not_async(token: str, request: Any) -> None:
    return None


async def _wrong_order(request: Any, token: str) -> None:
    return None


def test_the_bearer_info_function_must_be_async_and_take_token_and_request() -> None:
    assert bearer_info_function(f"{__name__}._good") is _good
    assert bearer_info_function("pm.common.tokens.bearer_info") is not None
    for name in ("_not_async", "_wrong_order"):
        with pytest.raises(ValueError, match="must be"):
            bearer_info_function(f"{__name__}.{name}")
    with pytest.raises(ValueError, match="x-bearerInfoFunc"):
        bearer_info_function(None)
