"""The outbox relay: publishes recorded events to Kafka, in order, at least once.

Contract: a row is marked `published_at` only after the broker acknowledged it (acks=all). A crash between
the acknowledgement and the mark sends that row again on restart, so consumers de-duplicate by `event_id`.
Per-patient order holds even with several relays on PostgreSQL: a relay only takes the oldest unpublished
row of each patient, and skips rows another relay has locked (FOR UPDATE SKIP LOCKED); a later row of that
patient waits until the earlier one is marked. SQLite has no row locks: run one relay per SQLite file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from kafka import KafkaProducer

from pm.common.db import Database
from pm.common.kafka import ensure_topics, make_producer, probe_broker
from pm.patient.adapters.tables import outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    bootstrap_servers: str
    topic: str
    batch_size: int = 100
    poll_interval_seconds: float = 0.5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    ack_timeout_seconds: float = 10.0


def _pending_query(batch_size: int) -> sa.Select[Any]:
    earlier = outbox.alias("earlier")
    earlier_pending = (
        sa.select(earlier.c.id)
        .where(earlier.c.patient_id == outbox.c.patient_id)
        .where(earlier.c.published_at.is_(None))
        .where(earlier.c.id < outbox.c.id)
    )
    return (
        sa.select(outbox.c.id, outbox.c.event_id, outbox.c.patient_id, outbox.c.event_type, outbox.c.payload)
        .where(outbox.c.published_at.is_(None))
        .where(~sa.exists(earlier_pending))
        .order_by(outbox.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=outbox)
    )


class OutboxRelay:
    """One background thread; `start()` / `stop()` are the service's on_start / on_stop hooks."""

    def __init__(
        self,
        database: Database,
        settings: RelaySettings,
        *,
        producer_factory: Callable[[], KafkaProducer] | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self._producer_factory = producer_factory or (
            lambda: make_producer(settings.bootstrap_servers, client_id="pm-patient-relay")
        )
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.published = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """New rows were committed: publish now rather than at the next poll."""
        self._wake.set()

    def check(self) -> None:
        """Health component: raises while the relay cannot publish (last failure, still connecting, or
        the broker gone while the relay had nothing to send)."""
        if self.last_error is not None:
            raise RuntimeError(self.last_error)
        if self._producer is None:
            raise RuntimeError(f"not connected to Kafka at {self.settings.bootstrap_servers}")
        probe_broker(self.settings.bootstrap_servers)

    def run(self) -> None:
        backoff = self.settings.initial_backoff_seconds
        while not self._stop.is_set():
            try:
                published = self.publish_pending()
            except Exception as exc:  # noqa: BLE001 - any failure: back off, rows stay pending
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning(
                    "outbox relay cannot publish; retrying",
                    extra={"error": self.last_error, "retry_in_s": backoff},
                )
                self._close_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                continue
            if self.last_error is not None:
                log.info("outbox relay publishing again")
            self.last_error = None
            backoff = self.settings.initial_backoff_seconds
            if published == 0:
                self._wake.wait(self.settings.poll_interval_seconds)
                self._wake.clear()
        self._close_producer()

    def publish_pending(self) -> int:
        """Publish batches until the outbox is drained (or stopping); returns how many rows were sent."""
        total = 0
        while not self._stop.is_set():
            sent = self.publish_batch()
            total += sent
            if sent == 0:
                break
        return total

    def publish_batch(self) -> int:
        """Send one batch and mark what the broker acknowledged, in one database transaction."""
        producer = self._connected_producer()
        failure: Exception | None = None
        with self.database.transaction() as session:
            rows = session.execute(_pending_query(self.settings.batch_size)).all()
            if not rows:
                return 0
            futures = [
                producer.send(
                    self.settings.topic,
                    key=str(row.patient_id).encode(),
                    value=row.payload,
                    headers=[
                        ("event-type", row.event_type.encode()),
                        ("event-id", str(row.event_id).encode()),
                    ],
                )
                for row in rows
            ]
            try:
                producer.flush(timeout=self.settings.ack_timeout_seconds)
            except Exception as exc:  # noqa: BLE001 - reported after the acknowledged rows are marked
                failure = exc
            acknowledged = []
            for row, future in zip(rows, futures, strict=True):
                if future.is_done and future.succeeded():
                    acknowledged.append(row.id)
                else:
                    failure = failure or future.exception or TimeoutError("no acknowledgement in time")
            if acknowledged:
                session.execute(
                    sa.update(outbox)
                    .where(outbox.c.id.in_(acknowledged))
                    .values(published_at=datetime.now(UTC))
                )
        self.published += len(acknowledged)
        log.debug("published outbox rows", extra={"count": len(acknowledged)})
        if failure is not None:
            raise failure
        return len(acknowledged)

    def _connected_producer(self) -> KafkaProducer:
        if self._producer is None:
            probe_broker(self.settings.bootstrap_servers)
            # The topic is (re)created whenever we (re)connect: a broker may come back empty.
            ensure_topics(self.settings.bootstrap_servers, [self.settings.topic])
            self._producer = self._producer_factory()
        return self._producer

    def _close_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=2)
            except Exception as exc:  # noqa: BLE001 - a broken producer may fail to close too
                log.debug("producer close failed", extra={"error": str(exc)[:200]})
            self._producer = None


def pending_count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ).scalar_one()
        )
