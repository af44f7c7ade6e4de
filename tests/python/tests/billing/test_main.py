"""The billing process: configuration errors, migrate, serve, and a graceful stop on SIGTERM."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy import inspect

from pm.billing.main import main
from pm.common.broker import free_port, free_ports, wait_for_port
from pm.common.db import Database
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc


def billing_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), PM_BILLING_DATABASE_URL=database_url, **extra)
    return env


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_BILLING_GRPC_PORT", "ninety"),
        ("PM_BILLING_PORT", "70000"),
        ("PM_BILLING_DATABASE_URL", "mysql://db/billing"),
        ("PM_MIGRATE_ON_START", "maybe"),
    ],
)
def test_a_bad_setting_stops_start_with_one_line_naming_it(monkeypatch, capsys, variable, value) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert variable in err


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({}, "PM_BILLING_SERVICE_TOKEN"),
        (
            {"PM_BILLING_SERVICE_TOKEN": "s" * 32, "PM_BILLING_GRPC_REFLECTION": "true"},
            "PM_BILLING_GRPC_REFLECTION",
        ),
    ],
)
def test_production_without_a_credential_or_with_reflection_stops_with_one_line(
    monkeypatch, capsys, settings: dict[str, str], variable: str
) -> None:
    monkeypatch.setenv("PM_ENV", "production")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"billing: configuration error: {variable}")


def test_migrate_command_creates_the_schema_on_sqlite_and_exits(monkeypatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    monkeypatch.setenv("PM_BILLING_DATABASE_URL", url)
    main(["migrate"])
    db = Database(url)
    assert "billing_account" in inspect(db.engine).get_table_names()
    db.dispose()


def test_unreachable_database_stops_migrate_with_one_line(monkeypatch, capsys) -> None:
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/billing"
    monkeypatch.setenv("PM_BILLING_DATABASE_URL", url)
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "PM_BILLING_DATABASE_URL" in err
    assert "Traceback" not in err


def test_serves_grpc_and_http_then_stops_within_10s_on_sigterm(postgres_url: str) -> None:
    http_port, grpc_port = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.billing.main"],
        env=billing_env(postgres_url, PM_BILLING_PORT=str(http_port), PM_BILLING_GRPC_PORT=str(grpc_port)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(http_port, timeout=30)
        assert httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=5).json()["status"] == "UP"
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            request = billing_pb2.CreateBillingAccountRequest(
                patient_id=str(uuid.uuid4()), name="Jane", email="jane@example.com"
            )
            assert stub.CreateBillingAccount(request, timeout=10).status == "ACTIVE"
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=10)
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    assert process.returncode == 0
    assert '"msg": "gRPC stopped"' in stderr
    assert "Traceback" not in stderr
