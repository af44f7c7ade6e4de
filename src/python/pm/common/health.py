"""Readiness from dependency checks that run in the background: `/health` answers from their last round.

A flood of `/health` calls therefore costs nothing downstream: each check runs at most once per interval,
and a check still running from an earlier round (a hanging dependency) is not started again until it
returns, so hung checks never pile up threads or connections.

Statuses: a component is UP, DEGRADED (its check raised `Degraded`: usable but impaired) or DOWN (its
check raised anything else, or did not return within the timeout). The service is DOWN (503) when an
essential component is DOWN; DEGRADED (200) when any other component is not UP; UP (200) otherwise.

A component that was answering is reported DOWN only after `FAILURES_TO_DOWN` rounds in a row have failed:
one slow round on a busy machine (a check that misses its timeout once) must not flip a service's
readiness, which a load balancer would act on. A dependency that is really gone is reported DOWN one
interval later; one that was never seen answering is DOWN at once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

HealthCheck = Callable[[], None]
"""A dependency check: returns when the dependency is usable, raises (with a reason) when it is not."""

Outcome = tuple[str, str | None]
"""A component's status (UP, DEGRADED, DOWN) and why, when it is not UP."""

DEFAULT_INTERVAL_SECONDS = 3.0
FAILURES_TO_DOWN = 2


class Degraded(Exception):
    """Raised by a check whose dependency answers but reports itself impaired."""


@dataclass(frozen=True)
class Readiness:
    status_code: int
    body: bytes


class HealthMonitor:
    """Runs the checks every `interval` seconds on the serving event loop (worker threads for the checks).

    Started by the first request the service sees (`ensure_started`), so it lives exactly as long as the
    event loop that serves the app; the first `/health` waits for the first round, later ones never wait.
    """

    def __init__(
        self,
        service: str,
        *,
        essential: dict[str, HealthCheck],
        optional: dict[str, HealthCheck],
        interval: float = DEFAULT_INTERVAL_SECONDS,
        timeout: float = 3.0,
    ) -> None:
        self.service = service
        self.checks = {**essential, **optional}
        self.essential = frozenset(essential)
        self.interval = interval
        self.timeout = timeout
        self._in_flight: dict[str, asyncio.Future[Outcome]] = {}
        self._task: asyncio.Task[None] | None = None
        self._first_round: asyncio.Event | None = None
        self._current: Readiness | None = None
        self._reported: dict[str, Outcome] = {}
        self._failures: dict[str, int] = {}

    def ensure_started(self) -> None:
        """Start the background rounds on the running loop (once per loop)."""
        if self._task is not None and not self._task.done():
            return
        # Served by a new loop (the old one has ended): nothing of the old rounds is valid there.
        self._in_flight, self._current, self._first_round = {}, None, asyncio.Event()
        self._reported, self._failures = {}, {}
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self.service}-health")

    async def readiness(self) -> Readiness:
        self.ensure_started()
        if self._current is None:
            assert self._first_round is not None
            try:
                await asyncio.wait_for(self._first_round.wait(), timeout=self.timeout + 1.0)
            except TimeoutError:
                pass
        if self._current is None:
            return _render(
                self.service, dict.fromkeys(self.checks, ("DOWN", "not checked yet")), self.essential
            )
        return self._current

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await self.check_now()
            assert self._first_round is not None
            self._first_round.set()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def check_now(self) -> Readiness:
        """One round: every check whose previous run has returned is started; all are awaited together."""
        for name, check in self.checks.items():
            running = self._in_flight.get(name)
            if running is None or running.done():
                self._in_flight[name] = _start(name, check)
        if self.checks:
            await asyncio.wait([self._in_flight[name] for name in self.checks], timeout=self.timeout)
        results = {name: self._settle(name, _outcome(self._in_flight[name])) for name in self.checks}
        self._current = _render(self.service, results, self.essential)
        return self._current

    def _settle(self, name: str, outcome: Outcome) -> Outcome:
        """The outcome to report: a failure of a component seen answering counts from the second in a row."""
        if outcome[0] == "DOWN":
            self._failures[name] = self._failures.get(name, 0) + 1
            previous = self._reported.get(name)
            if previous is not None and previous[0] != "DOWN" and self._failures[name] < FAILURES_TO_DOWN:
                return previous
        else:
            self._failures[name] = 0
        self._reported[name] = outcome
        return outcome


def _start(name: str, check: HealthCheck) -> asyncio.Future[Outcome]:
    """Run `check` on a daemon thread of its own: one that hangs can never hold up the process's exit
    (an executor's threads are joined at shutdown)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Outcome] = loop.create_future()

    def settle(outcome: Outcome) -> None:
        if not future.done():
            future.set_result(outcome)

    def run() -> None:
        try:
            check()
            outcome: Outcome = ("UP", None)
        except Degraded as exc:
            outcome = ("DEGRADED", short_reason(exc))
        except Exception as exc:  # noqa: BLE001 - any failure means the dependency is down
            outcome = ("DOWN", short_reason(exc))
        try:
            loop.call_soon_threadsafe(settle, outcome)
        except RuntimeError:  # the serving loop has closed meanwhile: nobody is waiting
            pass

    threading.Thread(target=run, name=f"health-{name}", daemon=True).start()
    return future


def _outcome(future: asyncio.Future[Outcome]) -> Outcome:
    return future.result() if future.done() else ("DOWN", "timed out")


def _render(service: str, results: dict[str, Outcome], essential: frozenset[str]) -> Readiness:
    components: dict[str, dict[str, str]] = {}
    failing: list[str] = []
    degraded: list[str] = []
    for name, (status, detail) in results.items():
        components[name] = {"status": status} if detail is None else {"status": status, "detail": detail}
        if status == "DOWN" and name in essential:
            failing.append(name)
        elif status != "UP":
            degraded.append(name)
    body: dict[str, Any] = {
        "status": "DOWN" if failing else "DEGRADED" if degraded else "UP",
        "service": service,
        "components": components,
    }
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return Readiness(503 if failing else 200, json.dumps(body).encode())


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
