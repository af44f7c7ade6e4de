"""The outbox side of the broker view: the backlog grows while the broker is down and drains after."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx

from pm.common.broker import Broker
from tests.patient.conftest import OwnBrokerService, Running, new_patient, read_events


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_the_backlog_grows_while_the_broker_is_down_and_the_view_says_so(
    own_broker: Broker, topic: str, on_own_broker: OwnBrokerService
) -> None:
    with on_own_broker() as c:
        assert c.post("/patients", json=new_patient()).status_code == 201
        read_events(own_broker.bootstrap, topic, expect=1)
        deadline = time.monotonic() + 10
        while c.get("/broker/outbox").json()["pending"] != 0:
            assert time.monotonic() < deadline, "the first event was never marked published"
            time.sleep(0.1)
        flowing = c.get("/broker/outbox").json()
        assert flowing["brokerReachable"] is True and flowing["error"] is None
        assert flowing["oldestPendingAt"] is None and flowing["oldestPendingSeconds"] == 0
        assert flowing["topic"] == topic and flowing["publishedSinceStart"] == 1

        own_broker.stop()
        for _ in range(3):
            assert c.post("/patients", json=new_patient()).status_code == 201
        first = c.get("/broker/outbox").json()
        assert first["pending"] == 3
        time.sleep(0.5)
        for _ in range(2):
            assert c.post("/patients", json=new_patient()).status_code == 201
        stuck = c.get("/broker/outbox")
        assert stuck.status_code == 200
        assert stuck.json()["pending"] == 5, "the backlog grows"
        assert stuck.json()["brokerReachable"] is False
        assert "cannot publish" in stuck.json()["error"]
        assert stuck.json()["oldestPendingSeconds"] >= 0.5
        assert stuck.json()["oldestPendingAt"].endswith("Z")
        metrics = c.get("/metrics").text
        assert gauge(metrics, "pm_outbox_pending") == 5
        assert gauge(metrics, "pm_outbox_oldest_pending_seconds") >= 0.5

        own_broker.start()
        deadline = time.monotonic() + 20
        while (view := c.get("/broker/outbox").json())["pending"] != 0 or not view["brokerReachable"]:
            assert time.monotonic() < deadline, f"the backlog never drained: {view}"
            time.sleep(0.2)
        assert gauge(c.get("/metrics").text, "pm_outbox_oldest_pending_seconds") == 0


def test_a_user_gets_403_from_the_outbox_view(service: Running, mint: Callable[..., str]) -> None:
    user = httpx.get(
        f"{service.url}/broker/outbox", headers={"Authorization": f"Bearer {mint(role='USER')}"}, timeout=10
    )
    assert user.status_code == 403
    assert user.headers["content-type"] == "application/problem+json"
    assert httpx.get(f"{service.url}/broker/outbox", timeout=10).status_code == 401
