"""Real infrastructure for the patient service: PostgreSQL, the real billing gRPC server, a broker, HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer, TopicPartition

from pm.billing.bootstrap import MIGRATIONS as BILLING_MIGRATIONS
from pm.billing.bootstrap import BillingGrpcServer, create_server
from pm.billing.config import Settings as BillingSettings
from pm.common.broker import Broker, free_port
from pm.common.config import Env
from pm.common.db import Database, migrate
from pm.common.kafka import ensure_topics
from pm.common.service import Service
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.patient import bootstrap as wiring
from pm.patient.adapters.billing import GrpcBilling
from pm.patient.adapters.relay import OutboxRelay, RelaySettings
from pm.patient.bootstrap import MIGRATIONS
from pm.patient.config import Settings
from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.support.databases import PostgresDatabases
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

KID = "test-key"
ADMIN = "admin@example.com"
USER = "user@example.com"


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey(KID)


@pytest.fixture(scope="session")
def mint(signing_key: SigningKey) -> Callable[..., str]:
    def mint_token(sub: str = ADMIN, role: str = "ADMIN", ttl: int = 600) -> str:
        return signing_key.mint(sub=sub, role=role, exp=int(time.time()) + ttl)

    return mint_token


@pytest.fixture(scope="session")
def verifier(signing_key: SigningKey) -> TokenVerifier:
    return TokenVerifier(StaticKeys({KID: signing_key.public}), issuer=ISSUER)


@dataclass
class BillingServer:
    server: BillingGrpcServer
    port: int
    database: Database

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def billing_server(postgres_databases: PostgresDatabases) -> Iterator[BillingServer]:
    """One real billing server for the session: patient ids are random, so tests do not collide."""
    url = postgres_databases.new("billing")
    migrate(url, BILLING_MIGRATIONS)
    database = Database(url)
    server, port = create_server(BillingSettings.from_env(Env({})), database, address="127.0.0.1:0")
    server.start()
    yield BillingServer(server, port, database)
    server.stop(0)
    database.dispose()


@pytest.fixture
def patient_db(postgres_url: str) -> Iterator[Database]:
    migrate(postgres_url, MIGRATIONS)
    database = Database(postgres_url)
    yield database
    database.dispose()


@pytest.fixture
def topic() -> str:
    return f"patient-{uuid.uuid4().hex[:10]}"


def settings_for(
    database_url: str, bootstrap: str, topic: str, billing_target: str, **extra_env: str
) -> Settings:
    return Settings.from_env(
        Env(
            {
                "PM_PATIENT_DATABASE_URL": database_url,
                "PM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "PM_PATIENT_TOPIC": topic,
                "PM_BILLING_GRPC_TARGET": billing_target,
                "PM_VALIDATE_RESPONSES": "1",
                **extra_env,
            }
        )
    )


def relay_settings(bootstrap: str, topic: str, **overrides: Any) -> RelaySettings:
    # Short waits so that tests observe recovery within seconds.
    options: dict[str, Any] = {
        "poll_interval_seconds": 0.1,
        "initial_backoff_seconds": 0.1,
        "max_backoff_seconds": 1.0,
        "ack_timeout_seconds": 5.0,
    }
    options.update(overrides)
    return RelaySettings(bootstrap_servers=bootstrap, topic=topic, **options)


@dataclass
class Running:
    app: Service
    url: str
    topic: str
    bootstrap: str
    database: Database

    @property
    def relay(self) -> OutboxRelay:
        return next(w for w in self.app.workers if isinstance(w, OutboxRelay))


def start_service(
    database: Database,
    verifier: TokenVerifier,
    billing_target: str,
    bootstrap: str,
    topic: str,
    extra_env: dict[str, str] | None = None,
    **relay_overrides: Any,
) -> Iterator[Running]:
    settings = settings_for(database.url, bootstrap, topic, billing_target, **(extra_env or {}))
    app = wiring.bootstrap(
        settings,
        database=database,
        billing=GrpcBilling(billing_target, deadline_seconds=1.0, attempts=3, backoff_seconds=0.05),
        verifier=verifier,
        relay_settings=relay_settings(bootstrap, topic, **relay_overrides),
    )
    with LiveServer(app.app) as server:
        app.start()
        try:
            yield Running(app, server.url, topic, bootstrap, database)
        finally:
            app.stop()


@pytest.fixture
def service(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
) -> Iterator[Running]:
    yield from start_service(patient_db, verifier, billing_server.target, kafka_bootstrap, topic)


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker of the test's own, which it may stop and start."""
    broker = Broker().start()
    yield broker
    broker.stop()


OwnBrokerService = Callable[[], AbstractContextManager[httpx.Client]]


@pytest.fixture
def on_own_broker(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    own_broker: Broker,
    topic: str,
    mint: Callable[..., str],
) -> OwnBrokerService:
    """`with on_own_broker() as client:` the service over `own_broker`, and an ADMIN client of it."""

    @contextmanager
    def started() -> Iterator[httpx.Client]:
        for running in start_service(
            patient_db, verifier, billing_server.target, own_broker.bootstrap, topic
        ):
            with httpx.Client(
                base_url=running.url, timeout=15, headers={"Authorization": f"Bearer {mint()}"}
            ) as client:
                yield client

    return started


@pytest.fixture
def client(service: Running, mint: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=service.url, timeout=10.0, headers={"Authorization": f"Bearer {mint()}"}
    ) as http:
        yield http


def unreachable_target() -> str:
    """A loopback address where nothing listens: connections are refused at once."""
    return f"127.0.0.1:{free_port()}"


def new_patient(**overrides: Any) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    body = {
        "name": f"Test Patient {suffix}",
        "email": f"test.{suffix}@example.com",
        "address": "1 Test Street, Springfield",
        "dateOfBirth": "1990-01-02",
        "registeredDate": "2024-05-06",
    }
    body.update(overrides)
    return body


def read_events(bootstrap: str, topic: str, *, expect: int, timeout: float = 20.0) -> list[Any]:
    """Every record on `topic` from the beginning, once at least `expect` arrived (or the time is up).

    After `expect` records it keeps reading a little longer, so that duplicates would be seen too.
    """
    ensure_topics(bootstrap, [topic])
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
        bootstrap_timeout_ms=10000,
    )
    try:
        deadline = time.monotonic() + 10
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or [])])
        consumer.seek_to_beginning()
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            if len(records) >= expect:
                settle_until = settle_until or time.monotonic() + 0.5
                if time.monotonic() >= settle_until:
                    break
        return records
    finally:
        consumer.close()


def decode(record: Any) -> pb.PatientEvent:
    event = pb.PatientEvent()
    event.ParseFromString(record.value)
    return event
