"""The service as people run it: `python -m pm.patient.main`, settings, seed, health, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

import pm.patient.main  # noqa: F401 - run as a child process; the import makes Pants ship it
from pm.common.broker import free_port, free_ports
from pm.common.config import Env
from pm.common.db import Database
from pm.patient.adapters.relay import pending_count
from pm.patient.adapters.seed import demo_patients
from pm.patient.bootstrap import prepare_database
from pm.patient.config import Settings
from tests.patient.conftest import BillingServer


def child_env(**settings: str) -> dict[str, str]:
    """This process's environment and import path, plus `settings`."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **settings}


def run_main(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pm.patient.main", *args],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_bad_setting_stops_the_service_with_one_line_naming_it(tmp_path: Path) -> None:
    result = run_main("migrate", env={"PM_DATA_DIR": str(tmp_path), "PM_BILLING_GRPC_TARGET": "no-port"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "patient: configuration error: PM_BILLING_GRPC_TARGET must be host:port, got 'no-port'"
    ]


def test_production_without_billing_credential_stops_the_service_with_one_line(tmp_path: Path) -> None:
    result = run_main("migrate", env={"PM_DATA_DIR": str(tmp_path), "PM_ENV": "production"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "patient: configuration error: PM_BILLING_SERVICE_TOKEN (or PM_BILLING_GRPC_TLS_CLIENT_CERT_FILE) "
        "is required when PM_ENV=production"
    ]


def test_seed_loads_the_15_original_patients_once(postgres_url: str) -> None:
    assert prepare_database(Settings.from_env(Env({"PM_PATIENT_DATABASE_URL": postgres_url}))) == 15
    database = Database(postgres_url)
    try:
        with database.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, email FROM patients ORDER BY id")).all()
        assert [str(r.id) for r in rows][:2] == [
            "123e4567-e89b-12d3-a456-426614174000",
            "123e4567-e89b-12d3-a456-426614174001",
        ]
        assert {r.email for r in rows} >= {"john.doe@example.com", "isabella.walker@example.com"}
        assert len(rows) == 15 and pending_count(database) == 15  # their events wait in the outbox
        john = demo_patients()[0].id
        with database.transaction() as session:
            session.execute(sa.text("DELETE FROM patients WHERE id = :id"), {"id": john})

        assert prepare_database(Settings.from_env(Env({"PM_PATIENT_DATABASE_URL": postgres_url}))) == 0
        with database.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 14
    finally:
        database.dispose()


@pytest.mark.slow
def test_serve_migrates_reports_health_and_stops_on_sigterm(
    tmp_path: Path, billing_server: BillingServer, kafka_bootstrap: str
) -> None:
    port, nowhere = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.patient.main"],
        env=child_env(
            PM_DATA_DIR=str(tmp_path),
            PM_PATIENT_PORT=str(port),
            PM_BILLING_GRPC_TARGET=billing_server.target,
            PM_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            PM_PATIENT_TOPIC=f"patient-main-{port}",
            PM_JWKS_URL=f"http://127.0.0.1:{nowhere}/jwks.json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = None
        # A cold start under CI load (interpreter, migrations, first health round) once took over 30 s.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                if health.json()["components"]["relay"]["status"] == "UP":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert health is not None and health.status_code == 200, health and health.text
        body = health.json()
        assert body["status"] == "UP"
        assert {name: c["status"] for name, c in body["components"].items()} == {
            "database": "UP",
            "relay": "UP",
            "billing": "UP",
        }
        assert httpx.get(f"http://127.0.0.1:{port}/patients", timeout=5).status_code == 401

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 10
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    logs = process.stderr.read() if process.stderr else ""
    assert '"msg": "stopped"' in logs
    assert "Traceback" not in logs
    with Database(f"sqlite:///{tmp_path / 'patient.db'}").engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 15


def test_an_unreachable_database_stops_migrate_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://pm:secret@127.0.0.1:{free_port()}/patient"
    result = run_main("migrate", env={"PM_DATA_DIR": str(tmp_path), "PM_PATIENT_DATABASE_URL": url})
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("patient: cannot prepare the database at postgresql+psycopg2://pm:***@127.0.0.1")
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
