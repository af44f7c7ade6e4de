"""Auth test fixtures: key files, settings from an environment mapping, live servers on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from pm.auth.adapters.keys import generate_rsa_pem, load_key_set
from pm.auth.bootstrap import create_app, migrate_and_seed
from pm.auth.config import Settings
from pm.common.config import Env
from pm.common.db import Database
from tests.support.servers import LiveServer

DEMO = {"email": "testuser@test.com", "password": "password123"}
FAST_ROUNDS = "4"


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two RSA keys (old, new) and an Ed25519 key, as PEM files."""
    directory = tmp_path_factory.mktemp("keys")
    (directory / "old.pem").write_bytes(generate_rsa_pem())
    (directory / "new.pem").write_bytes(generate_rsa_pem())
    ed = ed25519.Ed25519PrivateKey.generate()
    (directory / "ed25519.pem").write_bytes(
        ed.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return directory


def make_settings(tmp_path: Path, database_url: str, **overrides: str) -> Settings:
    environ = {
        "PM_DATA_DIR": str(tmp_path / "data"),
        "PM_AUTH_DATABASE_URL": database_url,
        "PM_AUTH_BCRYPT_ROUNDS": FAST_ROUNDS,
        "PM_VALIDATE_RESPONSES": "1",
    }
    environ.update(overrides)
    return Settings.from_env(Env(environ))


AuthServer = Callable[..., str]


@pytest.fixture
def auth_server(tmp_path: Path, postgres_url: str, key_dir: Path) -> Iterator[AuthServer]:
    """Start auth servers on the test's PostgreSQL database; `auth_server(**PM_vars) -> base URL`.

    Every server shares the database (like worker processes of one deployment); the default signing key
    is `old.pem`; by default they believe X-Forwarded-For from loopback, as behind a gateway on the host.
    """
    with ExitStack() as stack:

        def start(**overrides: str) -> str:
            overrides.setdefault("PM_JWT_PRIVATE_KEY_FILE", str(key_dir / "old.pem"))
            overrides.setdefault("PM_TRUSTED_PROXIES", "127.0.0.1")
            settings = make_settings(tmp_path, postgres_url, **overrides)
            database = Database(settings.database_url)
            stack.callback(database.dispose)
            migrate_and_seed(settings, database)
            app = create_app(settings, load_key_set(settings), database)
            revocations = app.state["revocations"]
            revocations.start()
            stack.callback(revocations.stop)
            return stack.enter_context(LiveServer(app, trusted_proxies=settings.trusted_proxies)).url

        yield start


@pytest.fixture
def auth_url(auth_server: AuthServer) -> str:
    return auth_server()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def login(http: httpx.Client, base: str, email: str, password: str, **headers: str) -> httpx.Response:
    return http.post(f"{base}/login", json={"email": email, "password": password}, headers=headers)


def token_for(
    http: httpx.Client, base: str, email: str = DEMO["email"], password: str = DEMO["password"]
) -> str:
    response = login(http, base, email, password)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
