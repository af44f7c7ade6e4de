"""The whole system, started by the devstack on PostgreSQL, driven through the gateway only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pm.common.broker import free_ports
from tests.support.databases import PostgresDatabases

SERVICES_WITH_DATABASES = ("AUTH", "PATIENT", "BILLING", "ANALYTICS")
PORT_VARS = (
    "PM_GATEWAY_PORT",
    "PM_AUTH_PORT",
    "PM_PATIENT_PORT",
    "PM_BILLING_PORT",
    "PM_BILLING_GRPC_PORT",
    "PM_ANALYTICS_PORT",
    "PM_KAFKA_PORT",
)
READY_TIMEOUT = 120.0


@dataclass
class RunningSystem:
    process: subprocess.Popen[str]
    gateway: str
    env: dict[str, str]
    output: list[str] = field(default_factory=list)
    ready_seconds: float = 0.0

    def log_text(self) -> str:
        return "\n".join(self.output)

    def stop(self) -> float:
        """SIGTERM the devstack; return how long it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return time.monotonic() - started


def start_system(databases: PostgresDatabases, data_dir: Path) -> RunningSystem:
    env = dict(os.environ)
    for name in SERVICES_WITH_DATABASES:
        env[f"PM_{name}_DATABASE_URL"] = databases.new(name.lower())
    env.update(zip(PORT_VARS, map(str, free_ports(len(PORT_VARS))), strict=True))
    env.pop("PM_KAFKA_BOOTSTRAP_SERVERS", None)
    env["PM_DATA_DIR"] = str(data_dir)
    env["PM_AUTH_BCRYPT_ROUNDS"] = "6"
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["PM_DEVSTACK_READY_TIMEOUT"] = str(READY_TIMEOUT - 10)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.devstack.up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    system = RunningSystem(process, f"http://127.0.0.1:{env['PM_GATEWAY_PORT']}", env)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            system.output.append(line.rstrip())
            if line.startswith("READY "):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            system.stop()
            pytest.fail("the system did not become READY:\n" + system.log_text()[-6000:], pytrace=False)
    system.ready_seconds = time.monotonic() - started
    return system


@pytest.fixture(scope="session")
def system(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningSystem]:
    running = start_system(postgres_databases, tmp_path_factory.mktemp("pm-data"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def gateway(system: RunningSystem) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=system.gateway, timeout=15.0) as client:
        yield client


@pytest.fixture(scope="session")
def admin_token(gateway: httpx.Client) -> str:
    response = gateway.post("/auth/login", json={"email": "testuser@test.com", "password": "password123"})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


@pytest.fixture(scope="session")
def auth(admin_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_token}"}
