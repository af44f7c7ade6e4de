from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.reliability.harness import System, login, start_system
from tests.support.databases import PostgresDatabases


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    """Auth signs with this key, so the tests can mint otherwise-valid tokens that differ in one claim."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(signing_key: rsa.RSAPrivateKey) -> str:
    return signing_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def system(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory, private_pem: str
) -> Iterator[System]:
    running = start_system(
        postgres_databases,
        tmp_path_factory.mktemp("pm-data"),
        {"PM_JWT_PRIVATE_KEY": private_pem, "PM_AUTH_MAX_FAILURES_PER_EMAIL": "3"},
    )
    yield running
    running.stack.stop()


@pytest.fixture(scope="module")
def token(system: System) -> str:
    return login(system.gateway + "/auth")
