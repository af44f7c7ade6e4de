"""Kafka on kafka-python: a safe producer, topic creation and a consumer loop that commits after work.

Settings suit any Kafka-protocol broker; the consumer timings also suit Tansu, whose JoinGroup is held for
about half of the session timeout.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from pm.common.threads import ThreadWorker

if TYPE_CHECKING:
    from pm.common.tls import ClientTls

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 10_000
METADATA_MAX_AGE_MS = 3_000
# A produced batch is acknowledged or failed within REQUEST_TIMEOUT_MS + linger + this.
DELIVERY_MARGIN_MS = 1_000
# A consumer that neither gets records nor has a working group membership for this long, while the broker
# answers, is closed and replaced by a new one that joins its group afresh (ConsumerLoop's watchdog).
STALL_SECONDS = 20.0
# How often an idle consumer checks that its group coordinator answers, and how long one check may take.
GROUP_CHECK_INTERVAL_S = 3.0
GROUP_CHECK_TIMEOUT_MS = 2_000
# A poll while the member (re)joins its group: longer than a join on Tansu (about half the session timeout).
REJOIN_POLL_MS = 5_000
# How long a consumer being closed in the middle of a join may poll for that join to end (ConsumerLoop._close).
SETTLE_MS = REJOIN_POLL_MS


def bootstrap_list(servers: str) -> list[str]:
    return [s.strip() for s in servers.split(",") if s.strip()]


def security_options(tls: ClientTls | None) -> dict[str, Any]:
    """The kafka-python options of a connection: plaintext, or SSL checked against the configured CA
    (PM_KAFKA_TLS_CA_FILE, else the system's) with an optional client certificate."""
    if tls is None:
        return {"security_protocol": "PLAINTEXT"}
    return {"security_protocol": "SSL", "ssl_context": tls.ssl_context()}


def make_producer(
    bootstrap_servers: str, *, client_id: str, linger_ms: int = 5, tls: ClientTls | None = None
) -> KafkaProducer:
    """acks=all, one request in flight per connection (a retried send keeps its place in its partition), and
    not idempotent: a record acknowledged is a record the log holds; a retried send may be written twice
    (consumers drop copies by event id).

    Idempotence is only as good as the broker's memory of producer ids. An in-memory broker that restarts
    empty hands the same ids out again (Tansu: 1, 2, ...); a producer that outlived the old broker (its
    close gave up with a batch still pending) then sends under the id of a new producer, and the broker
    answers the new one's next batch DUPLICATE_SEQUENCE_NUMBER, which the client counts as acknowledged
    though nothing was written (issue 15: the outbox marked such events published and never sent them
    again). Every batch ends, acknowledged or failed, within `DELIVERY_TIMEOUT_MS`, so closing a producer
    after a failed flush finds nothing left to wait for."""
    return KafkaProducer(
        **security_options(tls),
        bootstrap_servers=bootstrap_list(bootstrap_servers),
        client_id=client_id,
        acks="all",
        enable_idempotence=False,
        # A topic made by a metadata request gets the broker's default partition count (Tansu: 4); ours
        # are created explicitly (ensure_topics), so a log lost under the producer is noticed, not remade.
        allow_auto_create_topics=False,
        retries=5,
        linger_ms=linger_ms,
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        delivery_timeout_ms=REQUEST_TIMEOUT_MS + linger_ms + DELIVERY_MARGIN_MS,
        max_block_ms=REQUEST_TIMEOUT_MS,
        bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
    )


def make_admin_client(
    bootstrap_servers: str,
    *,
    client_id: str,
    timeout_ms: int = REQUEST_TIMEOUT_MS,
    tls: ClientTls | None = None,
) -> KafkaAdminClient:
    """An admin client that gives up after `timeout_ms`, bootstrap included."""
    return KafkaAdminClient(
        **security_options(tls),
        bootstrap_servers=bootstrap_list(bootstrap_servers),
        client_id=client_id,
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int = 3,
    replication_factor: int = 1,
    tls: ClientTls | None = None,
) -> None:
    """Create topics that do not exist yet (auto-created topics get broker defaults we do not want)."""
    admin = make_admin_client(bootstrap_servers, client_id="pm-admin", tls=tls)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [
                        NewTopic(t, num_partitions=partitions, replication_factor=replication_factor)
                        for t in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("created topics", extra={"topics": missing})
    finally:
        admin.close()


def recreate_topic(
    bootstrap_servers: str, topic: str, *, timeout: float = 15.0, tls: ClientTls | None = None
) -> None:
    """Delete `topic` and create it again, empty, with a new id.

    Done once the old log is gone: the topic no longer listed, or listed again under another id (a client
    such as the patient relay may create a missing topic itself at any moment)."""
    admin = make_admin_client(bootstrap_servers, client_id="pm-admin", tls=tls)
    try:
        deleted = _topic_id(_described(admin, topic))
        if deleted is not None:
            admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while deleted is not None and _topic_id(_described(admin, topic)) in (deleted, ""):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} still exists {timeout:.0f}s after its deletion")
            time.sleep(0.2)
    finally:
        admin.close()
    ensure_topics(bootstrap_servers, [topic], tls=tls)


def _described(admin: KafkaAdminClient, topic: str) -> dict[str, Any] | None:
    return next((t for t in admin.describe_topics([topic]) if t.get("name") == topic), None)


def probe_broker(bootstrap_servers: str, timeout: float = 1.0) -> None:
    """Fail fast when no broker accepts connections: the Kafka clients would retry for many seconds."""
    for server in bootstrap_list(bootstrap_servers):
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except (OSError, ValueError):
            continue
    raise ConnectionError(f"no Kafka broker reachable at {bootstrap_servers}")


class BrokerProbe:
    """Health check: the broker answers a metadata request. One admin client serves every check (dropped
    and rebuilt after a failure), so a check costs a TCP connect and one request, never a new client."""

    def __init__(
        self, bootstrap_servers: str, timeout_ms: int = 2000, *, tls: ClientTls | None = None
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_ms = timeout_ms
        self.tls = tls
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            try:
                probe_broker(self.bootstrap_servers, timeout=self.timeout_ms / 1000)
                if self._admin is None:
                    self._admin = make_admin_client(
                        self.bootstrap_servers,
                        client_id="pm-health",
                        timeout_ms=self.timeout_ms,
                        tls=self.tls,
                    )
                self._admin.list_topics()
            except Exception:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._admin is not None:
            close_quietly("admin client", self._admin.close)
            self._admin = None


def close_quietly(what: str, close: Callable[..., Any], **kwargs: Any) -> None:
    """Close a Kafka client that may be broken: a failure to close is logged at DEBUG, never raised."""
    try:
        close(**kwargs)
    except Exception as exc:  # noqa: BLE001 - a broken client may fail to close too
        log.debug(f"{what} close failed", extra={"error": str(exc)[:200]})


Handler = Callable[[list[Any]], None]
"""Processes one polled batch of ConsumerRecords; returns normally only when the batch is durable."""


class TopicIds:
    """The current id of each topic (Metadata v10+), asked through an admin client at most once per
    `max_age` unless forced. A topic that does not exist maps to None; a broker that gives no ids maps to
    "" (then nothing can be compared and positions are trusted as they are). `partitions` holds the
    partitions each topic had at the same answer."""

    def __init__(self, bootstrap_servers: str, topics: list[str], *, tls: ClientTls | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.tls = tls
        self.max_age = METADATA_MAX_AGE_MS / 1000
        self._admin: KafkaAdminClient | None = None
        self._ids: dict[str, str | None] = {}
        self.partitions: dict[str, frozenset[int]] = {}
        self._asked = float("-inf")

    def current(self, *, force: bool = False) -> dict[str, str | None]:
        if force or time.monotonic() - self._asked >= self.max_age:
            if self._admin is None:
                self._admin = make_admin_client(
                    self.bootstrap_servers, client_id="pm-consumer-admin", tls=self.tls
                )
            described = {t.get("name"): t for t in self._admin.describe_topics(self.topics)}
            self._ids = {topic: _topic_id(described.get(topic)) for topic in self.topics}
            self.partitions = {
                topic: frozenset(
                    p["partition_index"] for p in (described.get(topic) or {}).get("partitions") or ()
                )
                for topic in self.topics
            }
            self._asked = time.monotonic()
        return self._ids

    def close(self) -> None:
        if self._admin is not None:
            close_quietly("admin client", self._admin.close)
            self._admin = None


def _topic_id(described: dict[str, Any] | None) -> str | None:
    if described is None or described.get("error_code") != 0:
        return None
    topic_id = str(described.get("topic_id") or "")
    return "" if topic_id.strip("0-") == "" else topic_id


class ConsumerStalled(Exception):
    """The consumer made no progress for longer than its loop's `stall_seconds` while the broker answered."""


class _Watchdog:
    """Progress of one consumer: records handed out, or a check that its group works (the coordinator
    answers and the member is stable). `stalled_for` is how long neither happened."""

    def __init__(self, stall_seconds: float, check_interval: float) -> None:
        self.stall_seconds = stall_seconds
        self.check_interval = check_interval
        self.progress_at = self.checked_at = time.monotonic()
        self.problem: str | None = None

    def progressed(self) -> None:
        self.progress_at = time.monotonic()
        self.problem = None

    def check_due(self) -> bool:
        now = time.monotonic()
        return now - self.progress_at >= self.check_interval and now - self.checked_at >= self.check_interval

    def checked(self, problem: str | None) -> None:
        self.checked_at = time.monotonic()
        if problem is None:
            self.progressed()
        else:
            self.problem = problem

    def stalled_for(self) -> float:
        return time.monotonic() - self.progress_at


class _Assignments(ConsumerRebalanceListener):
    """Remembers partitions assigned by a rebalance; the loop positions them itself after the poll."""

    def __init__(self) -> None:
        self.fresh: set[TopicPartition] = set()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.fresh.difference_update(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.fresh.update(assigned)


@dataclass(eq=False)
class ConsumerLoop(ThreadWorker):
    """One consumer on its own thread; offsets are committed only after the handler returned.

    If the handler raises, nothing is committed and the consumer seeks back to the first record of the
    batch, so the batch is redelivered (handlers must be idempotent, e.g. de-duplicate by event id).

    A log replaced under the consumer (the topic recreated, or an in-memory broker restarted empty: the
    topic's id changes, offsets start again from 0) is read again from its beginning, never resumed at
    offsets that belong to the old log:
    - every commit carries the id of the log its offset belongs to as metadata, and is made only after
      the topic's id was checked to be still that one (otherwise a batch read from the old log would be
      committed onto the new one, the consumer rebuilt after a rebalance would resume there, and every
      record before it would be skipped);
    - on each assignment a partition is positioned at its committed offset only when nothing says that
      offset belongs to another log (its metadata, where the broker keeps it; this loop's own knowledge);
      otherwise at its beginning;
    - a running consumer asks for the topic ids every few seconds and re-reads a replaced log.
    Re-reading is safe because handlers de-duplicate.

    A (re)join must end inside a poll. kafka-python 3.0.12 runs JoinGroup and SyncGroup as one task that a
    poll waits on for the poll's remaining time; a task that ends while no poll waits on it is never
    applied. Its result is dropped and a new JoinGroup sent, or, when the rejoin was caused only by a
    change in the topic's partition count, never looked at again: the leader's assignment, made inside
    the task, already made the metadata and the assignment agree, so no later poll rejoins. The member then
    stays `REBALANCING` with heartbeats off and its partitions revoked, fetches nothing, and the broker
    drops it (issue 15: the rebuild after broker kills counted 81 of 359 events for 180 s). So while the
    member is not stable the loop polls for `REJOIN_POLL_MS` and calls nothing else on the client.

    Every call into the client is bounded in time, and a watchdog replaces a consumer that makes no
    progress: when for `stall_seconds` it got no records and could not show a working group membership
    (the member stable and its group coordinator answering an offset fetch), while the broker answers
    metadata, the consumer is closed and a new one joins the group afresh. Positions of the new consumer
    follow the same rules as after any reassignment. That is the only time a running consumer is replaced:
    an error from the broker (gone, restarting, a call timed out) leaves the same member to carry on.
    """

    bootstrap_servers: str
    topics: list[str]
    group_id: str
    handler: Handler
    _: KW_ONLY
    client_id: str
    max_records: int = 200
    poll_timeout_ms: int = 500
    retry_backoff_s: float = 1.0
    stall_seconds: float = STALL_SECONDS
    group_check_interval_s: float = GROUP_CHECK_INTERVAL_S
    tls: ClientTls | None = None
    # Consumers closed by the watchdog (for health and tests).
    replaced_stalled: int = field(default=0, init=False)
    connected: threading.Event = field(default_factory=threading.Event, init=False)
    last_error: str | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _assignment: frozenset[TopicPartition] = field(default=frozenset(), init=False, repr=False)
    # Kept across reconnects. The id of the log each partition's position (and our commits) belong to.
    _log_of: dict[TopicPartition, str | None] = field(default_factory=dict, init=False, repr=False)
    # Partitions sent back to their beginning with nothing committed since: their committed offset
    # may still be one of the old log's, so a reassignment must not resume there.
    _rereading: set[TopicPartition] = field(default_factory=set, init=False, repr=False)

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owned at its last poll (empty until it has joined its group)."""
        return self._assignment

    def _consumer(self, assignments: _Assignments) -> KafkaConsumer:
        consumer = KafkaConsumer(
            **security_options(self.tls),
            bootstrap_servers=bootstrap_list(self.bootstrap_servers),
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            # `latest` is unreliable on some Kafka-protocol brokers; committed offsets make it moot.
            auto_offset_reset="earliest",
            # A topic made by a metadata request gets the broker's default partition count; ours are
            # created explicitly (ensure_topics), also after a broker lost them.
            allow_auto_create_topics=False,
            # Refreshed every few seconds (default: 5 minutes): a recreated topic's partitions (its count
            # may differ) are assigned soon after it appears.
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_records=self.max_records,
            request_timeout_ms=REQUEST_TIMEOUT_MS + 5000,
            bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        consumer.subscribe(self.topics, listener=assignments)
        return consumer

    def thread_name(self) -> str:
        return f"consumer-{self.group_id}"

    def join_seconds(self) -> float:
        # A poll in progress, a join let end (`_close`), then the close itself.
        return (max(self.poll_timeout_ms, REJOIN_POLL_MS) + SETTLE_MS + REQUEST_TIMEOUT_MS // 2) / 1000

    def run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            topic_ids = TopicIds(self.bootstrap_servers, self.topics, tls=self.tls)
            try:
                assignments = _Assignments()
                consumer = self._consumer(assignments)
                self.connected.set()
                self.last_error = None
                self._poll_until_stopped(consumer, assignments, topic_ids)
            except ConsumerStalled as exc:
                self.connected.clear()
                self.last_error = str(exc)[:200]
                self.replaced_stalled += 1
            except KafkaError as exc:
                self.connected.clear()
                self.last_error = str(exc)[:200]
                log.warning("consumer error, reconnecting", extra={"error": self.last_error})
                self._stop.wait(self.retry_backoff_s)
            except Exception as exc:  # a consumer thread must never die silently
                self.connected.clear()
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.exception("unexpected consumer failure, reconnecting")
                self._stop.wait(self.retry_backoff_s)
            finally:
                self._assignment = frozenset()
                topic_ids.close()
                if consumer is not None:
                    self._close(consumer)

    def _close(self, consumer: KafkaConsumer) -> None:
        """Close `consumer`; if its member is in the middle of a join, first let that join end.

        kafka-python sends LeaveGroup on close whenever the member has an id (it has no public switch), and
        Tansu 0.6.0 keeps a member that leaves while its group is forming as the group's leader: every later
        member is told to wait for that leader's assignment, which never comes, and the group takes no
        member until the broker restarts. So while the member is rebalancing, polls (bounded by `SETTLE_MS`)
        let a join in flight complete first; the leave then finds a formed group, which Tansu hands on
        correctly. Records those polls return are dropped uncommitted: the next member reads them again.
        Those polls can also start a join (after a broker restart) that is still held when the time is up,
        and the leave then cuts it: so a consumer is closed only when it must be, on stop or by the watchdog,
        never for a broker error (`_poll_until_stopped`)."""
        deadline = time.monotonic() + SETTLE_MS / 1000
        try:
            while consumer.group_metadata().state == MemberState.REBALANCING:
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0:
                    break
                consumer.poll(timeout_ms=remaining_ms, max_records=1)
        except KafkaError as exc:
            log.info("consumer closed mid-join", extra={"error": str(exc)[:200]})
        close_quietly("consumer", consumer.close, autocommit=False, timeout_ms=REQUEST_TIMEOUT_MS // 2)

    def _poll_until_stopped(
        self, consumer: KafkaConsumer, assignments: _Assignments, topic_ids: TopicIds
    ) -> None:
        """Poll with this one consumer until stopped, or until the watchdog gives up on it (ConsumerStalled).

        A KafkaError in between (the broker gone or restarting, a call timing out) does not end the
        consumer: kafka-python reconnects by itself and the member keeps its id. Closing it would send
        LeaveGroup, and the member is often in the middle of a rejoin then (the broker came back empty): on
        Tansu 0.6.0 that locks the group (see `_close`)."""
        watchdog = _Watchdog(self.stall_seconds, self.group_check_interval_s)
        while not self._stop.is_set():
            try:
                self._poll_once(consumer, assignments, topic_ids, watchdog)
                self.connected.set()
                self.last_error = None
            except KafkaError as exc:
                self._carry_on(exc)
            if watchdog.check_due():
                try:
                    self._check_progress(consumer, topic_ids, watchdog)
                except KafkaError as exc:  # the broker does not answer: no new member could join either
                    self._carry_on(exc)

    def _carry_on(self, exc: KafkaError) -> None:
        self.connected.clear()
        self.last_error = str(exc)[:200]
        log.warning("consumer error; the same member carries on", extra={"error": self.last_error})
        self._stop.wait(self.retry_backoff_s)

    def _poll_once(
        self, consumer: KafkaConsumer, assignments: _Assignments, topic_ids: TopicIds, watchdog: _Watchdog
    ) -> None:
        # While the member (re)joins its group, one long poll, and no other call into the client
        # between polls: kafka-python 3.0.12 applies a finished join only if a poll is waiting on it
        # when it ends (see the class docstring). Either way a poll is bounded: the coordinator lookup,
        # the join and the fetch get the poll's remaining time, and it returns empty when that is out.
        stable = consumer.group_metadata().state == MemberState.STABLE
        timeout_ms = self.poll_timeout_ms if stable else max(self.poll_timeout_ms, REJOIN_POLL_MS)
        batches = consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        if any(batches.values()):
            watchdog.progressed()
        stable = consumer.group_metadata().state == MemberState.STABLE
        self._assignment = frozenset(consumer.assignment())
        if assignments.fresh:
            # If this raises, the partitions stay fresh and this batch is dropped: the consumer's assignors
            # (kafka-python's defaults, range and round robin) are eager, a rebalance revokes and assigns
            # every partition, so every partition in the batch was just assigned and is fetched again from
            # where the next iteration positions it.
            positioned = self._position(consumer, assignments.fresh & self._assignment, topic_ids)
            assignments.fresh.clear()
            # Fetched before we positioned them: they come again from where we put the position.
            batches = {tp: records for tp, records in batches.items() if tp not in positioned}
        done: dict[TopicPartition, int] = {}
        for tp, records in batches.items():
            if not records:
                continue
            try:
                self.handler(records)
            except Exception:
                log.exception(
                    "batch failed; it will be redelivered",
                    extra={"topic": tp.topic, "partition": tp.partition},
                )
                consumer.seek(tp, records[0].offset)
                self._stop.wait(self.retry_backoff_s)
                continue
            done[TopicPartition(tp.topic, tp.partition)] = records[-1].offset + 1
        self._commit(consumer, done, topic_ids.current(force=bool(done)))
        if stable:
            self._reread_replaced_logs(consumer, topic_ids)

    def _check_progress(self, consumer: KafkaConsumer, topic_ids: TopicIds, watchdog: _Watchdog) -> None:
        stable = consumer.group_metadata().state == MemberState.STABLE
        watchdog.checked(self._group_problem(consumer, topic_ids) if stable else "member not stable")
        if watchdog.stalled_for() >= self.stall_seconds:
            self._give_up_stalled(consumer, topic_ids, watchdog)

    def _group_problem(self, consumer: KafkaConsumer, topic_ids: TopicIds) -> str | None:
        """Why this stable member cannot work in its group now, or None: its group coordinator does not
        answer an offset fetch within a bound. Says nothing while the topic is missing (nothing to read,
        and the broker's answer on it will tell)."""
        topic_ids.current()
        probe = next(
            (
                TopicPartition(topic, min(partitions))
                for topic, partitions in topic_ids.partitions.items()
                if partitions
            ),
            None,
        )
        if probe is None:
            return None
        try:
            consumer.committed(probe, timeout_ms=GROUP_CHECK_TIMEOUT_MS)
        except KafkaError as exc:
            return f"group coordinator not answering ({type(exc).__name__})"
        return None

    def _give_up_stalled(self, consumer: KafkaConsumer, topic_ids: TopicIds, watchdog: _Watchdog) -> None:
        """Raise ConsumerStalled when the broker answers metadata (so a new consumer can join); when it
        does not, its KafkaError reaches the poll loop and the same consumer carries on."""
        topic_ids.current(force=True)
        log.warning(
            "consumer made no progress; closing it and joining the group afresh",
            extra={
                "group": self.group_id,
                "stalled_s": round(watchdog.stalled_for(), 1),
                "reason": watchdog.problem,
                "assigned": len(consumer.assignment()),
            },
        )
        raise ConsumerStalled(f"no progress for {watchdog.stalled_for():.0f}s: {watchdog.problem}")

    def _position(
        self, consumer: KafkaConsumer, fresh: set[TopicPartition], topic_ids: TopicIds
    ) -> set[TopicPartition]:
        """Put each newly assigned partition at its committed offset, or at its beginning when that
        offset may belong to another log than the topic's current one."""
        ids = topic_ids.current(force=True)
        beginning: list[TopicPartition] = []
        for tp in fresh:
            current = ids.get(tp.topic)
            committed = consumer.committed(tp, metadata=True, timeout_ms=REQUEST_TIMEOUT_MS)
            trusted = (
                committed is not None
                and tp not in self._rereading
                and self._log_of.get(tp, current) == current
                and (not committed.metadata or not current or committed.metadata == current)
            )
            if trusted:
                consumer.seek(tp, committed.offset)
            else:
                beginning.append(tp)
            self._log_of[tp] = current
        if beginning:
            consumer.seek_to_beginning(*beginning)
            self._rereading.update(beginning)
        return set(fresh)

    def _commit(
        self, consumer: KafkaConsumer, done: dict[TopicPartition, int], ids: dict[str, str | None]
    ) -> None:
        """Commit what the handler made durable, unless the topic's log changed since it was read: then
        the offsets number records of a log that is gone (_reread_replaced_logs sends them back)."""
        offsets = {
            tp: OffsetAndMetadata(offset, self._log_of.get(tp) or "", -1)
            for tp, offset in done.items()
            if ids.get(tp.topic) is not None and ids.get(tp.topic) == self._log_of.get(tp)
        }
        if offsets:
            consumer.commit(offsets, timeout_ms=REQUEST_TIMEOUT_MS)
            self._rereading.difference_update(offsets)

    def _reread_replaced_logs(self, consumer: KafkaConsumer, topic_ids: TopicIds) -> None:
        """Read a partition again from its beginning when its log was replaced under us: the topic's id
        changed (recreated, or an in-memory broker restarted), or, on a broker that gives no ids, the log
        ends before our position. Kafka answers a fetch past the end with OFFSET_OUT_OF_RANGE and the
        client resets to `earliest`; some Kafka-protocol brokers answer with nothing, and a position that
        happens to fit the new log would skip its first records silently.

        The new log may have fewer partitions than the assignment still names, until the group rebalances
        on the consumer's next metadata: those are not positioned or committed (kafka-python 3.0.12 then
        retries the offset lookup of the missing partition in a tight loop and fetches nothing at all)."""
        ids = topic_ids.current()
        assigned = consumer.assignment()
        suspect = {tp for tp in assigned if tp in self._log_of and self._log_of[tp] != ids.get(tp.topic)}
        for tp in assigned - suspect:
            if tp.partition not in topic_ids.partitions.get(tp.topic, frozenset()):
                continue
            try:
                end = consumer.highwater(tp)
                position = consumer.position(tp, timeout_ms=1000) if end is not None else None
            except KafkaError:  # unassigned by a rebalance meanwhile, or no position yet: next poll
                continue
            if end is not None and position is not None and position > end:
                suspect.add(tp)
        if not suspect:
            return
        # The answer may be seconds old: what the log is now is what the positions will belong to.
        ids = topic_ids.current(force=True)
        replaced = {tp for tp in suspect if tp.partition in topic_ids.partitions.get(tp.topic, frozenset())}
        log.warning(
            "the log under our position was replaced; reading it from the beginning",
            extra={"partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in replaced)},
        )
        for tp in suspect:
            self._log_of[tp] = ids.get(tp.topic)
        self._rereading.update(suspect)
        if not replaced:
            return
        consumer.seek_to_beginning(*replaced)
        # A commit of the old log's offsets may have reached the new log before we saw its id: put the
        # group back at the beginning too, so that another member (or this one, rebuilt) starts there.
        restart = {
            tp: OffsetAndMetadata(0, self._log_of[tp] or "", -1) for tp in replaced if self._log_of[tp]
        }
        if restart:
            try:
                consumer.commit(restart, timeout_ms=REQUEST_TIMEOUT_MS)
            except KafkaError as exc:  # a rebalance meanwhile: the reassignment positions it anyway
                log.debug("could not reset the committed offsets", extra={"error": str(exc)[:200]})
