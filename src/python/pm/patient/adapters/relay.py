"""The outbox relay: publishes recorded events to Kafka, in order, at least once.

Contract: a row is marked `published_at` only after the broker acknowledged it (acks=all). A crash between
the acknowledgement and the mark sends that row again on restart, so consumers de-duplicate by `event_id`.
Per-patient order holds even with several relays on PostgreSQL: a relay only takes the oldest unpublished
row of each patient, and skips rows another relay has locked (FOR UPDATE SKIP LOCKED); a later row of that
patient waits until the earlier one is marked. SQLite has no row locks: run one relay per SQLite file.

The outbox is the source of truth, not the broker: an in-memory broker that restarts comes back empty, and
what it had acknowledged is gone. The relay remembers the id of the topic it publishes to (`relay_state`)
and looks at it every `log_check_interval_seconds`; when the id differs (the log was lost or the topic
recreated), every retained published row becomes pending again and is sent anew, in outbox order.
Consumers drop the copies they already have by `event_id`.

Tracing: each row keeps the `traceparent` of the request that wrote it; its publication is a PRODUCER span
in that trace, and the record carries the span's context as a `traceparent` header (pm.common.tracing).

Retention: a published row is kept for `retention_seconds` after it was created (PM_OUTBOX_RETENTION), then
deleted by this thread in small batches between publications, so a purge never holds locks for long and
never delays new events by more than one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaProducer
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from pm.common import tracing
from pm.common.db import Database
from pm.common.kafka import (
    close_quietly,
    ensure_topics,
    make_admin_client,
    make_producer,
    probe_broker,
)
from pm.common.tls import ClientTls
from pm.patient.adapters.tables import outbox, relay_state

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class RelaySettings:
    """Where the relay publishes (brokers, TLS, topic); the rest, keyword-only, is how often and how much."""

    bootstrap_servers: str
    topic: str
    _: KW_ONLY
    tls: ClientTls | None = None
    batch_size: int = 100
    poll_interval_seconds: float = 0.5
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    ack_timeout_seconds: float = 10.0
    log_check_interval_seconds: float = 1.0
    retention_seconds: float = 7 * 86400.0
    purge_batch_size: int = 500
    purge_interval_seconds: float = 60.0


def _pending_query(batch_size: int) -> sa.Select[Any]:
    earlier = outbox.alias("earlier")
    earlier_pending = (
        sa.select(earlier.c.id)
        .where(earlier.c.patient_id == outbox.c.patient_id)
        .where(earlier.c.published_at.is_(None))
        .where(earlier.c.id < outbox.c.id)
    )
    return (
        sa.select(
            outbox.c.id,
            outbox.c.event_id,
            outbox.c.patient_id,
            outbox.c.event_type,
            outbox.c.payload,
            outbox.c.traceparent,
        )
        .where(outbox.c.published_at.is_(None))
        .where(~sa.exists(earlier_pending))
        .order_by(outbox.c.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=outbox)
    )


# The rows of a batch the broker acknowledged: `ids`, marked published at `now`. Statements are built once:
# building one costs about 0.5 ms of CPU (aliases, column proxies), a batch per create at low load.
_IDS: sa.BindParameter[int] = sa.bindparam("ids", expanding=True)
_MARK_PUBLISHED = sa.update(outbox).where(outbox.c.id.in_(_IDS)).values(published_at=sa.bindparam("now"))


def _held_back() -> sa.Exists:
    """For a row being marked published: does its patient have a later pending row outside this batch
    (one `_pending_query` held back behind it)?"""
    later = outbox.alias("later")
    return sa.exists(
        sa.select(later.c.id)
        .where(later.c.patient_id == outbox.c.patient_id)
        .where(later.c.published_at.is_(None))
        .where(later.c.id > outbox.c.id)
        .where(later.c.id.not_in(_IDS))
    )


# PostgreSQL: the marking answers whether more is pending. (SQLite renders RETURNING's columns unqualified,
# which breaks the subquery.)
_MARK_PUBLISHED_HELD_BACK = _MARK_PUBLISHED.returning(_held_back())


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
            lambda: make_producer(settings.bootstrap_servers, client_id="pm-patient-relay", tls=settings.tls)
        )
        self._pending = _pending_query(settings.batch_size)
        self._producer: KafkaProducer | None = None
        self._unclosed: list[KafkaProducer] = []
        self._admin: KafkaAdminClient | None = None
        self._topic_id: str | None = None
        self._next_log_check = 0.0
        self._next_purge = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.published = 0
        self.republished = 0
        self.purged = 0

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
            # Cleared before the outbox is read: a commit after this point wakes the wait below at once.
            self._wake.clear()
            try:
                self.publish_pending()
                purged = self.purge_due()
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
            if self._unclosed:
                self._close_unclosed()
            # The outbox is drained (publish_pending returned): sleep until a commit or the next poll.
            if purged < self.settings.purge_batch_size:
                self._wake.wait(self.settings.poll_interval_seconds)
        self._close_producer()

    def publish_pending(self) -> int:
        """Publish batches until the outbox is drained (or stopping); returns how many rows were sent.

        Drained means: the last batch was not full and left no pending row behind one of its own (a
        patient's next event, held back by the query until this batch's is marked). On PostgreSQL the
        statement that marks the batch tells, so no empty query is needed to find that out; on SQLite
        the loop ends with a batch that finds nothing, as before."""
        self.check_log()
        total = 0
        while not self._stop.is_set():
            sent, more = self._publish_batch()
            total += sent
            if not more:
                break
        return total

    def publish_batch(self) -> int:
        """Send one batch and mark what the broker acknowledged, in one database transaction."""
        return self._publish_batch()[0]

    def _publish_batch(self) -> tuple[int, bool]:
        """(rows sent, whether more may be pending)."""
        producer = self._connected_producer()
        failure: Exception | None = None
        more = False
        with self.database.transaction() as session:
            rows = session.execute(self._pending).all()
            if not rows:
                return 0, False
            spans = [self._publish_span(row) for row in rows]
            futures = [
                producer.send(
                    self.settings.topic,
                    key=str(row.patient_id).encode(),
                    value=row.payload,
                    headers=[
                        ("event-type", row.event_type.encode()),
                        ("event-id", str(row.event_id).encode()),
                        *(tracing.kafka_headers(trace.set_span_in_context(span)) if span else []),
                    ],
                )
                for row, span in zip(rows, spans, strict=True)
            ]
            try:
                producer.flush(timeout=self.settings.ack_timeout_seconds)
            except Exception as exc:  # noqa: BLE001 - reported after the acknowledged rows are marked
                failure = exc
            acknowledged = []
            for row, future, span in zip(rows, futures, spans, strict=True):
                if future.is_done and future.succeeded():
                    acknowledged.append(row.id)
                else:
                    failure = failure or future.exception or TimeoutError("no acknowledgement in time")
                    if span is not None:
                        span.set_status(StatusCode.ERROR, "not acknowledged by the broker")
                if span is not None:
                    span.end()
            if acknowledged:
                marked = {"ids": acknowledged, "now": datetime.now(UTC)}
                if session.get_bind().dialect.name == "postgresql":
                    held_back = any(session.execute(_MARK_PUBLISHED_HELD_BACK, marked).scalars().all())
                else:
                    session.execute(_MARK_PUBLISHED, marked)
                    held_back = True
                more = held_back or len(rows) == self.settings.batch_size
        self.published += len(acknowledged)
        log.debug("published outbox rows", extra={"count": len(acknowledged)})
        if failure is not None:
            raise failure
        return len(acknowledged), more

    def _publish_span(self, row: Any) -> Span | None:
        """A PRODUCER span in the trace of the request that wrote the row (its stored traceparent), ended
        once the broker answered; a replayed row joins its original trace again. None for untraced rows."""
        parent = tracing.context_from_traceparent(row.traceparent)
        if parent is None:
            return None
        return _tracer.start_span(
            f"publish {self.settings.topic}",
            context=parent,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation": "publish",
                "messaging.destination.name": self.settings.topic,
                "messaging.message.id": str(row.event_id),
                "messaging.kafka.message.key": str(row.patient_id),
                "pm.event_type": row.event_type,
            },
        )

    def purge_due(self) -> int:
        """One purge batch when a purge is due; due again at once while batches come back full."""
        if time.monotonic() < self._next_purge:
            return 0
        purged = self.purge_batch()
        if purged < self.settings.purge_batch_size:
            self._next_purge = time.monotonic() + self.settings.purge_interval_seconds
        return purged

    def purge_batch(self) -> int:
        """Delete up to `purge_batch_size` published rows older than the retention, oldest first."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.retention_seconds)
        expired = (
            sa.select(outbox.c.id)
            .where(outbox.c.published_at.is_not(None))
            .where(outbox.c.created_at < cutoff)
            .order_by(outbox.c.id)
            .limit(self.settings.purge_batch_size)
            .with_for_update(skip_locked=True)
        )
        with self.database.transaction() as session:
            result = session.execute(sa.delete(outbox).where(outbox.c.id.in_(expired.scalar_subquery())))
            deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if deleted:
            self.purged += deleted
            log.info("purged published outbox rows past their retention", extra={"count": deleted})
        return deleted

    def check_log(self, *, now: bool = False) -> int:
        """Publish again every retained event when the topic's log is not the one we published to.

        Throttled to one metadata request per `log_check_interval_seconds` unless `now`. Returns how many
        published rows were made pending again."""
        if not now and time.monotonic() < self._next_log_check:
            return 0
        self._connected_producer()
        topic_id = self._current_topic_id()
        self._next_log_check = time.monotonic() + self.settings.log_check_interval_seconds
        if topic_id is None or topic_id == self._topic_id:
            return 0
        republish = self._adopt_topic(topic_id)
        if self._topic_id is not None:
            # The producer's metadata describes the old log, whose partition count may differ: a record
            # sent to a partition the new log lacks is acknowledged by some brokers (Tansu) and lost.
            self._close_producer()
            self._connected_producer()
        self._topic_id = topic_id
        if republish:
            self.republished += republish
            log.warning(
                "the broker lost the topic's log; publishing the retained events again",
                extra={"topic": self.settings.topic, "events": republish},
            )
        return republish

    def _current_topic_id(self) -> str | None:
        """The topic's id (Metadata v10+); None when the broker does not tell it."""
        assert self._admin is not None
        for attempt in range(2):
            for topic in self._admin.describe_topics([self.settings.topic]):
                if topic.get("name") != self.settings.topic:
                    continue
                if topic.get("error_code") == 0:
                    topic_id = str(topic.get("topic_id") or "")
                    return None if topic_id.strip("0-") == "" else topic_id
            if attempt == 0:  # gone with the broker's log: create it, as on connecting
                ensure_topics(self.settings.bootstrap_servers, [self.settings.topic], tls=self.settings.tls)
        raise RuntimeError(f"topic {self.settings.topic} cannot be described")

    def _adopt_topic(self, topic_id: str) -> int:
        """Record `topic_id` as the log we publish to; if another one was recorded (or none, with rows
        already published), mark every retained published row pending again, in the same transaction.
        The row lock makes one relay of several do it once; while there is no row yet to lock, two relays
        may both try to insert it: the loser's transaction is rolled back whole and it reads the winner's."""
        try:
            return self._adopt_topic_once(topic_id)
        except sa.exc.IntegrityError:
            return self._adopt_topic_once(topic_id)

    def _adopt_topic_once(self, topic_id: str) -> int:
        with self.database.transaction() as session:
            stored = session.execute(
                sa.select(relay_state.c.topic_id)
                .where(relay_state.c.topic == self.settings.topic)
                .with_for_update()
            ).scalar_one_or_none()
            if stored == topic_id:
                return 0
            republish = session.execute(
                sa.update(outbox).where(outbox.c.published_at.is_not(None)).values(published_at=None)
            ).rowcount  # type: ignore[attr-defined]
            values = {"topic_id": topic_id, "updated_at": datetime.now(UTC)}
            if stored is None:
                session.execute(sa.insert(relay_state).values(topic=self.settings.topic, **values))
            else:
                session.execute(
                    sa.update(relay_state).where(relay_state.c.topic == self.settings.topic).values(**values)
                )
        return int(republish or 0)

    def _connected_producer(self) -> KafkaProducer:
        if self._producer is None:
            probe_broker(self.settings.bootstrap_servers)
            # The topic is (re)created whenever we (re)connect: a broker may come back empty.
            ensure_topics(self.settings.bootstrap_servers, [self.settings.topic], tls=self.settings.tls)
            self._admin = make_admin_client(
                self.settings.bootstrap_servers, client_id="pm-patient-relay-admin", tls=self.settings.tls
            )
            self._producer = self._producer_factory()
            self._next_log_check = 0.0  # look at the topic's id first thing after (re)connecting
        return self._producer

    def _close_producer(self) -> None:
        if self._admin is not None:
            close_quietly("admin client", self._admin.close)
            self._admin = None
        if self._producer is not None:
            self._unclosed.append(self._producer)
            self._producer = None
        self._close_unclosed()

    def _close_unclosed(self) -> None:
        """Close the producers we let go of. kafka-python's close gives up (raises) while a batch is still
        pending and leaves the producer's sender running; its batches end within the producer's delivery
        timeout, and a later call closes it then."""
        for producer in list(self._unclosed):
            try:
                producer.close(timeout=2)
            except Exception as exc:  # noqa: BLE001 - still a batch pending: next time
                log.debug("producer not closed yet", extra={"error": str(exc)[:200]})
                continue
            self._unclosed.remove(producer)


def pending_count(database: Database) -> int:
    with database.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
            ).scalar_one()
        )
