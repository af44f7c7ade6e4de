"""Services down or slow, health, rate limits and CORS: bounded, explicit answers."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from pm.common.broker import free_port
from tests.gateway.conftest import Gateway, SigningKey, echoed_headers


@pytest.fixture
def bearer(signing_key: SigningKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.token()}"}


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def test_a_service_that_refuses_connections_is_502(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway(PM_PATIENT_URL=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    body = assert_problem(client.get("/api/patients", headers=bearer), 502)
    assert "patient" in body["detail"]
    assert time.monotonic() - started < 2


def test_a_slow_service_is_504_within_the_read_timeout(
    gateway: Gateway, upstreams: dict, bearer: dict[str, str]
) -> None:
    upstreams["analytics"][0].delay = 3.0
    client = gateway(PM_GATEWAY_READ_TIMEOUT="0.5")
    started = time.monotonic()
    body = assert_problem(client.get("/api/analytics/slow", headers=bearer), 504)
    elapsed = time.monotonic() - started
    assert "analytics" in body["detail"]
    assert 0.5 <= elapsed < 1.5


def test_no_free_connection_in_time_is_503_with_retry_after(
    gateway: Gateway, upstreams: dict, bearer: dict[str, str]
) -> None:
    upstreams["patient"][0].delay = 1.5
    client = gateway(PM_GATEWAY_MAX_CONNECTIONS="1", PM_GATEWAY_CONNECT_TIMEOUT="0.3")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        busy = pool.submit(client.get, "/api/patients/slow", headers=bearer)
        time.sleep(0.2)
        started = time.monotonic()
        waiting = client.get("/api/patients/slow", headers=bearer)
        assert time.monotonic() - started < 1.0
        assert busy.result().status_code == 200
    assert_problem(waiting, 503)
    assert waiting.headers["retry-after"] == "1"


@pytest.mark.parametrize("status", [400, 403, 409, 412, 500, 503])
def test_the_services_own_error_answers_pass_through_unchanged(
    gateway: Gateway, bearer: dict[str, str], status: int
) -> None:
    response = gateway().delete(f"/api/patients/status/{status}", headers=bearer)
    assert response.status_code == status
    assert response.json() == {
        "type": "about:blank",
        "title": "From upstream",
        "status": status,
        "detail": "patient",
    }


def test_health_is_up_when_every_service_is(gateway: Gateway) -> None:
    response = gateway().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "UP"
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "auth": "UP",
        "patient": "UP",
        "analytics": "UP",
    }


def test_health_is_503_naming_the_failing_services(gateway: Gateway, upstreams: dict) -> None:
    upstreams["patient"][0].health_status = 503
    client = gateway(PM_ANALYTICS_URL=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    response = client.get("/health")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "DOWN"
    # Only patient is essential; analytics away is named as a degradation (contract: issue 12).
    assert body["failing"] == ["patient"]
    assert body["degraded"] == ["analytics"]
    assert body["components"]["auth"]["status"] == "UP"
    assert "503" in body["components"]["patient"]["detail"]


def test_metrics_count_requests_and_upstream_answers(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway()
    client.get("/api/patients", headers=bearer)
    client.get("/api/patients")
    text = client.get("/metrics").text
    assert 'pm_gateway_upstream_responses_total{status="200",upstream="patient"} 1.0' in text
    assert 'pm_gateway_rejected_total{reason="unauthenticated"} 1.0' in text
    assert "pm_http_requests_total" in text


def test_a_client_over_its_rate_is_429_with_retry_after(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway(PM_GATEWAY_RATE_LIMIT_PER_SECOND="0.5", PM_GATEWAY_RATE_LIMIT_BURST="3")
    statuses = [client.get("/api/patients", headers=bearer).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = client.get("/api/patients", headers=bearer)
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    # Health stays answerable.
    assert client.get("/health").status_code == 200


def test_a_rotating_x_forwarded_for_does_not_escape_the_rate_limit(
    gateway: Gateway, bearer: dict[str, str]
) -> None:
    """Issue 12, finding 3: the gateway believed any X-Forwarded-For from loopback."""
    client = gateway(PM_GATEWAY_RATE_LIMIT_PER_SECOND="0.5", PM_GATEWAY_RATE_LIMIT_BURST="3")
    statuses = [
        client.get("/api/patients", headers={**bearer, "X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(8)
    ]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429] * 5


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(
    gateway: Gateway, bearer: dict[str, str]
) -> None:
    client = gateway(
        PM_GATEWAY_RATE_LIMIT_PER_SECOND="0.5",
        PM_GATEWAY_RATE_LIMIT_BURST="3",
        PM_GATEWAY_TRUSTED_PROXIES="127.0.0.0/8",
    )
    # The client forged the left part; the proxy (this test, on loopback) appended what it saw.
    as_first = {**bearer, "X-Forwarded-For": "10.1.1.1, 198.51.100.7"}
    assert [client.get("/api/patients", headers=as_first).status_code for _ in range(4)] == [200] * 3 + [429]
    other = client.get("/api/patients", headers={**bearer, "X-Forwarded-For": "10.1.1.1, 198.51.100.8"})
    assert other.status_code == 200
    assert echoed_headers(other)["x-forwarded-for"] == ["198.51.100.8"]


def test_rate_limit_zero_disables_it(gateway: Gateway) -> None:
    client = gateway(PM_GATEWAY_RATE_LIMIT_PER_SECOND="0")
    assert all(client.get("/nope").status_code == 404 for _ in range(30))


def test_cross_origin_requests_are_denied_by_default(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway()
    preflight = client.options(
        "/api/patients",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert_problem(preflight, 403)
    assert "access-control-allow-origin" not in preflight.headers
    simple = client.get("/api/patients", headers={**bearer, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers


def test_configured_origins_are_allowed(gateway: Gateway, bearer: dict[str, str]) -> None:
    client = gateway(PM_GATEWAY_CORS_ORIGINS="https://app.example, http://localhost:5173")
    preflight = client.options(
        "/api/patients",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "POST" in preflight.headers["access-control-allow-methods"]
    actual = client.get("/api/patients", headers={**bearer, "Origin": "http://localhost:5173"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "X-Request-ID" in actual.headers["access-control-expose-headers"]
    denied = client.options(
        "/api/patients", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert denied.status_code == 403
