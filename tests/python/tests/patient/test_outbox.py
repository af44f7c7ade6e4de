"""The transactional outbox: billing or Kafka outages never leave half-done state or lose events."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from pm.common import tracing
from pm.common.broker import Broker
from pm.common.db import Database
from pm.common.kafka import ensure_topics, make_producer, recreate_topic
from pm.common.tokens import TokenVerifier
from pm.patient.adapters.relay import OutboxRelay, pending_count
from pm.patient.adapters.repository import SqlUnitOfWork
from pm.patient.adapters.tables import relay_state
from pm.patient.domain.model import Patient, PatientDetails
from pm.patient.service_layer.services import PatientService
from tests.patient.conftest import (
    BillingServer,
    OwnBrokerService,
    decode,
    new_patient,
    read_events,
    relay_settings,
    start_service,
    unreachable_target,
)


def count(database: Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_billing_down_means_503_with_retry_after_and_nothing_stored(
    patient_db: Database, verifier: TokenVerifier, kafka_bootstrap: str, topic: str, mint: Callable[..., str]
) -> None:
    for running in start_service(patient_db, verifier, unreachable_target(), kafka_bootstrap, topic):
        with httpx.Client(
            base_url=running.url, timeout=15, headers={"Authorization": f"Bearer {mint()}"}
        ) as c:
            started = time.monotonic()
            response = c.post("/patients", json=new_patient())
            elapsed = time.monotonic() - started
            health = c.get("/health")

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert "Nothing was stored" in response.json()["detail"]
    assert elapsed < 5, "three bounded attempts, not a hang"
    assert count(patient_db, "patients") == 0
    assert count(patient_db, "outbox") == 0
    # Reads keep working without billing: it is reported, but does not make the service DOWN.
    assert health.status_code == 200
    assert health.json()["components"]["billing"]["status"] == "DOWN"
    assert health.json()["components"]["database"]["status"] == "UP"


def test_events_created_while_the_broker_is_down_all_arrive_once_it_is_back(
    patient_db: Database, own_broker: Broker, topic: str, on_own_broker: OwnBrokerService
) -> None:
    own_broker.stop()
    with on_own_broker() as c:
        created = [c.post("/patients", json=new_patient()) for _ in range(12)]
        assert [r.status_code for r in created] == [201] * 12, "Kafka is not on the request path"
        assert pending_count(patient_db) == 12
        time.sleep(1.0)  # the relay keeps failing meanwhile, with backoff
        assert pending_count(patient_db) == 12
        relay_health = c.get("/health").json()["components"]["relay"]
        assert relay_health["status"] == "DOWN"

        assert "pm_outbox_pending_events 12.0" in c.get("/metrics").text

        own_broker.start()
        records = read_events(own_broker.bootstrap, topic, expect=12, timeout=20)
        # Readiness comes from the background health round: the recovery shows within an interval.
        deadline = time.monotonic() + 10
        while c.get("/health").json()["components"]["relay"]["status"] != "UP":
            assert time.monotonic() < deadline, "the relay never reported UP again"
            time.sleep(0.2)
        deadline = time.monotonic() + 5  # rows are marked just after the broker acknowledged them
        while "pm_outbox_pending_events 0.0" not in c.get("/metrics").text:
            assert time.monotonic() < deadline, "the backlog gauge never drained"
            time.sleep(0.05)

    ids = {r.json()["id"] for r in created}
    events = [decode(r) for r in records]
    assert {e.patient_id for e in events} == ids
    assert len(events) == 12, "none twice"
    assert pending_count(patient_db) == 0


class StaticBilling:
    """The relay tests are about Kafka; billing's answer does not matter to them."""

    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        return f"acct-{patient_id}"

    def erase_patient_data(self, patient_id: uuid.UUID) -> None:
        return None


class SlowFlushProducer:
    """A real producer whose batches take a while, so that a stop lands between two of them."""

    def __init__(self, producer: KafkaProducer) -> None:
        self.producer = producer

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return self.producer.send(*args, **kwargs)

    def flush(self, timeout: float | None = None) -> None:
        time.sleep(0.2)
        self.producer.flush(timeout)

    def close(self, timeout: float | None = None) -> None:
        self.producer.close(timeout)


