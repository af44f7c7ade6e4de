"""When repeated login failures lock out an email or a client, and for how long."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottlePolicy:
    """A sliding window: at most `max_failures_per_*` failures per key within `window`.

    The caller supplies the time of the n-th most recent failure inside the window, n being one more than
    the limit when the current attempt is already counted (None if there are fewer); the key is locked
    until that failure leaves the window.
    """

    max_failures_per_email: int
    max_failures_per_client: int
    window: timedelta

    def window_start(self, now: datetime) -> datetime:
        return now - self.window

    def retry_after(self, nth_recent_failure: datetime | None, now: datetime) -> int | None:
        """Seconds until another attempt is allowed, or None if attempts are allowed now."""
        if nth_recent_failure is None:
            return None
        remaining = (nth_recent_failure + self.window - now).total_seconds()
        if remaining <= 0:
            return None
        return max(1, math.ceil(remaining))
