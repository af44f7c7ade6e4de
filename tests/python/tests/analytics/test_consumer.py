"""The consumer against the real broker and PostgreSQL: counting, de-duplication, parking, resuming."""

import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from pm.analytics.adapters.store import SqlAnalyticsReader
from pm.analytics.adapters.tables import dead_letter, patient_event
from pm.analytics.main import main
from pm.common import tracing
from pm.common.db import Database
from pm.common.kafka import make_producer
from pm.proto.billing.v1 import billing_pb2
from tests.analytics.conftest import event_bytes, wait_until


def send(producer, topic: str, *values: bytes, key: bytes | None = None) -> None:
    for value in values:
        producer.send(topic, key=key or str(uuid.uuid4()).encode(), value=value)
    producer.flush(timeout=10)


def count(database: Database, table: sa.Table) -> int:
    with database.transaction() as session:
        return session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def test_events_on_the_topic_become_the_summary_and_the_recent_events(
    start_consumer, producer, topics, database, api, token
) -> None:
    patient = str(uuid.uuid4())
    send(
        producer,
        topics[0],
        event_bytes(
            "created", patient_id=patient, occurred_at=at("2024-01-15T10:00:00"), registered_date="2024-01-15"
        ),
        event_bytes("created", occurred_at=at("2024-01-20T10:00:00"), registered_date="2024-01-20"),
        event_bytes("created", occurred_at=at("2024-03-02T10:00:00"), registered_date="2024-03-02"),
        event_bytes("created", occurred_at=at("2025-02-01T09:00:00")),
        event_bytes("updated", patient_id=patient, occurred_at=at("2025-02-02T09:00:00"), name="Jane Doe"),
        event_bytes("deleted", patient_id=patient, occurred_at=at("2025-02-03T09:00:00")),
    )
    start_consumer()
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: count(database, patient_event) == 6, what="6 recorded events")

    headers = {"Authorization": f"Bearer {token}"}
    summary = httpx.get(f"{api.url}/analytics/summary", headers=headers, timeout=5)
    assert summary.status_code == 200
    assert summary.json() == {
        "patientsCreated": 4,
        "patientsUpdated": 1,
        "patientsDeleted": 1,
        "currentPatients": 3,
        "registrationsPerMonth": [
            {"month": "2024-01", "count": 2},
            {"month": "2024-03", "count": 1},
            {"month": "2025-02", "count": 1},
        ],
        "lastEventAt": "2025-02-03T09:00:00.000Z",
    }
    recent = httpx.get(f"{api.url}/analytics/events", params={"limit": 2}, headers=headers, timeout=5).json()
    assert [e["eventType"] for e in recent] == ["PATIENT_DELETED", "PATIENT_UPDATED"]
    assert recent[1]["patientId"] == patient
    assert recent[1]["name"] == "Jane Doe"
    assert recent[1]["actor"] == "testuser@test.com"
    assert recent[1]["occurredAt"] == "2025-02-02T09:00:00.000Z"
    assert len(reader.recent_events(50)) == 6


def test_the_same_event_id_twice_is_counted_once(start_consumer, producer, topics, database) -> None:
    twice = str(uuid.uuid4())
    send(producer, topics[0], event_bytes("created", event_id=twice), event_bytes("created", event_id=twice))
    start_consumer()
    send(producer, topics[0], event_bytes("created", event_id=twice), event_bytes("updated"))
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: reader.summary().patients_updated == 1, what="the update after the duplicates")
    summary = reader.summary()
    assert (summary.patients_created, summary.current_patients) == (1, 1)
    assert count(database, patient_event) == 2


def test_undecodable_messages_are_parked_and_later_events_still_counted(
    start_consumer, producer, topics, database, kafka_bootstrap
) -> None:
    garbage = b"\xff\xfe\xfd\x00 not a protobuf"
    wrong = billing_pb2.BillingAccount(account_id=str(uuid.uuid4()), status="ACTIVE").SerializeToString()
    send(producer, topics[0], garbage, wrong, key=b"p-1")
    send(producer, topics[0], event_bytes("created"), key=b"p-1")
    start_consumer()
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: reader.summary().patients_created == 1, what="the valid event after the bad ones")

    with database.transaction() as session:
        parked = session.execute(sa.select(dead_letter).order_by(dead_letter.c.offset)).all()
    assert [(p.topic, p.offset, p.payload) for p in parked] == [
        (topics[0], 0, garbage),
        (topics[0], 1, wrong),
    ]
    assert len({p.partition for p in parked}) == 1
    assert "not a PatientEvent" in parked[0].error
    assert "event_type" in parked[1].error

    dlq = KafkaConsumer(
        topics[1],
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    copies: list = []

    def two_copies() -> bool:
        copies.extend(dlq)
        return len(copies) >= 2

    try:
        wait_until(two_copies, timeout=20, what="2 messages on the DLQ")
    finally:
        dlq.close()
    assert sorted(c.value for c in copies) == sorted([garbage, wrong])
    assert {dict(c.headers)["source-topic"] for c in copies} == {topics[0].encode()}


def test_a_restarted_consumer_resumes_from_its_committed_offsets(
    start_consumer, producer, topics, database
) -> None:
    send(producer, topics[0], *(event_bytes("created") for _ in range(5)))
    first = start_consumer()
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: reader.summary().patients_created == 5, what="the first 5 events")
    first.stop()
    # Forget the event ids: a consumer that re-read from the start would now count the first 5 again.
    with database.transaction() as session:
        session.execute(sa.delete(patient_event))
    send(producer, topics[0], *(event_bytes("created") for _ in range(3)))
    start_consumer()
    wait_until(lambda: count(database, patient_event) >= 3, what="the 3 new events")
    assert reader.summary().patients_created == 8
    assert count(database, patient_event) == 3