def details(i: int) -> PatientDetails:
    email = f"p{i}.{uuid.uuid4().hex[:6]}@example.com"
    return PatientDetails(f"Patient {i}", email, "1 Road", date(1990, 1, 1), date(2024, 1, 1))


def patient_service(database: Database) -> PatientService:
    return PatientService(lambda **options: SqlUnitOfWork(database, **options), StaticBilling())


def store_patients(service: PatientService, how_many: int) -> list[Patient]:
    return [service.register(details(i), actor="tester") for i in range(how_many)]


def test_relay_stopped_mid_batch_resumes_and_loses_nothing(
    patient_db: Database, kafka_bootstrap: str, topic: str
) -> None:
    stored = store_patients(patient_service(patient_db), 40)
    first = OutboxRelay(
        patient_db,
        relay_settings(kafka_bootstrap, topic, batch_size=5),
        producer_factory=lambda: SlowFlushProducer(make_producer(kafka_bootstrap, client_id="test-relay")),  # type: ignore[arg-type,return-value]
    )
    first.start()
    deadline = time.monotonic() + 10
    while first.published == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    first.stop()
    assert 0 < first.published < 40, "stopped part-way"

    second = OutboxRelay(patient_db, relay_settings(kafka_bootstrap, topic, batch_size=5))
    second.start()
    try:
        records = read_events(kafka_bootstrap, topic, expect=40)
    finally:
        second.stop()

    events = [decode(r) for r in records]
    assert {e.patient_id for e in events} == {str(p.id) for p in stored}
    assert len(events) == 40
    assert pending_count(patient_db) == 0


def test_a_crash_between_ack_and_mark_resends_the_same_event_ids(
    patient_db: Database, kafka_bootstrap: str, topic: str
) -> None:
    """At least once: the rows are sent again, and consumers can drop the copies by event_id."""
    store_patients(patient_service(patient_db), 3)
    crashing = OutboxRelay(patient_db, relay_settings(kafka_bootstrap, topic))
    original_execute = sa.orm.Session.execute

    def fail_on_mark(self: sa.orm.Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(statement, sa.Update):
            raise RuntimeError("process died before marking")
        return original_execute(self, statement, *args, **kwargs)

    sa.orm.Session.execute = fail_on_mark  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            crashing.publish_batch()
    finally:
        sa.orm.Session.execute = original_execute  # type: ignore[method-assign]
    assert pending_count(patient_db) == 3

    assert OutboxRelay(patient_db, relay_settings(kafka_bootstrap, topic)).publish_batch() == 3
    events = [decode(r) for r in read_events(kafka_bootstrap, topic, expect=6)]
    copies = Counter(e.event_id for e in events)
    assert len(copies) == 3
    assert set(copies.values()) == {2}


def test_two_relays_on_postgresql_publish_each_event_once_in_patient_order(
    patient_db: Database, kafka_bootstrap: str, topic: str
) -> None:
    service = patient_service(patient_db)
    patients = store_patients(service, 10)
    for patient in patients:
        for round_ in range(3):
            service.update(patient.id, details(100 + round_), actor="tester", if_match=None)
    relays = [OutboxRelay(patient_db, relay_settings(kafka_bootstrap, topic, batch_size=4)) for _ in range(2)]
    barrier = threading.Barrier(2)

    def run(relay: OutboxRelay) -> None:
        barrier.wait()
        relay.run()

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in relays]
    for thread in threads:
        thread.start()
    try:
        records = read_events(kafka_bootstrap, topic, expect=40)
    finally:
        for relay in relays:
            relay.stop()
        for thread in threads:
            thread.join(5)

    assert all(r.published > 0 for r in relays), "both relays took part"
    events = [decode(r) for r in records]
    assert len(events) == 40 and len({e.event_id for e in events}) == 40
    by_patient: dict[str, list[tuple[int, int, str]]] = {}
    for record, event in zip(records, events, strict=True):
        by_patient.setdefault(event.patient_id, []).append((record.partition, record.offset, event.name))
    for history in by_patient.values():
        names = [name for _p, _o, name in sorted(history)]
        assert names[0].startswith("Patient ") and names[1:] == ["Patient 100", "Patient 101", "Patient 102"]


