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
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import TopicPartition

if TYPE_CHECKING:
    from pm.common.tls import ClientTls

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_MS = 10_000
METADATA_MAX_AGE_MS = 3_000


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
    """acks=all and idempotence: a retried send is written once per partition, in order."""
    return KafkaProducer(
        **security_options(tls),
        bootstrap_servers=bootstrap_list(bootstrap_servers),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        retries=5,
        linger_ms=linger_ms,
        max_in_flight_requests_per_connection=5,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
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
    """Delete `topic` and create it again, empty, with a new id."""
    admin = make_admin_client(bootstrap_servers, client_id="pm-admin", tls=tls)
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
        deadline = time.monotonic() + timeout
        while topic in admin.list_topics():
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} still exists {timeout:.0f}s after its deletion")
            time.sleep(0.2)
    finally:
        admin.close()
    ensure_topics(bootstrap_servers, [topic], tls=tls)


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


class ConsumerLoop:
    """One consumer on its own thread; offsets are committed only after the handler returned.

    If the handler raises, nothing is committed and the consumer seeks back to the first record of the
    batch, so the batch is redelivered (handlers must be idempotent, e.g. de-duplicate by event id).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: list[str],
        group_id: str,
        handler: Handler,
        *,
        client_id: str,
        max_records: int = 200,
        poll_timeout_ms: int = 500,
        retry_backoff_s: float = 1.0,
        tls: ClientTls | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.tls = tls
        self.topics = topics
        self.group_id = group_id
        self.handler = handler
        self.client_id = client_id
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.retry_backoff_s = retry_backoff_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.last_error: str | None = None
        self._assignment: frozenset[TopicPartition] = frozenset()
        # Which log our positions belong to, kept across reconnects: a consumer rebuilt after an error
        # resumes from committed offsets that may point into a log replaced meanwhile.
        self._topic_ids: dict[Any, Any] = {}
        # Partitions re-read from their beginning with nothing committed since: a consumer rebuilt (or a
        # rebalance) meanwhile would resume from the old log's committed offsets, so they are re-read again.
        self._unconfirmed: set[TopicPartition] = set()

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owned at its last poll (empty until it has joined its group)."""
        return self._assignment

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(
            *self.topics,
            **security_options(self.tls),
            bootstrap_servers=bootstrap_list(self.bootstrap_servers),
            group_id=self.group_id,
            client_id=self.client_id,
            enable_auto_commit=False,
            # `latest` is unreliable on some Kafka-protocol brokers; committed offsets make it moot.
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            # Topic ids come with metadata; refreshed every few seconds (default: 5 minutes), a recreated
            # topic is noticed while its new log is still short (see _reread_replaced_logs).
            metadata_max_age_ms=METADATA_MAX_AGE_MS,
            heartbeat_interval_ms=1000,
            max_poll_records=self.max_records,
            request_timeout_ms=REQUEST_TIMEOUT_MS + 5000,
            bootstrap_timeout_ms=REQUEST_TIMEOUT_MS,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"consumer-{self.group_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 8.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._consumer()
                self.connected.set()
                self.last_error = None
                self._poll_until_stopped(consumer)
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
                if consumer is not None:
                    close_quietly("consumer", consumer.close, autocommit=False)

    def _poll_until_stopped(self, consumer: KafkaConsumer) -> None:
        topic_ids = self._topic_ids
        sought: set[TopicPartition] = set()
        while not self._stop.is_set():
            batches = consumer.poll(timeout_ms=self.poll_timeout_ms, max_records=self.max_records)
            self._assignment = frozenset(consumer.assignment())
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
                consumer.commit({TopicPartition(tp.topic, tp.partition): _offset(records[-1].offset + 1)})
                self._unconfirmed.discard(TopicPartition(tp.topic, tp.partition))
            self._reread_replaced_logs(consumer, topic_ids, sought)

    def _reread_replaced_logs(
        self, consumer: KafkaConsumer, topic_ids: dict[Any, Any], sought: set[TopicPartition]
    ) -> None:
        """Read a partition again from its beginning when its log was replaced under us: the topic was
        recreated (its id changed) or the broker lost its data (an in-memory broker restarted), so our
        position points into a log that no longer exists. Kafka answers a fetch past the end with
        OFFSET_OUT_OF_RANGE and the client resets to `earliest`; some Kafka-protocol brokers answer with
        nothing, and a position that happens to fit the new log would skip its first records silently.
        Re-reading is safe because handlers de-duplicate.

        `topic_ids` maps a topic to the first id this consumer saw, and a partition to the id of the log
        its position belongs to. A partition assigned for the first time is taken to be positioned in the
        topic's first-seen log (its committed offset may well come from there): a topic recreated while
        the group was rebalancing (the topic briefly gone, nothing assigned) is re-read all the same."""
        assigned = consumer.assignment()
        sought.intersection_update(assigned)  # a partition assigned again is positioned from commits
        replaced: set[TopicPartition] = set()
        cluster = consumer._client.cluster  # topic ids (metadata v10+) are kept only there
        for tp in assigned:
            current = cluster.topic_id(tp.topic)
            if current is None:
                continue
            first_seen = topic_ids.setdefault(tp.topic, current)
            if topic_ids.setdefault(tp, first_seen) != current:
                topic_ids[tp] = current
                replaced.add(tp)
            elif tp in self._unconfirmed and tp not in sought:
                replaced.add(tp)
        for tp in assigned - replaced:
            try:
                end = consumer.highwater(tp)
                position = consumer.position(tp, timeout_ms=1000) if end is not None else None
            except KafkaError:  # unassigned by a rebalance meanwhile, or no position yet: next poll
                continue
            if end is not None and position is not None and position > end:
                replaced.add(tp)
        if replaced:
            log.warning(
                "the log under our position was replaced; reading it from the beginning",
                extra={"partitions": sorted(f"{tp.topic}-{tp.partition}" for tp in replaced)},
            )
            consumer.seek_to_beginning(*replaced)
            self._unconfirmed |= replaced
            sought |= replaced


def _offset(value: int) -> Any:
    from kafka.structs import OffsetAndMetadata

    try:
        return OffsetAndMetadata(value, "", -1)
    except TypeError:  # older kafka-python: (offset, metadata)
        return OffsetAndMetadata(value, "")