def test_health_reports_kafka_and_a_stopped_consumer_only_degrades_the_service(
    start_consumer, database, verifier
) -> None:
    from pm.analytics.bootstrap import create_app
    from tests.support.servers import LiveServer

    consumer = start_consumer()
    with LiveServer(
        create_app(
            database, verifier, consumer_check=consumer.check, validate_responses=True, health_interval=0.5
        )
    ) as server:

        def health() -> dict:
            return httpx.get(f"{server.url}/health", timeout=10).json()

        wait_until(lambda: health()["status"] == "UP", what="health UP")
        assert health()["components"] == {"database": {"status": "UP"}, "kafka": {"status": "UP"}}
        consumer.stop()
        wait_until(lambda: health()["status"] != "UP", what="the stopped consumer reported")
        down = httpx.get(f"{server.url}/health", timeout=10)
    # Events only wait while the consumer is away: analytics still serves what it has.
    assert down.status_code == 200
    assert down.json()["status"] == "DEGRADED"
    assert down.json()["degraded"] == ["kafka"]


@pytest.mark.parametrize("consumer_running", [True, False], ids=["running", "stopped"])
def test_after_a_rebuild_the_replayed_events_are_counted_once(
    start_consumer, producer, topics, database, kafka_bootstrap, postgres_url, monkeypatch, consumer_running
) -> None:
    """`analytics rebuild` with analytics running, or stopped and started again after the topic was
    recreated: either way it converges on what the new log holds, each event once."""
    retained = [event_bytes("created") for _ in range(8)]
    send(producer, topics[0], *retained)
    first = start_consumer()
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: reader.summary().patients_created == 8, what="the first 8 events")
    if not consumer_running:
        first.stop()
    for name, value in {
        "PM_ANALYTICS_DATABASE_URL": postgres_url,
        "PM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PM_PATIENT_TOPIC": topics[0],
        "PM_PATIENT_DLQ_TOPIC": topics[1],
    }.items():
        monkeypatch.setenv(name, value)
    main(["rebuild"])
    # What the patient relay does when it sees the topic's new id: every retained event again, then new ones.
    with make_producer(kafka_bootstrap, client_id="relay-after-rebuild") as relay:
        send(relay, topics[0], *retained, *(event_bytes("created") for _ in range(4)))
    if not consumer_running:
        start_consumer()
    wait_until(
        lambda: reader.summary().patients_created == 12, timeout=60, what="12 events after the rebuild"
    )
    time.sleep(1.0)  # anything read twice would have been counted by now
    assert reader.summary().patients_created == 12
    assert count(database, patient_event) == 12


def test_processing_an_event_continues_the_trace_it_was_published_in(
    start_consumer, producer, topics, database, monkeypatch
) -> None:
    memory = InMemorySpanExporter()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")  # only the events' own traces
    assert tracing.configure_tracing("analytics", exporter=memory)
    trace_id, publish_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traced = [("traceparent", f"00-{trace_id}-{publish_span}-01".encode())]
    producer.send(topics[0], key=b"p1", value=event_bytes("created"), headers=traced)
    producer.send(topics[0], key=b"p2", value=event_bytes("created"))  # from before tracing: no trace
    producer.flush(timeout=10)
    start_consumer()
    reader = SqlAnalyticsReader(database)
    wait_until(lambda: reader.summary().patients_created == 2, what="both events counted")

    def processed() -> list:
        trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
        return [s for s in memory.get_finished_spans() if s.kind is SpanKind.CONSUMER]

    wait_until(lambda: len(processed()) == 1, what="the traced event's processing span")
    (span,) = processed()
    assert span.name == f"process {topics[0]}"
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None and f"{span.parent.span_id:016x}" == publish_span
