"""The one-command system itself: embedded defaults, clean stop, clear refusal on a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pm.common.broker import free_ports
from tests.e2e.conftest import PORT_VARS

pytestmark = pytest.mark.slow


def devstack_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL")}
    env.pop("PM_KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(zip(PORT_VARS, map(str, free_ports(len(PORT_VARS))), strict=True))
    env["PM_DATA_DIR"] = str(data_dir)
    env["PM_AUTH_BCRYPT_ROUNDS"] = "6"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_embedded_defaults_reach_ready_and_sigterm_stops_everything(tmp_path: Path) -> None:
    env = devstack_env(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.devstack.up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line.rstrip())
        if line.startswith("READY ") or time.monotonic() > deadline:
            break
    assert lines and lines[-1] == f"READY http://127.0.0.1:{env['PM_GATEWAY_PORT']}", "\n".join(lines[-40:])
    assert any("testuser@test.com" in line for line in lines)
    # SQLite files under the data folder: no database server was needed.
    assert {p.name for p in (tmp_path / "data").glob("*.db")} >= {
        "auth.db",
        "patient.db",
        "billing.db",
        "analytics.db",
    }
    login = httpx.post(
        f"http://127.0.0.1:{env['PM_GATEWAY_PORT']}/auth/login",
        json={"email": "testuser@test.com", "password": "password123"},
        timeout=10,
    )
    assert login.status_code == 200

    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 6  # five services and the broker
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    assert time.monotonic() - started < 10
    assert process.returncode == 0
    gone, alive = psutil.wait_procs(children, timeout=2)
    assert not alive, [p.pid for p in alive]


def test_a_busy_port_is_named_and_nothing_starts(tmp_path: Path) -> None:
    env = devstack_env(tmp_path / "data")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["PM_PATIENT_PORT"])))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "pm.devstack.up"], env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 2
    assert f"port {env['PM_PATIENT_PORT']} (PM_PATIENT_PORT) is already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()
