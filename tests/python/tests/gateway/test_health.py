"""Gateway readiness and liveness: analytics away only degrades it, and a flood of /health calls is
answered from the last background round, not passed on to the services behind it."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from pm.common.broker import free_port
from tests.gateway.conftest import Gateway


def test_analytics_down_keeps_the_gateway_ready_and_degraded(gateway: Gateway) -> None:
    client = gateway(PM_ANALYTICS_URL=f"http://127.0.0.1:{free_port()}")
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "DEGRADED"
    assert body["degraded"] == ["analytics"]
    assert "failing" not in body
    assert body["components"]["analytics"]["status"] == "DOWN"
    assert body["components"]["patient"] == {"status": "UP"}


def test_a_degraded_service_behind_makes_the_gateway_degraded(gateway: Gateway, upstreams: dict) -> None:
    upstreams["patient"][0].health_report = "DEGRADED"
    response = gateway().get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "DEGRADED"
    assert body["components"]["patient"] == {"status": "DEGRADED", "detail": "patient reports DEGRADED"}


def test_a_change_behind_is_reported_within_an_interval(gateway: Gateway, upstreams: dict) -> None:
    client = gateway(PM_HEALTH_INTERVAL_SECONDS="0.5")
    assert client.get("/health").status_code == 200
    upstreams["auth"][0].health_status = 503
    deadline = time.monotonic() + 10
    while client.get("/health").status_code != 503:
        assert time.monotonic() < deadline, "the gateway never noticed auth going DOWN"
        time.sleep(0.1)
    assert client.get("/health").json()["failing"] == ["auth"]


def test_a_flood_of_health_calls_costs_a_handful_of_downstream_checks(
    gateway: Gateway, upstreams: dict
) -> None:
    client = gateway(PM_HEALTH_INTERVAL_SECONDS="3")
    base = str(client.base_url)

    def call(_: int) -> int:
        return httpx.get(f"{base}/health", timeout=15).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(call, range(200)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 200
    calls = {name: app.health_calls for name, (app, _url) in upstreams.items()}
    # One round at the first call, then one per 3 s interval: not one per call.
    rounds = 1 + int(elapsed / 3) + 1
    assert all(1 <= n <= rounds for n in calls.values()), (calls, elapsed)
    print(f"200 concurrent gateway /health calls in {elapsed:.2f} s -> downstream /health calls {calls}")


def test_liveness_answers_while_every_service_behind_is_down(gateway: Gateway) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    client = gateway(PM_AUTH_URL=nowhere, PM_PATIENT_URL=nowhere, PM_ANALYTICS_URL=nowhere)
    live = client.get("/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "UP", "service": "gateway"}
    assert client.get("/health").status_code == 503
