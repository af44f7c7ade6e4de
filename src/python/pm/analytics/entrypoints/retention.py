"""Analytics' retention on its own thread: batches while there is something to purge, then a long pause."""

from __future__ import annotations

import logging
import threading

from pm.analytics.adapters.store import SqlRetention
from pm.common.threads import ThreadWorker

log = logging.getLogger(__name__)


class RetentionLoop(ThreadWorker):
    def __init__(
        self, retention: SqlRetention, *, interval_seconds: float = 60.0, pause_seconds: float = 0.05
    ) -> None:
        self.retention = retention
        self.interval_seconds = interval_seconds
        # Between two batches: short transactions with room for the consumer's own in between.
        self.pause_seconds = pause_seconds
        self.purged = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def thread_name(self) -> str:
        return "analytics-retention"

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                purged = self.retention.purge_batch()
            except Exception as exc:  # noqa: BLE001 - the database may be away: try again later
                log.warning("retention purge failed; retrying later", extra={"error": str(exc)[:200]})
                purged = 0
            if purged:
                self.purged += purged
                log.info("purged events past their retention", extra={"count": purged})
            self._stop.wait(self.pause_seconds if purged else self.interval_seconds)
