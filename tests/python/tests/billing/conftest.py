from collections.abc import Iterator

import grpc
import pytest

from pm.billing.bootstrap import MIGRATIONS, BillingGrpcServer, create_server
from pm.billing.config import Settings
from pm.common.config import Env
from pm.common.db import Database, migrate
from pm.common.web import Metrics
from pm.proto.billing.v1 import billing_pb2_grpc


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    migrate(postgres_url, MIGRATIONS)
    db = Database(postgres_url)
    yield db
    db.dispose()


def settings(**env: str) -> Settings:
    """Billing's settings for a test: the defaults, with `PM_*` variables given as keywords."""
    return Settings.from_env(Env(env))


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("billing")


@pytest.fixture
def billing(database: Database, metrics: Metrics) -> Iterator[BillingGrpcServer]:
    server, _port = create_server(settings(), database, metrics=metrics, address="127.0.0.1:0")
    server.start()
    yield server
    server.stop(grace=1)


@pytest.fixture
def channel(billing: BillingGrpcServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{billing.port}") as chan:
        grpc.channel_ready_future(chan).result(timeout=5)
        yield chan


@pytest.fixture
def stub(channel: grpc.Channel) -> billing_pb2_grpc.BillingServiceStub:
    return billing_pb2_grpc.BillingServiceStub(channel)
