"""What reaches the services: paths, query strings, methods, bodies and headers."""

from __future__ import annotations

import hashlib
import http.client
import os
import time

import httpx
import pytest

from tests.gateway.conftest import Gateway, SigningKey, echoed_headers
from tests.support.routes import BROKER_ROUTES

ID = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture
def bearer(signing_key: SigningKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token()}"}


@pytest.mark.parametrize(
    ("public", "service", "upstream_path"),
    [
        ("/api/patients", "patient", "/patients"),
        ("/api/patients/", "patient", "/patients/"),
        (f"/api/patients/{ID}", "patient", f"/patients/{ID}"),
        ("/api/analytics/summary", "analytics", "/analytics/summary"),
        ("/api/analytics/events", "analytics", "/analytics/events"),
        ("/auth/users", "auth", "/users"),
        ("/auth/users/42", "auth", "/users/42"),
        ("/api/broker/outbox", "patient", "/broker/outbox"),
        ("/api/broker/topics", "analytics", "/broker/topics"),
        (
            "/api/broker/topics/patient/partitions/0/messages",
            "analytics",
            "/broker/topics/patient/partitions/0/messages",
        ),
        ("/api/broker/consumer-groups", "analytics", "/broker/consumer-groups"),
        ("/api/broker/dead-letters", "analytics", "/broker/dead-letters"),
    ],
)
def test_protected_routes_reach_their_service_with_the_prefix_replaced(
    gateway: Gateway, bearer: dict[str, str], public: str, service: str, upstream_path: str
) -> None:
    response = gateway().get(public, headers=bearer)
    assert response.status_code == 200
    assert response.json()["service"] == service
    assert response.json()["path"] == upstream_path


@pytest.mark.parametrize(
    ("method", "public", "upstream_path"),
    [
        ("POST", "/auth/login", "/login"),
        ("GET", "/auth/validate", "/validate"),
        ("GET", "/auth/.well-known/jwks.json", "/.well-known/jwks.json"),
    ],
)
def test_public_auth_routes_need_no_token(
    gateway: Gateway, method: str, public: str, upstream_path: str
) -> None:
    response = gateway().request(method, public, json={"email": "a@b.c", "password": "x"})
    assert response.status_code == 200
    assert response.json()["service"] == "auth"
    assert response.json()["path"] == upstream_path


@pytest.mark.parametrize(
    "path",
    [
        "/auth/health",
        "/auth/metrics",
        "/auth/login/extra",
        "/auth/login/",
        "/auth",
        "/api",
        "/auth/openapi.json",
        "/api/patientsX",
        "/api/other",
        "/patients",
        "/nope",
    ],
)
def test_paths_outside_the_public_api_are_404_problems(
    gateway: Gateway, bearer: dict[str, str], path: str
) -> None:
    response = gateway().get(path, headers=bearer)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404


def test_dot_segments_cannot_escape_a_route(gateway: Gateway, bearer: dict[str, str]) -> None:
    url = httpx.URL(str(gateway().base_url))
    for raw in ("/api/patients/../metrics", "/api/patients/%2e%2e/health", "/api/patients/./x"):
        # http.client sends the path as written (httpx would normalise the dot segments away).
        connection = http.client.HTTPConnection(url.host, url.port, timeout=5)
        try:
            connection.request("GET", raw, headers=bearer)
            response = connection.getresponse()
            assert response.status == 404, raw
            response.read()
        finally:
            connection.close()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_methods_and_query_strings_are_preserved(
    gateway: Gateway, bearer: dict[str, str], method: str
) -> None:
    response = gateway().request(
        method, f"/api/patients/{ID}", params={"page": "2", "search": "Jöhn Doe&co"}, headers=bearer
    )
    assert response.status_code == 200
    assert response.json()["method"] == method
    assert response.json()["query"] == "page=2&search=J%C3%B6hn+Doe%26co"


def test_percent_encoded_path_segments_reach_the_service_unchanged(
    gateway: Gateway, bearer: dict[str, str]
) -> None:
    client = gateway()
    response = client.get("/api/patients/a%2Fb%20c", headers=bearer)
    assert response.json()["raw_path"] == "/patients/a%2Fb%20c"
    # A prefix the client encoded itself still routes, and the rest keeps its encoding.
    encoded_prefix = client.get("/api/%70atients/a%20b", headers=bearer)
    assert encoded_prefix.json()["raw_path"] == "/patients/a%20b"


