"""Fixtures every area shares: a real PostgreSQL database per test, a real Kafka-protocol broker per run."""

import os
from collections.abc import Iterator

import pytest

from pm.common.broker import Broker
from pm.common.pgadmin import DEFAULT_ADMIN_URL
from tests.support.databases import PostgresDatabases


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long test (fault injection, whole system); PM_SKIP_SLOW=1 skips"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PM_SKIP_SLOW") != "1":
        return
    skip = pytest.mark.skip(reason="PM_SKIP_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(os.environ.get("PM_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))
    try:
        databases.new("probe")
    except Exception as exc:  # a missing server is a setup error, not a skipped test
        pytest.fail(f"PostgreSQL is not reachable at {databases.admin_url}: {exc}", pytrace=False)
    yield databases
    databases.drop_all()


@pytest.fixture
def postgres_url(postgres_databases: PostgresDatabases) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_databases.new()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    broker = Broker().start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap
