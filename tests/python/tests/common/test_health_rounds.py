"""Readiness rounds: one failed round of a component that was answering does not flip readiness; two do.

Drives `pm.common.health.HealthMonitor` round by round with checks whose outcome the test sets.
"""

from __future__ import annotations

import asyncio
import json
import threading

from pm.common.health import FAILURES_TO_DOWN, HealthMonitor


class Switch:
    """A dependency check that passes, fails, or hangs (until released), as the test says."""

    def __init__(self) -> None:
        self.mode = "up"
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.mode == "down":
            raise ConnectionError("connection refused")
        if self.mode == "hang":
            self.release.wait(5)


def statuses(monitor: HealthMonitor, modes: list[str], switch: Switch) -> list[tuple[int, str]]:
    async def rounds() -> list[tuple[int, str]]:
        seen = []
        for mode in modes:
            switch.mode = mode
            readiness = await monitor.check_now()
            seen.append((readiness.status_code, json.loads(readiness.body)["components"]["db"]["status"]))
        switch.release.set()
        return seen

    return asyncio.run(rounds())


def test_a_single_failed_round_keeps_the_last_status_and_a_second_one_reports_down() -> None:
    assert FAILURES_TO_DOWN == 2
    switch = Switch()
    monitor = HealthMonitor("svc", essential={"db": switch}, optional={}, timeout=0.3)
    assert statuses(monitor, ["up", "down", "up", "down", "down", "down", "up"], switch) == [
        (200, "UP"),
        (200, "UP"),  # one failed round: not acted on
        (200, "UP"),
        (200, "UP"),
        (503, "DOWN"),  # the second failure in a row
        (503, "DOWN"),
        (200, "UP"),  # back at once
    ]


def test_a_check_that_misses_its_timeout_counts_as_a_failure() -> None:
    switch = Switch()
    monitor = HealthMonitor("svc", essential={"db": switch}, optional={}, timeout=0.2)
    assert statuses(monitor, ["up", "hang", "hang"], switch) == [(200, "UP"), (200, "UP"), (503, "DOWN")]


def test_a_component_never_seen_answering_is_down_at_once() -> None:
    switch = Switch()
    monitor = HealthMonitor("svc", essential={"db": switch}, optional={}, timeout=0.3)
    assert statuses(monitor, ["down", "up"], switch) == [(503, "DOWN"), (200, "UP")]
