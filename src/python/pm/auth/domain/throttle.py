"""How long a client must wait before its next login attempt, after failures.

Never per account alone (OWASP Authentication Cheat Sheet): a stranger's failures must not lock the owner
out. Failures are counted per (account, client) and per client; each key gets a few free failures, then
every further attempt waits a delay that doubles with each failure, up to a cap.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

ACCOUNT = "account"
CLIENT = "client"
# The subject column holds 254 characters: the account digest (33) plus a client address clipped here.
MAX_CLIENT_CHARS = 200


@dataclass(frozen=True)
class Key:
    """What failures are counted under: `scope` is ACCOUNT (one client on one account) or CLIENT."""

    scope: str
    subject: str


def account_prefix(email: str) -> str:
    """The start of every (account, client) subject of an account: a digest, so that any email fits."""
    return hashlib.sha256(email.encode()).hexdigest()[:32] + "/"


def account_key(email: str, client: str) -> Key:
    return Key(ACCOUNT, account_prefix(email) + client[:MAX_CLIENT_CHARS])


def client_key(client: str) -> Key:
    return Key(CLIENT, client[:MAX_CLIENT_CHARS])


@dataclass(frozen=True)
class ThrottlePolicy:
    """A key with fewer than its free failures (`free_per_account`, `free_per_client`) within `window`
    may try at once; from then on each attempt waits, counted from the latest failure, `base_delay`, then
    twice that after the next failure, and so on up to `max_delay`. Failures older than `window` are
    forgotten.
    """

    free_per_account: int
    free_per_client: int
    base_delay: timedelta
    max_delay: timedelta
    window: timedelta

    def window_start(self, now: datetime) -> datetime:
        return now - self.window

    def free(self, key: Key) -> int:
        return self.free_per_account if key.scope == ACCOUNT else self.free_per_client

    def delay(self, key: Key, failures: int) -> timedelta:
        """The wait after the latest of `failures` failures counted under `key`."""
        beyond = failures - self.free(key)
        if beyond < 0:
            return timedelta(0)
        # 2**40 base delays exceed any sensible cap; bounding the exponent keeps timedelta in range.
        steps = min(beyond, 40)
        return min(self.max_delay, self.base_delay * (2**steps))

    def retry_after(self, key: Key, failures: int, latest: datetime | None, now: datetime) -> int | None:
        """Whole seconds until `key` may try again (never 0), or None if it may try now."""
        if latest is None:
            return None
        remaining = (latest + self.delay(key, failures) - now).total_seconds()
        if remaining <= 0:
            return None
        return max(1, math.ceil(remaining))
