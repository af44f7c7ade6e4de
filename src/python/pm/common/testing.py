"""Real infrastructure for tests: a PostgreSQL database per test process and a Kafka-protocol broker.

Use from a conftest.py: `from pm.common.testing import postgres_url, kafka_bootstrap  # noqa: F401`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pm.common.broker import Broker, free_port, tansu_binary, wait_for_port  # noqa: F401 - re-exported

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def create_database(admin_url: str, name: str) -> str:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


class PostgresDatabases:
    """Creates uniquely named databases for one test process (Pants' slot keeps processes apart)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        slot = os.environ.get("PM_TEST_SLOT", "0")
        self.prefix = f"pm_test_{slot}_{os.getpid()}"
        self.created: list[str] = []

    def new(self, label: str = "db") -> str:
        name = f"{self.prefix}_{label}_{uuid.uuid4().hex[:6]}"
        url = create_database(self.admin_url, name)
        self.created.append(name)
        return url

    def drop_all(self) -> None:
        for name in self.created:
            drop_database(self.admin_url, name)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(os.environ.get("PM_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))
    try:
        databases.new("probe")
    except Exception as exc:  # noqa: BLE001 - a missing server is a setup error, not a skipped test
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


class LiveServer:
    """An ASGI app served by uvicorn on a real loopback socket, in a background thread.

    `trusted_proxies` as for `pm.common.web.serve`: by default no peer's X-Forwarded-For is believed.
    """

    def __init__(self, app: Any, *, trusted_proxies: Sequence[str] = ()) -> None:
        import uvicorn

        from pm.common.web import proxy_settings

        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            **proxy_settings(trusted_proxies),
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self._sock]},
            daemon=True,
            name=f"live-server-{self.port}",
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()
