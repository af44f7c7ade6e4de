"""Group commit: concurrent callers' items written by one call of `write`, each caller waiting for its own.

`GroupCommit(write).submit(item)` returns what `write` answered for `item`, or raises what `write` raised.
While one batch is being written, the items submitted meanwhile wait; when it ends, the first of them
leads the next batch, which holds every item waiting by then (up to `max_batch`). No thread of its own:
the batch is written by one of the callers, so there is nothing to start or stop. With one caller at a
time every batch holds one item; with N concurrent callers a transaction (its round trips, its lock, its
WAL flush) is paid about once per batch instead of N times.

`write(items)` must answer one result per item, in order, and bound its own time (the database's
timeouts): a caller waits as long as the batch that holds its item. When a batch of several items
fails, each of its callers writes its own item again, alone and at once: an item that cannot be
written (bad data) fails its own caller only, and an outage fails each caller as it would have without
batching.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("item", "ready", "lead", "shared", "result", "error")

    def __init__(self, item: T) -> None:
        self.item = item
        self.ready = threading.Event()  # set when the result is in, or when this caller is to lead
        self.lead = False
        self.shared = False  # written in a batch with other items
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T, R]] = []
        self._writing = False

    @property
    def waiting(self) -> int:
        """How many items wait for a batch (not counting the one being written)."""
        with self._lock:
            return len(self._waiting)

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            if not self._writing:
                self._writing = slot.lead = True
        if not slot.lead:
            slot.ready.wait()
        if slot.lead:
            self._lead()
        if slot.error is None:
            return slot.result  # type: ignore[return-value]
        if slot.shared:
            return self._write([item])[0]
        raise slot.error

    def _lead(self) -> None:
        """Write the waiting items (this caller's among them), then hand the lead to the next waiter."""
        with self._lock:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
        for slot in batch:
            slot.shared = len(batch) > 1
        try:
            results = self._write([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"write answered {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets what stopped it
            for slot in batch:
                slot.error = exc
        else:
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        finally:
            with self._lock:
                if self._waiting:
                    following = self._waiting[0]
                    following.lead = True
                    following.ready.set()
                else:
                    self._writing = False
            for slot in batch:
                slot.ready.set()
