"""The broker view against the real broker and PostgreSQL: offsets, lag, messages, dead letters, roles."""

import logging
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, TopicPartition

from pm.analytics.adapters.broker_view import KafkaBrokerView
from pm.analytics.adapters.dead_letter_store import SqlDeadLetterReader, SqlDeadLetterUnitOfWork
from pm.analytics.adapters.tables import dead_letter
from pm.analytics.bootstrap import broker_metrics, create_app
from pm.analytics.entrypoints.broker import BrokerDesk
from pm.common.broker import Broker
from pm.common.db import Database
from pm.common.tokens import TokenVerifier
from tests.analytics.conftest import event_bytes, wait_until
from tests.support.servers import LiveServer

ROUTES = [
    ("GET", "/broker/topics"),
    ("GET", "/broker/topics/patient/partitions/0/messages"),
    ("GET", "/broker/consumer-groups"),
    ("GET", "/broker/dead-letters"),
    ("DELETE", "/broker/dead-letters"),
    ("POST", "/broker/dead-letters/redrive"),
    ("POST", "/broker/dead-letters/1/redrive"),
    ("DELETE", "/broker/dead-letters/1"),
]


def desk_for(bootstrap: str, database: Database, topic: str, group: str) -> BrokerDesk:
    return BrokerDesk(
        view=KafkaBrokerView(bootstrap, timeout_ms=3000),
        dead_letters=SqlDeadLetterReader(database),
        unit_of_work=lambda: SqlDeadLetterUnitOfWork(database),
        topic=topic,
        group=group,
    )


@pytest.fixture
def admin(signing_key) -> dict[str, str]:
    return {"Authorization": f"Bearer {signing_key.mint(role='ADMIN', sub='ops@example.com')}"}


@pytest.fixture
def broker_api(
    kafka_bootstrap: str, database: Database, verifier: TokenVerifier, topics, start_consumer
) -> Iterator[tuple[LiveServer, BrokerDesk]]:
    consumer = start_consumer()
    desk = desk_for(kafka_bootstrap, database, topics[0], consumer.loop.group_id)
    metrics, _sampler = broker_metrics(desk)
    app = create_app(database, verifier, broker=desk, metrics=metrics, validate_responses=True)
    with LiveServer(app) as server:
        yield server, desk


