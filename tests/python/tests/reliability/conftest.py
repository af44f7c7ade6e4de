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
    running = start_system(postgres_databases, tmp_path_factory.mktemp("pm-data"))
    yield running
    running.stack.stop()
    keep_log(request.module.__name__.rsplit(".", 1)[-1], running.log_text())


@pytest.fixture(scope="module")
def token(system: System) -> str:
    return login(system.gateway + "/auth")
