"""The in-memory broker loses its log (SIGKILL, a fresh one on the same port): the outbox publishes the
retained events again and analytics counts every event exactly once.

Loss needs events the broker acknowledged and analytics had not read yet. In issue 15 that was analytics
still joining its group right after READY; here analytics is paused (SIGSTOP) for a moment before each
kill, so that lag is certain rather than a matter of timing on a loaded machine."""

from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

import httpx
import pytest

from tests.reliability.harness import (
    Load,
    System,
    kill_broker,
    lost_and_doubled,
    patient_body,
    rebuild_analytics,
    start_broker,
    write_figures,
)

pytestmark = pytest.mark.slow
PATIENTS = 40
# The scenario is a 60 s load; CI runs 20 s of it (PM_BROKER_LOSS_SECONDS=60 for the full one).
LOAD_SECONDS = float(os.environ.get("PM_BROKER_LOSS_SECONDS", "20"))


def pause_analytics(system: System) -> None:
    system.stack.children["analytics"].send_signal(signal.SIGSTOP)


def resume_analytics(system: System) -> None:
    system.stack.children["analytics"].send_signal(signal.SIGCONT)


def test_broker_killed_right_after_ready_loses_no_event(system: System, token: str) -> None:
    # First test of the module: analytics has only just joined its group, so events the broker acknowledged
    # before its death were most likely never read (the scenario that lost 12 of 40 in issue 15).
    created: list[str] = []
    statuses: list[int] = []
    started = time.monotonic()
    pause_analytics(system)
    with httpx.Client(base_url=system.gateway, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(PATIENTS):
            if i == PATIENTS // 3:
                kill_broker(system)
                resume_analytics(system)
            if i == 2 * PATIENTS // 3:
                start_broker(system)
            response = client.post("/api/patients", json=patient_body("loss"), timeout=20.0)
            statuses.append(response.status_code)
            if response.status_code == 201:
                created.append(response.json()["id"])
    load_seconds = time.monotonic() - started
    figures: dict[str, Any] = {"requests": PATIENTS, "created": len(created), "load_seconds": load_seconds}
    waited = time.monotonic()
    figures.update(lost_and_doubled(system, created))
    figures["seconds_until_analytics_caught_up"] = round(time.monotonic() - waited, 1)
    write_figures("broker_lost_after_ready", figures)
    assert statuses == [201] * PATIENTS
    assert figures["events_lost"] == 0, figures
    assert figures["counted_twice"] == 0, figures


def test_broker_killed_at_random_points_of_a_load_loses_no_event(system: System, token: str) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    kills = 0
    with Load(system.gateway, token) as load:
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline - 2.0:
            time.sleep(rng.uniform(0.5, 3.0))
            pause_analytics(system)
            time.sleep(rng.uniform(0.2, 1.5))
            kill_broker(system)
            resume_analytics(system)
            kills += 1
            time.sleep(rng.uniform(0.0, 2.0))
            start_broker(system)
        time.sleep(max(0.0, deadline - time.monotonic()))
    figures: dict[str, Any] = {
        "seed": seed,
        "load_seconds": LOAD_SECONDS,
        "broker_kills": kills,
        "requests": len(load.outcomes),
        "created": len(load.created()),
        "5xx": load.count(lambda o: o.status >= 500 or o.status == 0),
    }
    waited = time.monotonic()
    figures.update(lost_and_doubled(system, load.created()))
    figures["seconds_until_analytics_caught_up"] = round(time.monotonic() - waited, 1)
    write_figures("broker_killed_at_random", figures)
    assert figures["5xx"] == 0
    assert figures["events_lost"] == 0, figures
    assert figures["counted_twice"] == 0, figures


def test_analytics_rebuild_after_the_broker_kills_ends_equal_to_the_outbox(
    system: System, token: str
) -> None:
    """The rebuild that was flaky in issue 15 (2 of 4 runs short, then 1 of 6 stalled): after the kills
    above, the topic recreated under a consumer that has reconnected many times, often with another
    partition count than the log the broker made on a producer's send."""
    with httpx.Client(base_url=system.gateway, headers={"Authorization": f"Bearer {token}"}) as client:
        ids = [
            client.post("/api/patients", json=patient_body("rebuild"), timeout=20.0).json()["id"]
            for _ in range(3)
        ]
        assert (
            client.put(f"/api/patients/{ids[0]}", json=patient_body("rebuilt"), timeout=20.0).status_code
            == 200
        )
        assert client.delete(f"/api/patients/{ids[1]}", timeout=20.0).status_code == 204
    figures = rebuild_analytics(system, token)
    write_figures("analytics_rebuild_after_broker_kills", figures)
    assert (
        figures["analytics_events_after_rebuild"] == figures["distinct_event_ids"] == figures["outbox_events"]
    )
