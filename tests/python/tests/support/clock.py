"""A clock for code that takes `clock: Callable[[], float]`: it stands still until a test moves `now`."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