def test_a_broker_that_lost_its_log_gets_every_retained_event_again_once(
    patient_db: Database, own_broker: Broker, topic: str
) -> None:
    service = patient_service(patient_db)
    before = store_patients(service, 5)
    relay = OutboxRelay(patient_db, relay_settings(own_broker.bootstrap, topic))
    relay.start()
    try:
        assert len(read_events(own_broker.bootstrap, topic, expect=5)) == 5
        # An in-memory broker killed and started again on the same port: an empty log, a new topic id.
        own_broker.stop()
        own_broker.start()
        after = store_patients(service, 2)
        records = read_events(own_broker.bootstrap, topic, expect=7, timeout=30)
        time.sleep(2.0)  # more log checks with the same topic id: nothing is sent a third time
        again = read_events(own_broker.bootstrap, topic, expect=len(records), timeout=5)
    finally:
        relay.stop()

    events = [decode(r) for r in records]
    assert {e.patient_id for e in events} == {str(p.id) for p in before + after}
    assert len(again) == len(records)
    # The rows the new broker got as new may also have been swept up by the replay: consumers drop such
    # copies by event_id; what matters is that every retained event is on the new log.
    assert len({e.event_id for e in events}) == 7
    assert relay.republished >= 5
    assert pending_count(patient_db) == 0


