"""ServiceMiddleware and the problem handlers around a real Connexion app on a real socket."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from pm.common.health import Degraded
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.common.web import MetricChildren
from tests.common import webapp
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

PROBLEM = "application/problem+json"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey("web-key", "RS256")


@pytest.fixture(scope="module")
def client(signing_key: SigningKey) -> Iterator[httpx.Client]:
    verifier = TokenVerifier(StaticKeys({signing_key.kid: signing_key.public}), issuer=ISSUER)
    with LiveServer(webapp.build(verifier=verifier, max_body_bytes=1024)) as server:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            yield http


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_health_is_up_when_every_check_passes() -> None:
    app = webapp.build(health_checks={"database": lambda: None, "broker": lambda: None})
    with LiveServer(app) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UP"
    assert body["service"] == "testapp"
    assert body["components"] == {"database": {"status": "UP"}, "broker": {"status": "UP"}}


def test_health_is_down_naming_the_failing_check() -> None:
    def broker() -> None:
        raise ConnectionError("connection refused by 127.0.0.1:9092")

    app = webapp.build(health_checks={"database": lambda: None, "broker": broker})
    with LiveServer(app) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "DOWN"
    assert body["failing"] == ["broker"]
    assert body["components"]["database"] == {"status": "UP"}
    assert body["components"]["broker"] == {
        "status": "DOWN",
        "detail": "connection refused by 127.0.0.1:9092",
    }


def test_health_reports_hanging_checks_as_timed_out_within_one_timeout() -> None:
    release = threading.Event()

    def hanging() -> None:
        release.wait(30)

    app = webapp.build(
        health_checks={"database": lambda: None, "jwks": hanging, "broker": hanging, "billing": hanging},
        health_timeout=1.0,
    )
    try:
        with LiveServer(app) as server:
            started = time.monotonic()
            response = httpx.get(f"{server.url}/health", timeout=10)
            elapsed = time.monotonic() - started
            release.set()
    finally:
        release.set()
    assert response.status_code == 503
    body = response.json()
    assert body["components"]["database"] == {"status": "UP"}
    for name in ("jwks", "broker", "billing"):
        assert body["components"][name] == {"status": "DOWN", "detail": "timed out"}
    assert body["failing"] == ["jwks", "broker", "billing"]
    # Three hanging checks one after another would take three timeouts.
    assert elapsed < 2.5


def test_an_informational_check_that_fails_makes_the_service_degraded_not_down() -> None:
    def broker() -> None:
        raise ConnectionError("broker unreachable")

    app = webapp.build(health_checks={"database": lambda: None}, informational_checks={"broker": broker})
    with LiveServer(app) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "DEGRADED"
    assert body["degraded"] == ["broker"]
    assert "failing" not in body
    assert body["components"]["broker"] == {"status": "DOWN", "detail": "broker unreachable"}


def test_a_check_raising_degraded_reports_the_component_degraded() -> None:
    def downstream() -> None:
        raise Degraded("patient reports DEGRADED")

    app = webapp.build(health_checks={"patient": downstream})
    with LiveServer(app) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "DEGRADED"
    assert response.json()["components"]["patient"] == {
        "status": "DEGRADED",
        "detail": "patient reports DEGRADED",
    }


def test_a_service_without_dependencies_is_up() -> None:
    with LiveServer(webapp.build()) as server:
        started = time.monotonic()
        responses = [httpx.get(f"{server.url}/health", timeout=10) for _ in range(3)]
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [200] * 3
    assert elapsed < 2.0  # no round to wait for
    assert responses[-1].json() == {"status": "UP", "service": "testapp", "components": {}}


def test_liveness_answers_while_an_essential_dependency_is_down() -> None:
    def database() -> None:
        raise ConnectionError("database gone")

    app = webapp.build(health_checks={"database": database})
    with LiveServer(app) as server:
        live = httpx.get(f"{server.url}/health/live", timeout=5)
        ready = httpx.get(f"{server.url}/health", timeout=5)
    assert live.status_code == 200
    assert live.json() == {"status": "UP", "service": "testapp"}
    assert ready.status_code == 503


def test_health_calls_answer_from_the_last_round_and_rounds_follow_the_interval() -> None:
    calls: list[float] = []
    failing = threading.Event()

    def database() -> None:
        calls.append(time.monotonic())
        if failing.is_set():
            raise ConnectionError("database gone")

    app = webapp.build(health_checks={"database": database}, health_interval=0.5)
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        started = time.monotonic()
        statuses = [client.get("/health").status_code for _ in range(100)]
        elapsed = time.monotonic() - started
        assert statuses == [200] * 100
        # One check per interval at most (plus the first), however many calls came.
        assert 1 <= len(calls) <= 2 + elapsed / 0.5
        failing.set()
        deadline = time.monotonic() + 5
        while client.get("/health").status_code != 503:
            assert time.monotonic() < deadline, "the failure was never reported"
            time.sleep(0.05)


def test_a_hanging_check_is_not_started_again_while_it_hangs() -> None:
    release = threading.Event()
    started: list[float] = []

    def hanging() -> None:
        started.append(time.monotonic())
        release.wait(30)

    app = webapp.build(health_checks={"broker": hanging}, health_timeout=0.3, health_interval=0.2)
    try:
        with LiveServer(app) as server:
            assert httpx.get(f"{server.url}/health", timeout=5).status_code == 503
            time.sleep(2.0)  # several rounds
            body = httpx.get(f"{server.url}/health", timeout=5).json()
            assert body["components"]["broker"] == {"status": "DOWN", "detail": "timed out"}
            assert len(started) == 1
            release.set()
            deadline = time.monotonic() + 5
            while httpx.get(f"{server.url}/health", timeout=5).status_code != 200:
                assert time.monotonic() < deadline, "the check never ran again after it returned"
                time.sleep(0.05)
    finally:
        release.set()


def test_metrics_count_requests_by_method_and_status(client: httpx.Client) -> None:
    def count(text: str, method: str, status: int) -> float:
        match = re.search(
            rf'^pm_http_requests_total\{{method="{method}",status="{status}"\}} (\S+)$', text, re.M
        )
        return float(match.group(1)) if match else 0.0

    before = client.get("/metrics").text
    client.get("/items/1")
    client.get("/items/1")
    client.get("/items/99")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE pm_http_requests_total counter" in response.text
    assert "pm_http_request_duration_seconds_bucket" in response.text
    assert count(response.text, "GET", 200) - count(before, "GET", 200) >= 2
    assert count(response.text, "GET", 404) - count(before, "GET", 404) == 1


def test_a_sane_request_id_is_echoed_and_reaches_handlers_and_logs(client: httpx.Client) -> None:
    response = client.get("/context", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123.x:y_z"
    assert response.json() == {"header": "abc-123.x:y_z", "log_context": "abc-123.x:y_z"}


@pytest.mark.parametrize(
    "sent",
    [None, b"", b"has spaces", b"x" * 129, b"semi;colon", b"tab\tbed", "ünïcode".encode(), b"id-\xaa\xb2"],
    ids=repr,
)
def test_a_missing_or_malformed_request_id_is_replaced_by_a_generated_one(
    client: httpx.Client, sent: bytes | None
) -> None:
    headers: dict[bytes, bytes] = {} if sent is None else {b"X-Request-ID": sent}
    response = client.get("/context", headers=headers)
    assert response.status_code == 200
    generated = response.headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert response.json() == {"header": generated, "log_context": generated}


def test_every_request_gets_a_different_generated_request_id(client: httpx.Client) -> None:
    ids = {client.get("/items/1").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize("path", ["/items/1", "/nowhere", "/health", "/metrics", "/boom"])
def test_security_headers_are_on_every_response(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_a_declared_body_over_the_limit_is_refused_with_413(client: httpx.Client) -> None:
    response = client.post("/items", content=b'{"name": "' + b"x" * 2000 + b'"}')
    body = assert_problem(response, 413)
    assert "1024 bytes" in str(body["detail"])


def test_a_chunked_body_over_the_limit_is_refused_with_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    response = client.post("/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_a_chunked_body_under_the_limit_reaches_the_handler(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": '
        yield b'"streamed"}'

    response = client.post("/items", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json() == {"id": 2, "name": "streamed"}


def test_a_body_under_the_limit_is_served(client: httpx.Client) -> None:
    response = client.post("/items", json={"name": "second"})
    assert response.status_code == 201
    assert response.json() == {"id": 2, "name": "second"}


def test_an_unknown_path_is_a_404_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/no/such/path"), 404)


def test_a_wrong_method_is_a_405_problem(client: httpx.Client) -> None:
    assert_problem(client.delete("/items/1"), 405)


def test_a_problem_raised_by_a_handler_keeps_its_status_detail_and_extensions(client: httpx.Client) -> None:
    body = assert_problem(client.get("/items/42"), 404)
    assert body["detail"] == "Item 42 does not exist."
    assert body["item_id"] == 42


@pytest.mark.parametrize(
    "payload", [{}, {"name": ""}, {"name": "x" * 21}, {"name": "ok", "extra": 1}, {"name": 5}], ids=repr
)
def test_a_body_that_breaks_the_spec_is_a_400_problem(client: httpx.Client, payload: object) -> None:
    assert_problem(client.post("/items", json=payload), 400)


def test_a_path_parameter_that_breaks_the_spec_is_a_400_problem(client: httpx.Client) -> None:
    assert_problem(client.get("/items/0"), 400)


def test_an_unexpected_error_is_a_500_problem_without_internals(client: httpx.Client) -> None:
    response = client.get("/boom")
    body = assert_problem(response, 500)
    assert "Traceback" not in response.text
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert body["detail"] == "An unexpected error occurred."


def test_a_missing_token_is_a_401_problem_with_www_authenticate(client: httpx.Client) -> None:
    response = client.get("/me")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer"])
def test_a_bad_token_is_a_401_problem_with_www_authenticate(client: httpx.Client, authorization: str) -> None:
    response = client.get("/me", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_valid_token_reaches_the_handler_as_claims(client: httpx.Client, signing_key: SigningKey) -> None:
    token = signing_key.mint(sub="admin@example.com", role="ADMIN")
    response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {"sub": "admin@example.com", "role": "ADMIN"}


def test_require_role_refuses_another_role_with_a_403_problem(
    client: httpx.Client, signing_key: SigningKey
) -> None:
    user = signing_key.mint(role="USER")
    body = assert_problem(client.get("/admin", headers={"Authorization": f"Bearer {user}"}), 403)
    assert "ADMIN" in str(body["detail"])
    admin = signing_key.mint(role="ADMIN")
    assert client.get("/admin", headers={"Authorization": f"Bearer {admin}"}).json() == {"ok": True}


def test_headers_of_a_problem_reach_the_client(client: httpx.Client) -> None:
    response = client.get("/busy")
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "30"


def test_metric_children_are_made_once_per_key_and_their_number_is_bounded() -> None:
    made: list[tuple[str, int]] = []

    def make(key: tuple[str, int]) -> str:
        made.append(key)
        return f"child {key}"

    children: MetricChildren[tuple[str, int], str] = MetricChildren(make, limit=2)
    assert [children.get(("GET", 200)) for _ in range(3)] == ["child ('GET', 200)"] * 3
    assert children.get(("GET", 404)) == "child ('GET', 404)"
    assert made == [("GET", 200), ("GET", 404)]
    # A third key (a client's made-up method) starts the cache again instead of growing it.
    children.get(("BREW", 200))
    children.get(("GET", 200))
    assert made == [("GET", 200), ("GET", 404), ("BREW", 200), ("GET", 200)]
