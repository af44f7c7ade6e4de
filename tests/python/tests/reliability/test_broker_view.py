"""The broker view through the gateway on the whole system (devstack wiring, PostgreSQL, Tansu): offsets and
lag against a separate consumer after N creates, the outbox backlog while the broker is down, a parked
message redriven once, and role ADMIN on every broker route."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.reliability.harness import System, login, patient_body, wait_until
from tests.support.routes import BROKER_ROUTES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(system: System, token: str) -> httpx.Client:
    return httpx.Client(base_url=system.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=20)


def next_offsets_read_by_a_separate_consumer(bootstrap: str, topic: str = "patient") -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        last = {tp.partition: -1 for tp in tps}
        idle = 0
        while idle < 3:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                last[tp.partition] = max(last[tp.partition], records[-1].offset)
        return {partition: offset + 1 for partition, offset in last.items()}
    finally:
        consumer.close(autocommit=False)


def test_after_n_creates_offsets_and_lag_agree_with_a_separate_consumer(
    system: System, api: httpx.Client
) -> None:
    for _ in range(12):
        assert api.post("/api/patients", json=patient_body("broker")).status_code == 201
    expected = 15 + 12  # the seeded patients' events and ours

    def groups() -> dict:
        return api.get("/api/broker/consumer-groups").json()

    wait_until(
        lambda: api.get("/api/analytics/summary").json()["patientsCreated"] == expected, 60, "all counted"
    )
    wait_until(lambda: groups()["groups"][0]["totalLag"] == 0, 30, "lag 0")
    read = next_offsets_read_by_a_separate_consumer(system.bootstrap)
    assert sum(read.values()) == expected
    topics = api.get("/api/broker/topics").json()
    (patient,) = (t for t in topics["topics"] if t["name"] == "patient")
    assert {p["partition"]: p["nextOffset"] for p in patient["partitions"]} == read
    group = groups()["groups"][0]
    assert group["group"] == "analytics-service"
    assert {p["partition"]: p["committedOffset"] for p in group["partitions"]} == read


def test_a_parked_message_is_listed_and_a_fixed_one_redriven_is_counted_once(
    system: System, api: httpx.Client
) -> None:
    key = f"garbage-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=[system.bootstrap], acks="all")
    try:
        producer.send("patient", key=key.encode(), value=b"\x08\x96\x01 not a PatientEvent").get(timeout=10)
    finally:
        producer.close(timeout=5)

    def parked() -> list[dict]:
        return api.get("/api/broker/dead-letters").json()["items"]

    wait_until(lambda: any(item["key"] == key for item in parked()), 30, "the garbage parked")
    # A usable event that an older analytics (without this event type) had parked.
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    fixed = pb.PatientEvent(
        event_id=str(uuid.uuid4()),
        event_type=pb.PATIENT_CREATED,
        occurred_at=stamp,
        patient_id=str(uuid.uuid4()),
        name="Redriven Patient",
        email="redriven@example.com",
        actor="ops",
    ).SerializeToString()
    system.sql(
        "analytics",
        'INSERT INTO dead_letter (topic, partition, "offset", key, payload, error, parked_at) '
        "VALUES ('patient', 0, 999999, :key, :payload, 'unknown event_type 1', now())",
        key=b"fixed",
        payload=fixed,
    )
    (letter,) = (item for item in parked() if item["offset"] == 999999)
    assert letter["reason"] == "unknown type"
    before = api.get("/api/analytics/summary").json()["patientsCreated"]
    redriven = api.post(f"/api/broker/dead-letters/{letter['id']}/redrive")
    assert redriven.json() == {"recorded": 1, "duplicates": 0, "stillParked": 0, "missing": 0}
    assert api.post(f"/api/broker/dead-letters/{letter['id']}/redrive").status_code == 404
    assert api.get("/api/analytics/summary").json()["patientsCreated"] == before + 1
    assert "dead letters: redrive" in system.log_text()


def test_a_user_gets_403_on_every_broker_route(system: System, api: httpx.Client) -> None:
    email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    created = api.post("/auth/users", json={"email": email, "password": "s3cret-pass", "role": "USER"})
    assert created.status_code == 201, created.text
    user = {"Authorization": f"Bearer {login(system.gateway + '/auth', email, 's3cret-pass')}"}
    for method, path in BROKER_ROUTES:
        refused = httpx.request(method, system.gateway + path, headers=user, timeout=20)
        assert refused.status_code == 403, path
        assert refused.headers["content-type"] == "application/problem+json"
        # The services refuse it too, not only the gateway.
        service = "patient" if path == "/api/broker/outbox" else "analytics"
        direct = httpx.request(
            method, system.url(service) + path.removeprefix("/api"), headers=user, timeout=20
        )
        assert direct.status_code == 403, path


def test_with_the_broker_stopped_the_backlog_grows_and_the_view_says_unreachable(
    system: System, api: httpx.Client
) -> None:
    system.stack.stop_broker()
    try:
        for _ in range(4):
            assert api.post("/api/patients", json=patient_body("stuck")).status_code == 201
        outbox = api.get("/api/broker/outbox")
        assert outbox.status_code == 200
        assert outbox.json()["pending"] >= 4
        wait_until(
            lambda: api.get("/api/broker/outbox").json()["brokerReachable"] is False, 30, "relay says so"
        )
        assert api.post("/api/patients", json=patient_body("stuck")).status_code == 201
        assert api.get("/api/broker/outbox").json()["pending"] >= 5, "the backlog grows"
        topics = api.get("/api/broker/topics")
        assert topics.status_code == 200
        assert topics.json()["reachable"] is False and "cannot be reached" in topics.json()["error"]
        assert api.get("/api/broker/consumer-groups").json()["reachable"] is False
    finally:
        system.stack.start_broker()
    wait_until(lambda: api.get("/api/broker/outbox").json()["pending"] == 0, 60, "the backlog drained")