def test_a_topic_recreated_with_fewer_partitions_gets_every_retained_event_on_its_new_log(
    patient_db: Database, own_broker: Broker, topic: str
) -> None:
    """The relay's producer knew the topic with four partitions (the broker's default, as when a client's
    metadata request made it) and the topic is recreated with three (`analytics rebuild`): the events
    published again must all reach the new log, none sent to a partition it no longer has."""
    admin = KafkaAdminClient(bootstrap_servers=own_broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        admin.close()
    service = patient_service(patient_db)
    store_patients(service, 24)
    relay = OutboxRelay(
        patient_db, relay_settings(own_broker.bootstrap, topic, log_check_interval_seconds=0.2)
    )
    relay.start()
    try:
        assert len(read_events(own_broker.bootstrap, topic, expect=24)) == 24
        recreate_topic(own_broker.bootstrap, topic)
        records = read_events(own_broker.bootstrap, topic, expect=24, timeout=30)
    finally:
        relay.stop()

    assert len({decode(r).event_id for r in records}) == 24
    assert relay.republished >= 24
    assert pending_count(patient_db) == 0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@pytest.mark.slow
def test_published_rows_past_their_retention_are_purged_without_blocking_creates(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
    mint: Callable[..., str],
) -> None:
    old = 100_000
    # The relay has published to this topic before (otherwise it would first publish every row again).
    ensure_topics(kafka_bootstrap, [topic])
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    with patient_db.engine.begin() as conn:
        conn.execute(
            sa.insert(relay_state).values(
                topic=topic, topic_id=described["topic_id"], updated_at=sa.func.now()
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox (event_id, patient_id, event_type, payload, created_at, published_at) "
                "SELECT md5('e' || i)::uuid, md5('p' || i)::uuid, 'PATIENT_CREATED', '\\x00', "
                "now() - interval '30 days', now() - interval '30 days' FROM generate_series(1, :n) AS i"
            ),
            {"n": old},
        )
    latencies: list[float] = []
    baseline: list[float] = []
    for running in start_service(
        patient_db, verifier, billing_server.target, kafka_bootstrap, topic, purge_interval_seconds=0.5
    ):
        relay = running.relay
        with httpx.Client(
            base_url=running.url, timeout=15, headers={"Authorization": f"Bearer {mint()}"}
        ) as c:
            started = time.monotonic()
            while relay.purged < old and time.monotonic() - started < 120:
                began = time.monotonic()
                assert c.post("/patients", json=new_patient()).status_code == 201
                latencies.append(time.monotonic() - began)
            purge_seconds = time.monotonic() - started
            for _ in range(len(latencies)):
                began = time.monotonic()
                assert c.post("/patients", json=new_patient()).status_code == 201
                baseline.append(time.monotonic() - began)
    remaining = count(patient_db, "outbox")
    figures = {
        "rows_purged": relay.purged,
        "purge_seconds": round(purge_seconds, 1),
        "creates_during_purge": len(latencies),
        "create_p50_ms_during_purge": round(percentile(latencies, 0.5) * 1000, 1),
        "create_p99_ms_during_purge": round(percentile(latencies, 0.99) * 1000, 1),
        "create_p99_ms_after_purge": round(percentile(baseline, 0.99) * 1000, 1),
        "rows_kept": remaining,
    }
    print(f"FIGURES outbox_purge: {figures}")
    assert relay.purged == old
    # The rows of this run are recent: all kept (and published, or about to be).
    assert remaining == len(latencies) + len(baseline)
    assert percentile(latencies, 0.99) < 2.0, figures


def test_relays_starting_together_both_record_the_topic_without_an_error(
    patient_db: Database, kafka_bootstrap: str, topic: str
) -> None:
    """Two relays that start at once both find no recorded topic id and both insert one: the one that
    loses must read the winner's, not fail and back off (it would sit out while the other drains)."""
    relay = OutboxRelay(patient_db, relay_settings(kafka_bootstrap, topic))
    outcome: dict[str, Any] = {}

    def check() -> None:
        try:
            outcome["republished"] = relay.check_log(now=True)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    def relay_waits_on_our_row() -> bool:
        with patient_db.engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        return int(waiting) > 0

    with patient_db.engine.connect() as other_relay:
        other_relay.execute(
            sa.insert(relay_state).values(
                topic=topic, topic_id="recorded-by-the-other-relay", updated_at=sa.func.now()
            )
        )
        thread = threading.Thread(target=check, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not relay_waits_on_our_row():
            assert thread.is_alive(), f"the relay did not wait for the other relay's row: {outcome}"
            assert time.monotonic() < deadline, "the relay never reached the topic id insert"
            time.sleep(0.05)
        other_relay.commit()
    thread.join(30)
    relay.stop()

    assert "error" not in outcome, f"the relay that lost the race failed: {outcome.get('error')!r}"
    assert outcome["republished"] == 0
    with patient_db.engine.connect() as conn:
        stored = conn.execute(
            sa.select(relay_state.c.topic_id).where(relay_state.c.topic == topic)
        ).scalar_one()
    assert stored not in ("", "recorded-by-the-other-relay"), "the broker's topic id is recorded"


def test_each_event_carries_the_trace_of_the_request_that_wrote_it_also_when_replayed(
    patient_db: Database, own_broker: Broker, topic: str
) -> None:
    service = patient_service(patient_db)
    traces = {}
    for i in range(3):
        trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        token = tracing.attach(tracing.context_from_traceparent(f"00-{trace_id}-{span_id}-01"))
        try:
            patient = service.register(details(i), actor="tester")
        finally:
            tracing.detach(token)
        traces[str(patient.id)] = trace_id
    untraced = service.register(details(9), actor="tester")
    relay = OutboxRelay(patient_db, relay_settings(own_broker.bootstrap, topic))
    relay.start()
    try:
        first = read_events(own_broker.bootstrap, topic, expect=4)
        own_broker.stop()  # the log is lost: every retained event goes out again
        own_broker.start()
        replayed = read_events(own_broker.bootstrap, topic, expect=4, timeout=30)
    finally:
        relay.stop()

    for records in (first, replayed):
        carried = {decode(r).patient_id: dict(r.headers).get("traceparent") for r in records}
        assert carried.pop(str(untraced.id)) is None
        assert {pid: (value or b"").decode().split("-")[1] for pid, value in carried.items()} == traces
