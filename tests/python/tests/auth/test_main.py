"""The service as a process: `python -m pm.auth.main [serve|migrate]`, config errors, SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pm.auth.adapters.keys import DEV_KEY_NAME, generate_rsa_pem
from pm.common.broker import free_port
from tests.auth.conftest import DEMO


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    environ.update(
        PYTHONPATH=os.pathsep.join(sys.path),
        PM_DATA_DIR=str(tmp_path / "data"),
        PM_AUTH_BCRYPT_ROUNDS="4",
        **extra,
    )
    return environ


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pm.auth.main", *args],
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_production_key_stops_the_service_with_one_line(tmp_path: Path) -> None:
    result = _run(tmp_path, PM_ENV="production")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "Warning" not in line and line.strip()]
    assert lines[-1].startswith("auth: configuration error: PM_JWT_PRIVATE_KEY_FILE")
    assert "Traceback" not in result.stderr


def test_demo_user_switched_on_in_production_stops_the_service_with_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(generate_rsa_pem())
    result = _run(
        tmp_path, PM_ENV="production", PM_JWT_PRIVATE_KEY_FILE=str(key), PM_AUTH_SEED_DEMO_USER="true"
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "Warning" not in line and line.strip()]
    assert lines == [
        "auth: configuration error: PM_AUTH_SEED_DEMO_USER must be off when PM_ENV=production "
        "(it creates a known ADMIN)"
    ]


def test_production_migrate_creates_no_demo_user(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(generate_rsa_pem())
    result = _run(tmp_path, "migrate", PM_ENV="production", PM_JWT_PRIVATE_KEY_FILE=str(key))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "auth.db") as conn:
        assert conn.execute("SELECT email FROM users").fetchall() == []
    assert not (tmp_path / "data" / DEV_KEY_NAME).exists()


def test_unreachable_database_is_reported_without_a_traceback(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/auth"
    result = _run(tmp_path, "migrate", PM_AUTH_DATABASE_URL=url)
    assert result.returncode == 1
    assert "database unavailable" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_twice_on_sqlite_seeds_the_demo_user_once(tmp_path: Path) -> None:
    for _ in range(2):
        result = _run(tmp_path, "migrate")
        assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "auth.db") as conn:
        assert conn.execute("SELECT email, role FROM users").fetchall() == [("testuser@test.com", "ADMIN")]


def test_serve_answers_then_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.auth.main"],
        env=_env(tmp_path, PM_AUTH_PORT=str(port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # A cold start under CI load (interpreter, migrations, first health round) once took over 30 s.
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "auth did not become healthy"
            time.sleep(0.1)
        response = httpx.post(f"{base}/login", json=DEMO, timeout=10)
        assert response.status_code == 200
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        logs = process.stderr.read() if process.stderr else ""
        assert "generated a development JWT signing key" in logs
        assert '"msg": "stopped"' in logs
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


@pytest.mark.parametrize("argument", ["serve-now", "--bogus"])
def test_unknown_command_is_refused(tmp_path: Path, argument: str) -> None:
    result = _run(tmp_path, argument)
    assert result.returncode == 2
    assert "usage" in result.stderr
