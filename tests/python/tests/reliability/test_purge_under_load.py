"""Retention purges never block writes: patient creates through the gateway while the relay purges 100 000
published outbox rows past `PM_OUTBOX_RETENTION`. Figures only (the machine is shared): create latency
before, during and after the purge; the one bound is a sanity check far above any healthy figure."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.reliability.harness import READY_TIMEOUT, System, patient_body, wait_until, write_figures

pytestmark = pytest.mark.slow
OLD_ROWS = 100_000
SANITY_P99_SECONDS = 5.0
OLD_ROWS_LEFT = "SELECT count(*) FROM outbox WHERE created_at < now() - interval '7 days'"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def creates(client: httpx.Client, until: Callable[[], bool], at_least: int = 0) -> list[float]:
    """Create patients one after another until `until()` (and at least `at_least` of them): seconds each."""
    latencies: list[float] = []
    while len(latencies) < at_least or not until():
        began = time.monotonic()
        response = client.post("/api/patients", json=patient_body("purge"))
        assert response.status_code == 201, response.text
        latencies.append(time.monotonic() - began)
    return latencies


def test_creates_go_on_while_the_relay_purges_100000_outbox_rows(system: System, token: str) -> None:
    # The relay has adopted the topic's id, so the old rows below count as published to this log (a
    # missing or different id would make it publish every one of them again).
    wait_until(lambda: bool(system.sql("patient", "SELECT topic_id FROM relay_state")), 60, "relay state")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=system.gateway, headers=headers, timeout=20.0) as client:
        before = creates(client, lambda: True, at_least=200)
        # Purges run every minute once a batch comes back short; a restarted relay purges at once.
        system.stack.stop_service("patient", signal.SIGTERM)
        system.sql(
            "patient",
            "INSERT INTO outbox (event_id, patient_id, event_type, payload, created_at, published_at) "
            "SELECT md5('purge-e' || i)::uuid, md5('purge-p' || i)::uuid, 'PATIENT_CREATED', '\\x00', "
            "now() - interval '30 days', now() - interval '30 days' FROM generate_series(1, :n) AS i",
            n=OLD_ROWS,
        )
        kept = system.sql("patient", "SELECT count(*) FROM outbox")[0][0] - OLD_ROWS
        system.stack.start_service("patient")
        try:
            system.wait_healthy("patient", timeout=READY_TIMEOUT)
        except AssertionError:
            raise AssertionError("patient did not restart:\n" + system.log_text()[-4000:]) from None
        left_at_start = system.sql("patient", OLD_ROWS_LEFT)[0][0]
        started = time.monotonic()
        left = [left_at_start]

        def purged() -> bool:
            left[0] = system.sql("patient", OLD_ROWS_LEFT)[0][0]
            return left[0] == 0 or time.monotonic() - started > 180

        during = creates(client, purged)
        purge_seconds = time.monotonic() - started
        after = creates(client, lambda: True, at_least=200)
    total = system.sql("patient", "SELECT count(*) FROM outbox")[0][0]
    figures = {
        "old_rows": OLD_ROWS,
        "old_rows_left_when_creates_began": left_at_start,
        "old_rows_left_at_the_end": left[0],
        "seconds_creating_during_the_purge": round(purge_seconds, 1),
        "creates_during_purge": len(during),
        **{
            f"create_{name}_ms_{phase}": round(percentile(values, share) * 1000, 1)
            for phase, values in (("before", before), ("during_purge", during), ("after", after))
            for name, share in (("p50", 0.5), ("p99", 0.99))
        },
        "create_max_ms_during_purge": round(max(during) * 1000, 1),
    }
    write_figures("outbox_purge_under_load", figures)
    assert left[0] == 0, figures
    # Every recent row stays: the ones from before the purge and each create of this test.
    assert total == kept + len(during) + len(after), figures
    assert percentile(during, 0.99) < SANITY_P99_SECONDS, figures
