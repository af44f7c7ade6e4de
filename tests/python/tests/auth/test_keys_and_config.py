"""Settings and signing keys: dev generation, production refusal, rotation inputs, bad files."""

from __future__ import annotations

import logging
import stat
import uuid
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from pm.auth.adapters.keys import DEV_KEY_NAME, load_key_set
from pm.auth.adapters.tokens import JwtIssuer
from pm.auth.bootstrap import utc_now
from pm.auth.config import Settings
from pm.auth.domain.model import Role
from pm.common.config import ConfigError, Env
from pm.common.tokens import StaticKeys, TokenVerifier


def settings(tmp_path: Path, **environ: str) -> Settings:
    return Settings.from_env(Env({"PM_DATA_DIR": str(tmp_path), **environ}))


def test_defaults_follow_the_pinned_interface(tmp_path: Path) -> None:
    s = settings(tmp_path)
    assert (s.host, s.port, s.jwt_issuer, s.token_ttl_seconds) == ("127.0.0.1", 4005, "pm-auth", 900)
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'auth.db'}"
    assert (s.bcrypt_rounds, s.max_failures_per_email, s.max_failures_per_client) == (12, 5, 20)
    # Issue 12: delays instead of a five-minute lock; a day's window keeps the longest delay meaningful.
    assert (s.failure_window_seconds, s.throttle_base_seconds, s.throttle_max_seconds) == (86400, 1.0, 900.0)
    assert s.migrate_on_start and s.seed_demo_user


def test_production_seeds_no_demo_user_unless_told_and_dev_does(tmp_path: Path) -> None:
    assert not settings(tmp_path, PM_ENV="production", PM_JWT_PRIVATE_KEY="pem").seed_demo_user
    assert settings(tmp_path, PM_ENV="dev").seed_demo_user
    assert not settings(tmp_path, PM_AUTH_SEED_DEMO_USER="off").seed_demo_user


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"PM_ENV": "production"}, "PM_JWT_PRIVATE_KEY_FILE"),
        ({"PM_ENV": "staging"}, "PM_ENV"),
        (
            {"PM_ENV": "production", "PM_JWT_PRIVATE_KEY": "pem", "PM_AUTH_SEED_DEMO_USER": "on"},
            "PM_AUTH_SEED_DEMO_USER must be off when PM_ENV=production",
        ),
        ({"PM_AUTH_BCRYPT_ROUNDS": "3"}, "PM_AUTH_BCRYPT_ROUNDS"),
        ({"PM_AUTH_PORT": "http"}, "PM_AUTH_PORT"),
        ({"PM_JWT_TTL_SECONDS": "10"}, "PM_JWT_TTL_SECONDS"),
        ({"PM_AUTH_MAX_FAILURES_PER_EMAIL": "0"}, "PM_AUTH_MAX_FAILURES_PER_EMAIL"),
        ({"PM_AUTH_DATABASE_URL": "mysql://x"}, "PM_AUTH_DATABASE_URL"),
        ({"PM_AUTH_THROTTLE_BASE_SECONDS": "0"}, "PM_AUTH_THROTTLE_BASE_SECONDS"),
        (
            {"PM_AUTH_THROTTLE_BASE_SECONDS": "10", "PM_AUTH_THROTTLE_MAX_SECONDS": "5"},
            "PM_AUTH_THROTTLE_MAX",
        ),
        ({"PM_JWT_PRIVATE_KEY_FILE": "/a.pem", "PM_JWT_PRIVATE_KEY": "pem"}, "PM_JWT_PRIVATE_KEY"),
    ],
)
def test_bad_settings_name_the_variable(tmp_path: Path, environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        settings(tmp_path, **environ)


def test_dev_generates_a_private_key_once_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = load_key_set(settings(tmp_path))
    key_file = tmp_path / DEV_KEY_NAME
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert any("generated a development JWT signing key" in r.getMessage() for r in caplog.records)
    second = load_key_set(settings(tmp_path))
    assert second.signing.kid == first.signing.kid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"not a key", "not an unencrypted PEM private key"),
    ],
)
def test_unusable_key_file_is_a_config_error(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"PM_JWT_PRIVATE_KEY_FILE.*{message}"):
        load_key_set(settings(tmp_path, PM_ENV="production", PM_JWT_PRIVATE_KEY_FILE=str(path)))


def test_weak_rsa_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(  # noqa: S505
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigError, match="at least 2048 bits"):
        load_key_set(settings(tmp_path, PM_JWT_PRIVATE_KEY=weak.decode()))


def test_missing_previous_key_file_is_a_config_error(tmp_path: Path, key_dir: Path) -> None:
    with pytest.raises(ConfigError, match="PM_JWT_PREVIOUS_PUBLIC_KEY_FILES"):
        load_key_set(
            settings(
                tmp_path,
                PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "new.pem"),
                PM_JWT_PREVIOUS_PUBLIC_KEY_FILES=f"{key_dir / 'old.pem'}, {tmp_path / 'gone.pem'}",
            )
        )


def test_inline_pem_key_signs_tokens_the_shared_verifier_accepts(tmp_path: Path, key_dir: Path) -> None:
    keys = load_key_set(settings(tmp_path, PM_JWT_PRIVATE_KEY=(key_dir / "old.pem").read_text()))
    issued = JwtIssuer(keys.signing, issuer="pm-auth", ttl_seconds=60, clock=utc_now).issue(
        "a@b.com", Role.USER, uuid.uuid4(), utc_now() + timedelta(hours=1)
    )
    claims = TokenVerifier(StaticKeys(keys.public_keys()), issuer="pm-auth").verify(issued.token)
    assert claims["sub"] == "a@b.com" and claims["role"] == "USER"
    assert claims["exp"] - claims["iat"] == 60 == issued.expires_in
    assert jwt.get_unverified_header(issued.token)["kid"] == keys.signing.kid