def read_everything(bootstrap: str, topic: str) -> dict[int, list[int]]:
    """What a separate consumer (no group) reads from the beginning: the offsets of each partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=[bootstrap], enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: dict[int, list[int]] = {tp.partition: [] for tp in tps}
        idle = 0
        while idle < 3:
            batch = consumer.poll(timeout_ms=500)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                seen[tp.partition].extend(r.offset for r in records)
        return seen
    finally:
        consumer.close(autocommit=False)


def summary(api: LiveServer, headers: dict[str, str]) -> dict:
    return httpx.get(f"{api.url}/analytics/summary", headers=headers, timeout=10).json()


def test_offsets_and_lag_agree_with_a_separate_consumer(
    broker_api, producer, topics, kafka_bootstrap, admin
) -> None:
    server, _desk = broker_api
    n = 23
    for _ in range(n):
        producer.send(topics[0], key=str(uuid.uuid4()).encode(), value=event_bytes("created"))
    producer.flush(timeout=10)
    wait_until(lambda: summary(server, admin)["patientsCreated"] == n, what=f"{n} events counted")

    seen = read_everything(kafka_bootstrap, topics[0])
    assert sum(len(v) for v in seen.values()) == n
    listed = httpx.get(f"{server.url}/broker/topics", headers=admin, timeout=10).json()
    assert listed["reachable"] is True and listed["error"] is None
    (topic,) = (t for t in listed["topics"] if t["name"] == topics[0])
    assert {p["partition"]: (p["firstOffset"], p["nextOffset"]) for p in topic["partitions"]} == {
        partition: (0, (max(offsets) + 1) if offsets else 0) for partition, offsets in seen.items()
    }
    assert sum(p["messages"] for p in topic["partitions"]) == n
    assert topics[1] in {t["name"] for t in listed["topics"]}

    def lag() -> dict:
        return httpx.get(f"{server.url}/broker/consumer-groups", headers=admin, timeout=10).json()

    wait_until(lambda: lag()["groups"][0]["totalLag"] == 0, what="lag 0 once everything is committed")
    group = lag()["groups"][0]
    assert group["topic"] == topics[0]
    for p in group["partitions"]:
        expected_next = (max(seen[p["partition"]]) + 1) if seen[p["partition"]] else 0
        assert p["nextOffset"] == expected_next
        assert p["committedOffset"] in (None, expected_next) and p["lag"] == 0
        assert p["committedOffset"] == expected_next or not seen[p["partition"]]


def test_lag_counts_what_the_group_has_not_committed(kafka_bootstrap, database, topics, producer) -> None:
    for _ in range(5):
        producer.send(topics[0], key=b"k", value=event_bytes("created"), partition=1)
    producer.flush(timeout=10)
    view = KafkaBrokerView(kafka_bootstrap)
    lags = {p.partition: p for p in view.group_lag("nobody-reads-this", topics[0])}
    assert lags[1].committed is None and lags[1].lag == 5 and lags[0].lag == 0


def test_the_newest_messages_of_a_partition_decoded_and_paged(broker_api, producer, topics, admin) -> None:
    server, _desk = broker_api
    patient = str(uuid.uuid4())
    for i in range(5):
        producer.send(
            topics[0],
            key=patient.encode(),
            value=event_bytes("created", patient_id=patient, name=f"Name {i}"),
            partition=2,
            headers=[("traceparent", f"00-{'1' * 32}-{'2' * 16}-01".encode())],
        )
    producer.flush(timeout=10)
    url = f"{server.url}/broker/topics/{topics[0]}/partitions/2/messages"
    page = httpx.get(url, params={"limit": 3}, headers=admin, timeout=10).json()
    assert page["nextOffset"] == 5 and page["firstOffset"] == 0
    assert [m["offset"] for m in page["messages"]] == [4, 3, 2]
    newest = page["messages"][0]
    assert newest["key"] == patient
    assert newest["event"]["name"] == "Name 4" and newest["event"]["patientId"] == patient
    assert newest["event"]["eventType"] == "PATIENT_CREATED"
    assert newest["error"] is None
    assert newest["headers"] == [{"name": "traceparent", "value": f"00-{'1' * 32}-{'2' * 16}-01"}]
    assert abs(datetime.fromisoformat(newest["timestamp"]) - datetime.now(UTC)).total_seconds() < 120
    older = httpx.get(
        url, params={"limit": 3, "before": page["olderBefore"]}, headers=admin, timeout=10
    ).json()
    assert [m["offset"] for m in older["messages"]] == [1, 0]
    assert older["olderBefore"] is None
    missing = httpx.get(
        f"{server.url}/broker/topics/{topics[0]}/partitions/99/messages", headers=admin, timeout=10
    )
    assert missing.status_code == 404


def test_garbage_is_parked_and_a_fixed_letter_redriven_is_counted_once(
    broker_api, producer, topics, database, admin, caplog
) -> None:
    server, _desk = broker_api
    producer.send(topics[0], key=b"bad", value=b"\xff\xfe not protobuf")
    producer.flush(timeout=10)

    def letters() -> dict:
        return httpx.get(f"{server.url}/broker/dead-letters", headers=admin, timeout=10).json()

    wait_until(lambda: letters()["total"] == 1, what="the garbage parked")
    (garbage,) = letters()["items"]
    assert garbage["topic"] == topics[0] and garbage["key"] == "bad" and garbage["reason"] == "decode error"
    assert garbage["parkedAt"].endswith("Z")

    # A valid event parked by an older analytics that did not know its type, parked twice (two offsets).
    event_id = str(uuid.uuid4())
    fixed = event_bytes("created", event_id=event_id)
    with database.transaction() as session:
        for offset in (1000, 1001):
            session.execute(
                sa.insert(dead_letter).values(
                    topic=topics[0],
                    partition=0,
                    offset=offset,
                    key=b"k",
                    payload=fixed,
                    error="unknown event_type 1",
                    parked_at=datetime.now(UTC),
                )
            )
    items = letters()["items"]
    assert [i["reason"] for i in items] == ["decode error", "unknown type", "unknown type"]
    before = summary(server, admin)["patientsCreated"]
    caplog.set_level(logging.INFO, logger="pm.analytics.audit")
    redrive = httpx.post(
        f"{server.url}/broker/dead-letters/{items[1]['id']}/redrive", headers=admin, timeout=10
    )
    assert redrive.status_code == 200
    assert redrive.json() == {"recorded": 1, "duplicates": 0, "stillParked": 0, "missing": 0}
    assert summary(server, admin)["patientsCreated"] == before + 1
    again = httpx.post(
        f"{server.url}/broker/dead-letters/{items[1]['id']}/redrive", headers=admin, timeout=10
    )
    assert again.status_code == 404
    everything = httpx.post(f"{server.url}/broker/dead-letters/redrive", headers=admin, timeout=10).json()
    assert everything == {"recorded": 0, "duplicates": 1, "stillParked": 1, "missing": 0}
    assert summary(server, admin)["patientsCreated"] == before + 1
    assert [i["id"] for i in letters()["items"]] == [garbage["id"]]
    discarded = httpx.delete(f"{server.url}/broker/dead-letters/{garbage['id']}", headers=admin, timeout=10)
    assert discarded.status_code == 204
    assert letters() == {"total": 0, "items": []}
    audited = [r for r in caplog.records if r.name == "pm.analytics.audit"]
    assert [(r.action, r.actor) for r in audited] == [
        ("redrive", "ops@example.com"),
        ("redrive", "ops@example.com"),
        ("redrive", "ops@example.com"),
        ("discard", "ops@example.com"),
    ]


def test_metrics_show_lag_per_partition_and_parked_letters(
    broker_api, producer, topics, database, admin
) -> None:
    server, desk = broker_api
    producer.send(topics[0], key=b"bad", value=b"garbage")
    producer.flush(timeout=10)
    wait_until(lambda: desk.dead_letters.count() == 1, what="the garbage parked")
    metrics, sampler = broker_metrics(desk)
    sampler.sample()
    text = metrics.render().decode()
    assert "pm_dead_letters_parked 1.0" in text
    assert "pm_broker_reachable 1.0" in text
    partitions = Counter(
        line.split('partition="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("pm_consumer_lag{")
    )
    assert set(partitions) == {"0", "1", "2"}


def test_a_stopped_broker_is_reported_not_failed(database, verifier, admin) -> None:
    broker = Broker().start()
    desk = desk_for(broker.bootstrap, database, "patient", "analytics-service")
    broker.stop()
    with LiveServer(create_app(database, verifier, broker=desk, validate_responses=True)) as server:
        topics = httpx.get(f"{server.url}/broker/topics", headers=admin, timeout=10)
        assert topics.status_code == 200
        assert topics.json()["reachable"] is False and "cannot be reached" in topics.json()["error"]
        groups = httpx.get(f"{server.url}/broker/consumer-groups", headers=admin, timeout=10).json()
        assert groups["reachable"] is False and groups["groups"] == []
        page = httpx.get(
            f"{server.url}/broker/topics/patient/partitions/0/messages", headers=admin, timeout=10
        )
        assert page.status_code == 503 and page.headers["content-type"] == "application/problem+json"
        assert httpx.get(f"{server.url}/broker/dead-letters", headers=admin, timeout=10).status_code == 200


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_user_gets_403_on_every_broker_route(
    database, verifier, signing_key, kafka_bootstrap, method, path
) -> None:
    desk = desk_for(kafka_bootstrap, database, "patient", "analytics-service")
    user = {"Authorization": f"Bearer {signing_key.mint(role='USER')}"}
    with LiveServer(create_app(database, verifier, broker=desk, validate_responses=True)) as server:
        answer = httpx.request(method, f"{server.url}{path}", headers=user, timeout=10)
        assert answer.status_code == 403
        assert answer.headers["content-type"] == "application/problem+json"
        assert httpx.request(method, f"{server.url}{path}", timeout=10).status_code == 401