def test_a_large_body_is_streamed_through_intact(gateway: Gateway, bearer: dict[str, str]) -> None:
    body = os.urandom(6 * 1024 * 1024)

    def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    client = gateway(PM_GATEWAY_MAX_BODY_BYTES=str(8 * 1024 * 1024))
    with_length = client.post("/api/patients", content=body, headers=bearer)
    chunked = client.post("/api/patients", content=chunks(), headers=bearer)
    for response in (with_length, chunked):
        assert response.status_code == 200
        assert response.json()["body_size"] == len(body)
        assert response.json()["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_bodies_over_the_limit_are_refused_with_413(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway(PM_GATEWAY_MAX_BODY_BYTES="1000")
    declared = client.post("/api/patients", content=b"x" * 2000, headers=bearer)
    streamed = client.post("/api/patients", content=iter([b"x" * 600, b"x" * 600]), headers=bearer)
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"


def test_responses_are_streamed_as_the_service_produces_them(
    gateway: Gateway, upstreams: dict, bearer: dict[str, str]
) -> None:
    upstreams["patient"][0].part_gap = 0.4
    client = gateway()
    started = time.monotonic()
    with client.stream("GET", "/api/patients/stream", headers=bearer) as response:
        parts = response.iter_raw()
        first = next(parts)
        first_at = time.monotonic() - started
        rest = b"".join(parts)
    total = time.monotonic() - started
    assert first.startswith(b"first,")
    assert first + rest == b"first,second,third"
    assert first_at < 0.35 < total


def test_forwarded_headers_and_hop_by_hop(gateway: Gateway, upstreams: dict, signing_key: SigningKey) -> None:
    token = signing_key.token(sub="nurse@example.com", role="USER")
    response = gateway().get(
        "/api/patients",
        headers={
            "Authorization": f"Bearer {token}",
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Per-Hop",
            "X-Per-Hop": "dropped",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Trailer": "Expires",
            "Proxy-Authorization": "Basic c2VjcmV0",
            "X-Forwarded-For": "203.0.113.9",
            "Forwarded": "for=203.0.113.9",
            "Host": "public.example.com",
            "X-Authenticated-Role": "ADMIN",
            "X-Authenticated-Subject": "someone-else",
        },
    )
    seen = echoed_headers(response)
    # The caller's identity is the token itself, unchanged: every service verifies it.
    assert seen["authorization"] == [f"Bearer {token}"]
    assert not any(name.startswith("x-authenticated-") for name in seen)
    assert seen["x-custom"] == ["kept"]
    for hop in ("x-per-hop", "keep-alive", "te", "trailer", "proxy-authorization", "transfer-encoding"):
        assert hop not in seen
    assert seen["host"] == [upstreams["patient"][1].removeprefix("http://")]
    assert seen["x-forwarded-host"] == ["public.example.com"]
    assert seen["x-forwarded-proto"] == ["http"]
    # The client's own forwarding claims are replaced by the address the gateway saw.
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert "forwarded" not in seen
    # The service's own hop-by-hop and server headers stay on its side.
    assert response.headers["x-upstream"] == "patient"
    assert "keep-alive" not in response.headers
    assert response.headers.get("server") != "upstream/1.0"


def test_cookies_set_for_one_caller_never_reach_another(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway()
    alice = client.get("/api/patients/login-cookie", headers=bearer)
    assert alice.headers["set-cookie"].startswith("session=alice-secret")
    client.cookies.clear()
    for _ in range(20):
        bob = client.get("/api/patients", headers=bearer)
        assert "cookie" not in echoed_headers(bob)


def test_request_id_is_generated_forwarded_and_echoed(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway()
    generated = client.get("/api/patients", headers=bearer)
    request_id = generated.headers["x-request-id"]
    assert len(request_id) >= 16
    assert echoed_headers(generated)["x-request-id"] == [request_id]

    kept = client.get("/api/patients", headers={**bearer, "X-Request-ID": "trace-42"})
    assert kept.headers["x-request-id"] == "trace-42"
    assert echoed_headers(kept)["x-request-id"] == ["trace-42"]

    rejected = client.get("/nope", headers={"X-Request-ID": "trace-43"})
    assert rejected.headers["x-request-id"] == "trace-43"


def test_security_headers_on_every_answer(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway()
    for response in (client.get("/api/patients", headers=bearer), client.get("/nope")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    ("public", "prefix"),
    [("/api/patients", "/api"), ("/api/analytics/summary", "/api"), ("/auth/users", "/auth")],
)
def test_services_learn_where_they_are_mounted_so_their_links_work_through_the_gateway(
    gateway: Gateway, bearer: dict[str, str], public: str, prefix: str
) -> None:
    response = gateway().get(public, headers={**bearer, "X-Forwarded-Prefix": "/evil"})
    assert echoed_headers(response)["x-forwarded-prefix"] == [prefix]


@pytest.mark.parametrize(("method", "public"), BROKER_ROUTES)
def test_broker_routes_are_admin_only_at_the_gateway(
    gateway: Gateway, signing_key: SigningKey, method: str, public: str
) -> None:
    client = gateway()
    user = {"Authorization": f"Bearer {signing_key.token(role='USER')}"}
    refused = client.request(method, public, headers=user)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert client.request(method, public).status_code == 401
    admin = {"Authorization": f"Bearer {signing_key.token()}"}
    assert client.request(method, public, headers=admin).status_code == 200
