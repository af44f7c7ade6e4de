"""Topics, offsets, a consumer group's lag and a partition's newest messages, read from the broker.

Where the numbers come from (the same on Apache Kafka and on the embedded Tansu):
- partitions: the consumer's cluster metadata;
- `first` offset: ListOffsets with the EARLIEST spec (`beginning_offsets`);
- `next` offset: the high watermark of a Fetch response (`highwater` after a poll). ListOffsets with the
  LATEST spec (`end_offsets`) is not used: Tansu 0.6 answers it wrongly (e.g. 1 for a partition holding
  7 messages, measured), while every Fetch answer carries the correct high watermark on both brokers;
- committed offsets: OffsetFetch for the group (`list_group_offsets`), which needs no group membership.
Every call builds its own short-lived clients (a KafkaConsumer is not thread-safe) with bounded timeouts,
and first checks that a broker accepts connections, so a broker that is down is reported in about a
second instead of after the clients' retries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from pm.analytics.domain.broker import (
    BrokerMessage,
    BrokerUnreachable,
    MessagePage,
    PartitionLag,
    PartitionOffsets,
    TopicOffsets,
)
from pm.common.kafka import bootstrap_list, make_admin_client, probe_broker, security_options
from pm.common.tls import ClientTls

TIMEOUT_MS = 5000
# Each offsets fetch reads at most this much per partition: only the high watermark is wanted.
OFFSETS_FETCH_BYTES = 1024


class KafkaBrokerView:
    def __init__(
        self, bootstrap_servers: str, *, tls: ClientTls | None = None, timeout_ms: int = TIMEOUT_MS
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.tls = tls
        self.timeout_ms = timeout_ms

    def topics(self) -> list[TopicOffsets]:
        """Every topic but the broker's internal ones, with each partition's first and next offsets."""
        with self._consumer(OFFSETS_FETCH_BYTES) as consumer:
            names = sorted(t for t in consumer.topics() if not t.startswith("__"))
            partitions = {name: sorted(consumer.partitions_for_topic(name) or ()) for name in names}
            offsets = self._offsets(
                consumer, [TopicPartition(n, p) for n, ps in partitions.items() for p in ps]
            )
        return [
            TopicOffsets(name, [offsets[TopicPartition(name, p)] for p in partitions[name]]) for name in names
        ]

    def group_lag(self, group: str, topic: str) -> list[PartitionLag]:
        """The group's committed offset and lag on each partition of `topic`."""
        with self._consumer(OFFSETS_FETCH_BYTES) as consumer:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            offsets = self._offsets(consumer, tps)
        admin = self._guarded(
            lambda: make_admin_client(
                self.bootstrap_servers,
                client_id="analytics-broker-view",
                timeout_ms=self.timeout_ms,
                tls=self.tls,
            )
        )
        try:
            committed = self._guarded(lambda: admin.list_group_offsets({group: tps})).get(group, {})
        finally:
            admin.close()
        lags = []
        for tp in tps:
            mark = committed.get(tp)
            offset = None if mark is None or mark.offset < 0 else int(mark.offset)
            position = offsets[tp]
            lags.append(PartitionLag(tp.partition, offset, position.first, position.next))
        return lags

    def messages(self, topic: str, partition: int, *, before: int | None, limit: int) -> MessagePage:
        """Up to `limit` messages just before offset `before` (default: the newest), newest first."""
        tp = TopicPartition(topic, partition)
        with self._consumer(1_048_576) as consumer:
            if partition not in (consumer.partitions_for_topic(topic) or ()):
                raise LookupError(f"no partition {partition} in topic {topic}")
            offsets = self._offsets(consumer, [tp])[tp]
            end = offsets.next if before is None else max(offsets.first, min(before, offsets.next))
            start = max(offsets.first, end - limit)
            found: dict[int, BrokerMessage] = {}
            if start < end:
                consumer.seek(tp, start)
                deadline = time.monotonic() + self.timeout_ms / 1000
                while time.monotonic() < deadline and (not found or max(found) < end - 1):
                    batch = self._guarded(lambda: consumer.poll(timeout_ms=200, max_records=limit))
                    for record in batch.get(tp, []):
                        if start <= record.offset < end:
                            found[record.offset] = _message(record)
                    if consumer.position(tp) >= end:
                        break
        return MessagePage(
            messages=[found[o] for o in sorted(found, reverse=True)],
            first=offsets.first,
            next=offsets.next,
            older=start if start > offsets.first else None,
        )

    def _offsets(
        self, consumer: KafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, PartitionOffsets]:
        if not tps:
            return {}
        first = self._guarded(lambda: consumer.beginning_offsets(tps, timeout_ms=self.timeout_ms))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, first[tp])
        # One fetch per partition leader: each answer carries the partition's high watermark.
        deadline = time.monotonic() + self.timeout_ms / 1000
        while any(consumer.highwater(tp) is None for tp in tps):
            if time.monotonic() > deadline:
                raise BrokerUnreachable("the broker did not answer a fetch in time")
            self._guarded(lambda: consumer.poll(timeout_ms=100, max_records=1, update_offsets=False))
        return {
            tp: PartitionOffsets(tp.partition, int(first[tp]), int(consumer.highwater(tp) or 0)) for tp in tps
        }

    @contextmanager
    def _consumer(self, fetch_bytes: int) -> Iterator[KafkaConsumer]:
        try:
            probe_broker(self.bootstrap_servers)
        except ConnectionError as exc:
            raise BrokerUnreachable(str(exc)) from None
        consumer = self._guarded(
            lambda: KafkaConsumer(
                **security_options(self.tls),
                bootstrap_servers=bootstrap_list(self.bootstrap_servers),
                client_id="analytics-broker-view",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # Looking must not create: a topic made by a metadata request gets the broker's default
                # partition count (Tansu: 4), not the one the services create it with.
                allow_auto_create_topics=False,
                max_partition_fetch_bytes=fetch_bytes,
                fetch_max_wait_ms=100,
                request_timeout_ms=self.timeout_ms + 1000,
                bootstrap_timeout_ms=self.timeout_ms,
            )
        )
        try:
            yield consumer
        finally:
            consumer.close(autocommit=False)

    @staticmethod
    def _guarded(call):  # type: ignore[no-untyped-def]
        try:
            return call()
        except KafkaError as exc:
            raise BrokerUnreachable(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _message(record) -> BrokerMessage:  # type: ignore[no-untyped-def]
    stamp = record.timestamp
    return BrokerMessage(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=None if stamp is None or stamp < 0 else datetime.fromtimestamp(stamp / 1000, UTC),
        key=record.key,
        headers=[(name, value) for name, value in (record.headers or [])],
        value=record.value,
    )
