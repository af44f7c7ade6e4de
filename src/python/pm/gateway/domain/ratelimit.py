"""Per-client token buckets: a steady rate with room for bursts, in bounded memory."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """`rate` requests per second per key on average, up to `burst` at once.

    Idle buckets refill to full and are then indistinguishable from new ones, so they are pruned once
    the table grows past `max_keys`; memory stays bounded however many clients come and go.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            if key not in self._buckets and len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {
            key: (tokens, last) for key, (tokens, last) in self._buckets.items() if now - last < full_after
        }
        if len(self._buckets) >= self.max_keys:
            # Every client is active: forget the oldest half rather than grow without bound.
            survivors = sorted(self._buckets.items(), key=lambda item: item[1][1])[len(self._buckets) // 2 :]
            self._buckets = dict(survivors)


def retry_after_seconds(wait: float) -> int:
    """`Retry-After` is whole seconds; never tell a client 0."""
    return max(1, math.ceil(wait))
