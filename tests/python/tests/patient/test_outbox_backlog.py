"""The outbox side of the broker view: the backlog grows while the broker is down and drains after."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from pm.common.broker import Broker
from pm.common.db import Database
from pm.common.tokens import TokenVerifier
from tests.patient.conftest import BillingServer, new_patient, read_events, start_service


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    broker = Broker().start()
    yield broker
    broker.stop()


def gauge(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_the_backlog_grows_while_the_broker_is_down_and_the_view_says_so(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    own_broker: Broker,
    topic: str,
    mint: Callable[..., str],
) -> None:
    for running in start_service(patient_db, verifier, billing_server.target, own_broker.bootstrap, topic):
        with httpx.Client(
            base_url=running.url, timeout=15, headers={"Authorization": f"Bearer {mint()}"}
        ) as c:
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


def test_a_user_gets_403_from_the_outbox_view(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
    mint: Callable[..., str],
) -> None:
    for running in start_service(patient_db, verifier, billing_server.target, kafka_bootstrap, topic):
        user = httpx.get(
            f"{running.url}/broker/outbox",
            headers={"Authorization": f"Bearer {mint(role='USER')}"},
            timeout=10,
        )
        assert user.status_code == 403
        assert user.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{running.url}/broker/outbox", timeout=10).status_code == 401
