"""The background thread of a worker (`pm.common.service.Worker`): started once, stopped by an event."""

from __future__ import annotations

import threading


class ThreadWorker:
    """`start()` runs `self.run()` on a daemon thread named `self.thread_name()` (once: starting a running
    worker does nothing); `stop()` sets `self._stop`, which `run` watches, and waits `join_seconds()` for
    the thread. A subclass sets `_stop` (an Event) and `_thread` (None) when it is built."""

    _stop: threading.Event
    _thread: threading.Thread | None

    def thread_name(self) -> str:
        raise NotImplementedError

    def run(self) -> None:
        raise NotImplementedError

    def join_seconds(self) -> float:
        return 2.0

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=self.thread_name(), daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.join_seconds() if timeout is None else timeout)
            self._thread = None
