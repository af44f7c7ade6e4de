import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import KafkaProducer

from pm.analytics.adapters.store import SqlUnitOfWork
from pm.analytics.bootstrap import MIGRATIONS, create_app
from pm.analytics.entrypoints.consumer import PatientEventConsumer
from pm.common.db import Database, migrate
from pm.common.kafka import ensure_topics, make_producer
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

TYPES = {
    "created": pb.PATIENT_CREATED,
    "updated": pb.PATIENT_UPDATED,
    "deleted": pb.PATIENT_DELETED,
    "purged": pb.PATIENT_PURGED,
}


def event_bytes(
    kind: str = "created",
    *,
    event_id: str | None = None,
    patient_id: str | None = None,
    occurred_at: datetime | None = None,
    registered_date: str = "",
    name: str = "Jane Smith",
    email: str = "jane.smith@example.com",
) -> bytes:
    stamp = Timestamp()
    stamp.FromDatetime(occurred_at or datetime.now(UTC))
    return pb.PatientEvent(
        event_id=event_id or str(uuid.uuid4()),
        event_type=TYPES[kind],
        occurred_at=stamp,
        patient_id=patient_id or str(uuid.uuid4()),
        name=name,
        email=email,
        actor="testuser@test.com",
        registered_date=registered_date,
    ).SerializeToString()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    migrate(postgres_url, MIGRATIONS)
    db = Database(postgres_url)
    yield db
    db.dispose()


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey("analytics-test", "RS256")


@pytest.fixture
def verifier(signing_key: SigningKey) -> TokenVerifier:
    return TokenVerifier(StaticKeys({signing_key.kid: signing_key.public}), issuer=ISSUER)


@pytest.fixture
def token(signing_key: SigningKey) -> str:
    return signing_key.mint()


@pytest.fixture
def topics(kafka_bootstrap: str) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    names = (f"patient-{suffix}", f"patient-{suffix}.dlq")
    ensure_topics(kafka_bootstrap, names)
    return names


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    made = make_producer(kafka_bootstrap, client_id="analytics-test")
    yield made
    made.close(timeout=5)


@pytest.fixture
def start_consumer(
    kafka_bootstrap: str, topics: tuple[str, str], database: Database
) -> Iterator[Callable[[], PatientEventConsumer]]:
    """Start consumers in one group on the test's topics; each is stopped at the end if still running."""
    group = f"analytics-{uuid.uuid4().hex[:8]}"
    started: list[PatientEventConsumer] = []

    def start() -> PatientEventConsumer:
        consumer = PatientEventConsumer(
            bootstrap_servers=kafka_bootstrap,
            topic=topics[0],
            dead_letter_topic=topics[1],
            group_id=group,
            unit_of_work=lambda: SqlUnitOfWork(database),
        )
        consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


@pytest.fixture
def api(database: Database, verifier: TokenVerifier) -> Iterator[LiveServer]:
    with LiveServer(create_app(database, verifier, validate_responses=True)) as server:
        yield server
