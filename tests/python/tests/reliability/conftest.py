from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.harness import System, login, start_system
from tests.support.databases import PostgresDatabases


@pytest.fixture(scope="module")
def system(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    running = start_system(postgres_databases, tmp_path_factory.mktemp("pm-data"))
    yield running
    running.stack.stop()


@pytest.fixture(scope="module")
def token(system: System) -> str:
    return login(system.gateway + "/auth")
