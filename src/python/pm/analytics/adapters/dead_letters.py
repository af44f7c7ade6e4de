"""Best-effort copies of parked messages on the dead-letter topic (the `dead_letter` table is the record)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaProducer

from pm.analytics.service_layer.services import DeadLetter
from pm.common.kafka import make_producer
from pm.common.tls import ClientTls

log = logging.getLogger(__name__)


class DeadLetterPublisher:
    def __init__(self, bootstrap_servers: str, topic: str, *, tls: ClientTls | None = None) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.tls = tls
        self._producer: KafkaProducer | None = None

    def publish(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        try:
            producer = self._connected()
            for letter in letters:
                message = letter.message
                future = producer.send(
                    self.topic,
                    key=message.key,
                    value=message.value or b"",
                    headers=[
                        ("error", letter.error.encode()),
                        ("source-topic", message.topic.encode()),
                        ("source-partition", str(message.partition).encode()),
                        ("source-offset", str(message.offset).encode()),
                    ],
                )
                future.add_errback(lambda exc, offset=message.offset: self._failed(exc, offset))
        except Exception as exc:  # noqa: BLE001 - best effort: the message is already parked in the table
            self._failed(exc)

    def close(self, timeout: float = 5.0) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - closing after a broker loss may fail too
                log.warning("dead-letter producer close failed", extra={"error": str(exc)[:200]})
            self._producer = None

    def _connected(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = make_producer(self.bootstrap_servers, client_id="analytics-dlq", tls=self.tls)
        return self._producer

    def _failed(self, exc: BaseException, offset: int | None = None) -> None:
        log.warning(
            "could not copy a parked message to the dead-letter topic",
            extra={"topic": self.topic, "source_offset": offset, "error": str(exc)[:200]},
        )
