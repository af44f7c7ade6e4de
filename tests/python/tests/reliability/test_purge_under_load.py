"""Retention purges never block writes: patient creates through the gateway, one after another, while the
relay purges 100 000 published outbox rows past `PM_OUTBOX_RETENTION`. Figures only (the machine is
shared): create latency before, during and after the purge; the one bound is a sanity check far above
any healthy figure."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.reliability.harness import System, patient_body, wait_until, write_figures

pytestmark = pytest.mark.slow
OLD_ROWS = 100_000
SANITY_P99_SECONDS = 10.0
OLD_ROWS_LEFT = "SELECT count(*) FROM outbox WHERE created_at < now() - interval '7 days'"
# The relay purges once a minute while there is nothing to purge, then batch after batch.
PURGE_WAIT_SECONDS = 300.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class PurgeWatch:
    """Counts the old rows left every 0.25 s on a thread: when the purge began and when it ended."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.began: float | None = None
        self.ended: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.ended is None:
            left = self.system.sql("patient", OLD_ROWS_LEFT)[0][0]
            now = time.monotonic()
            if left < OLD_ROWS and self.began is None:
                self.began = now
            if left == 0:
                self.ended = now
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_creates_go_on_while_the_relay_purges_100000_outbox_rows(system: System, token: str) -> None:
    # The relay has adopted the topic's id, so the old rows below count as published to this log (a
    # missing or different id would make it publish every one of them again).
    wait_until(lambda: bool(system.sql("patient", "SELECT topic_id FROM relay_state")), 60, "relay state")
    system.sql(
        "patient",
        "INSERT INTO outbox (event_id, patient_id, event_type, payload, created_at, published_at) "
        "SELECT md5('purge-e' || i)::uuid, md5('purge-p' || i)::uuid, 'PATIENT_CREATED', '\\x00', "
        "now() - interval '30 days', now() - interval '30 days' FROM generate_series(1, :n) AS i",
        n=OLD_ROWS,
    )
    kept = system.sql("patient", "SELECT count(*) FROM outbox")[0][0] - OLD_ROWS
    watch = PurgeWatch(system)
    creates: list[tuple[float, float]] = []  # (started, seconds)
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + PURGE_WAIT_SECONDS
    try:
        with httpx.Client(base_url=system.gateway, headers=headers, timeout=20.0) as client:
            while time.monotonic() < deadline:
                if watch.ended is not None and sum(1 for s, _ in creates if s > watch.ended) >= 100:
                    break
                began = time.monotonic()
                response = client.post("/api/patients", json=patient_body("purge"))
                assert response.status_code == 201, response.text
                creates.append((began, time.monotonic() - began))
    finally:
        watch.stop()
    assert watch.began is not None and watch.ended is not None, "the purge did not finish in time"
    # A create that overlaps the purge at all counts as during it (the watch looks every 0.25 s).
    before = [seconds for started, seconds in creates if started + seconds < watch.began - 0.25]
    after = [seconds for started, seconds in creates if started > watch.ended]
    during = [
        seconds
        for started, seconds in creates
        if started + seconds >= watch.began - 0.25 and started <= watch.ended
    ]
    total = system.sql("patient", "SELECT count(*) FROM outbox")[0][0]
    figures = {
        "old_rows_purged": OLD_ROWS,
        "purge_seconds": round(watch.ended - watch.began, 1),
        "creates_before": len(before),
        "creates_during_purge": len(during),
        "creates_after": len(after),
        **{
            f"create_{name}_ms_{phase}": round(percentile(values, share) * 1000, 1)
            for phase, values in (("before", before), ("during_purge", during), ("after", after))
            for name, share in (("p50", 0.5), ("p99", 0.99))
            if values
        },
        "create_max_ms_during_purge": round(max(during) * 1000, 1),
    }
    write_figures("outbox_purge_under_load", figures)
    # Every recent row stays: the ones from before the purge and each create of this test.
    assert total == kept + len(creates), figures
    assert percentile(during, 0.99) < SANITY_P99_SECONDS, figures
