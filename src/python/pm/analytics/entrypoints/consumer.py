"""The patient-event consumer: Kafka records in, one recorded batch per poll, dead letters copied out."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.adapters.dead_letters import DeadLetterPublisher
from pm.analytics.service_layer import services
from pm.analytics.service_layer.services import AnalyticsUnitOfWork, RawMessage
from pm.common import tracing
from pm.common.kafka import BrokerProbe, ConsumerLoop, ensure_topics
from pm.common.tls import ClientTls

log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)


class PatientEventConsumer:
    """Runs a ConsumerLoop on its own thread; offsets are committed only after a batch's transaction."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        dead_letter_topic: str,
        group_id: str,
        unit_of_work: Callable[[], AnalyticsUnitOfWork],
        dead_letters: DeadLetterPublisher | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        self.unit_of_work = unit_of_work
        # Topics made here get our partition count; auto-created ones would get the broker's default.
        self._ensure_topics = functools.partial(
            ensure_topics, bootstrap_servers, [topic, dead_letter_topic], tls=tls
        )
        self.dead_letters = dead_letters or DeadLetterPublisher(bootstrap_servers, dead_letter_topic, tls=tls)
        self.loop = ConsumerLoop(
            bootstrap_servers, [topic], group_id, self.handle, client_id="analytics", tls=tls
        )
        self.broker = BrokerProbe(bootstrap_servers, tls=tls)
        self._thread: threading.Thread | None = None

    def handle(self, records: list[Any]) -> None:
        messages = [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
        spans = [self._process_span(r) for r in records]
        try:
            result = services.record_batch(self.unit_of_work(), messages, decode_patient_event)
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            for span in spans:
                span.end()
        for letter in result.parked:
            log.warning(
                "parked an undecodable message",
                extra={
                    "topic": letter.message.topic,
                    "partition": letter.message.partition,
                    "offset": letter.message.offset,
                    "error": letter.error,
                },
            )
        self.dead_letters.publish(result.parked)
        log.debug(
            "batch recorded",
            extra={
                "recorded": result.recorded,
                "duplicates": result.duplicates,
                "parked": len(result.parked),
            },
        )

    def _process_span(self, record: Any) -> Span:
        """The CONSUMER span of one record: a child of the relay's publish span, whose context the record
        carries, so an event's processing sits in the trace of the request that caused it (a re-delivered
        or replayed event joins that same trace again). It covers the batch's transaction, which is what
        processing the record took."""
        return _tracer.start_span(
            f"process {record.topic}",
            context=tracing.context_from_kafka_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation": "process",
                "messaging.destination.name": record.topic,
                "messaging.kafka.destination.partition": record.partition,
                "messaging.kafka.message.offset": record.offset,
                "messaging.consumer.group.name": self.loop.group_id,
            },
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="analytics-consumer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Finish and commit the batch in hand, leave the group, close the dead-letter producer."""
        self.loop.stop(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self.dead_letters.close(timeout=1.0)
        self.broker.close()
        log.info("consumer stopped")

    def check(self) -> None:
        """Health: the consumer is running and the broker answers."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("consumer is not running")
        if not self.loop.connected.is_set():
            raise RuntimeError(self.loop.last_error or "not connected to the broker yet")
        self.broker()

    def _run(self) -> None:
        try:
            self._ensure_topics()
        except Exception as exc:  # noqa: BLE001 - the loop below keeps retrying the broker anyway
            log.warning("could not ensure topics", extra={"error": str(exc)[:200]})
        self.loop.run()
