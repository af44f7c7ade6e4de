from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import System, keep_log, login, start_system
from tests.support.databases import PostgresDatabases


@pytest.fixture(scope="module")
def system(
    request: pytest.FixtureRequest,
    postgres_databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    data_dir = tmp_path_factory.mktemp("pm-data")
    running = start_system(postgres_databases, data_dir)
    yield running
    running.stack.stop()
    broker_log = data_dir / "broker.log"
    tail = broker_log.read_text(errors="replace")[-20000:] if broker_log.exists() else ""
    keep_log(request.module.__name__.rsplit(".", 1)[-1], running.log_text() + "\n--- broker.log ---\n" + tail)


@pytest.fixture(scope="module")
def token(system: System) -> str:
    return login(system.gateway + "/auth")
