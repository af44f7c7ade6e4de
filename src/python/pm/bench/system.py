"""The system under test: the devstack on fresh PostgreSQL databases, the floor process and nginx."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from pm.bench import nginx
from pm.common.broker import die_with_parent, free_port, free_ports
from pm.common.pgadmin import create_database, drop_database
from pm.devstack.up import DEMO_LOGIN, SERVICES, Settings, Stack

SEED_PATIENT = "123e4567-e89b-12d3-a456-426614174000"
DATABASES = ("auth", "patient", "billing", "analytics")
FLOOR = "floor"


class QuietStack(Stack):
    """The devstack, with the services' logs in a file instead of interleaved with the results."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(settings)
        self.log = log_path.open("a", encoding="utf-8")

    def say(self, line: str) -> None:
        with self.print_lock:
            self.log.write(line + "\n")
            self.log.flush()


class System:
    """Starts everything the scenarios measure, knows every URL and process, stops it all."""

    def __init__(self, admin_url: str, workdir: Path) -> None:
        self.admin_url = admin_url
        self.workdir = workdir
        self.databases: dict[str, str] = {}
        self.stack: QuietStack | None = None
        self.floor: subprocess.Popen[bytes] | None = None
        self.nginx: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.token = ""

    @property
    def log_path(self) -> Path:
        return self.workdir / "services.log"

    def start(self) -> dict[str, Any]:
        """Databases, broker and services (timed: the startup figures), the floor, nginx, a login."""
        suffix = uuid.uuid4().hex[:8]
        for name in DATABASES:
            url = create_database(self.admin_url, f"pm_bench_{name}_{suffix}")
            self.databases[name] = url
            os.environ[f"PM_{name.upper()}_DATABASE_URL"] = url
        *chosen, grpc_port, kafka_port = free_ports(len(SERVICES) + 2)
        ports = {spec.port_var: port for spec, port in zip(SERVICES, chosen, strict=True)}
        ports["PM_BILLING_GRPC_PORT"] = grpc_port
        self.ports = ports
        settings = Settings(
            host="127.0.0.1",
            data_dir=self.workdir / "data",
            ports=ports,
            kafka_bootstrap=None,
            kafka_port=kafka_port,
            ready_timeout=120.0,
        )
        self.stack = QuietStack(settings, self.log_path)
        started = time.monotonic()
        self.stack.start()
        spawned = time.monotonic()
        healthy = self._wait_healthy({spec.name: ports[spec.port_var] for spec in SERVICES}, 120.0)
        startup = {
            "broker_seconds": round(spawned - started, 2),
            "service_seconds": {name: round(at - spawned, 2) for name, at in healthy.items()},
            "ready_seconds": round(max(healthy.values()) - started, 2),
            "note": "all five services start at once (as the devstack does), so each competes for the CPU",
        }
        self._start_floor()
        self._start_nginx()
        self._login()
        return startup

    def _wait_healthy(self, pending: dict[str, int], timeout: float) -> dict[str, float]:
        assert self.stack is not None
        healthy: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while pending:
                self.stack.raise_if_a_child_died()
                if self.floor is not None and self.floor.poll() is not None:
                    raise RuntimeError(f"the floor process exited with status {self.floor.returncode}")
                for name, port in list(pending.items()):
                    try:
                        ok = client.get(f"http://127.0.0.1:{port}/health").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        healthy[name] = time.monotonic()
                        del pending[name]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not healthy after {timeout:.0f}s: {', '.join(pending)}")
                time.sleep(0.05)
        return healthy

    def _start_floor(self) -> None:
        """`pm.bench.floor` with patient's wiring (database, JWKS, session feed) on a port of its own."""
        assert self.stack is not None
        self.ports[FLOOR] = free_port()
        with self.log_path.open("ab") as log:
            self.floor = subprocess.Popen(
                [sys.executable, "-m", "pm.bench.floor"],
                env={**self.stack.env, "PM_PATIENT_PORT": str(self.ports[FLOOR])},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # only calls prctl: safe with threads
            )
        self._wait_healthy({FLOOR: self.ports[FLOOR]}, 60.0)

    def _start_nginx(self) -> None:
        directory = self.workdir / "nginx"
        directory.mkdir()
        self.ports["nginx_auth"], self.ports["nginx_plain"] = free_ports(2)
        (directory / "nginx.conf").write_text(
            nginx.render(
                directory,
                patient_port=self.ports["PM_PATIENT_PORT"],
                auth_port=self.ports["PM_AUTH_PORT"],
                auth_request_port=self.ports["nginx_auth"],
                plain_port=self.ports["nginx_plain"],
            )
        )
        self.nginx = subprocess.Popen(nginx.command(directory), stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self.nginx.poll() is not None:
                error_log = (directory / "error.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"nginx exited with status {self.nginx.returncode}: {error_log}")
            try:
                httpx.get(
                    f"http://127.0.0.1:{self.ports['nginx_plain']}/api/patients/{SEED_PATIENT}", timeout=1.0
                )
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not answer within 10 s") from None
                time.sleep(0.1)

    def _login(self) -> None:
        gateway = f"http://127.0.0.1:{self.ports['PM_GATEWAY_PORT']}"
        response = httpx.post(
            f"{gateway}/auth/login", json={"email": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]}, timeout=15.0
        )
        response.raise_for_status()
        self.token = str(response.json()["token"])
        # Every variant must answer 200 before it is measured: a 401 or 404 storm is fast and meaningless.
        # Retried for a while: a verifier whose first JWKS fetch raced auth's start waits out its refetch
        # throttle (a few seconds) before it knows the signing key.
        deadline = time.monotonic() + 20
        for name, url in self.get_variants().items():
            while True:
                status = httpx.get(
                    url, headers={"Authorization": f"Bearer {self.token}"}, timeout=15.0
                ).status_code
                if status == 200:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: GET {url} answered {status}, not 200")
                time.sleep(0.5)

    def get_variants(self) -> dict[str, str]:
        """The same read of one seeded patient, by every way there is to it."""
        base = "http://127.0.0.1"
        path = f"/api/patients/{SEED_PATIENT}"
        return {
            "direct": f"{base}:{self.ports['PM_PATIENT_PORT']}/patients/{SEED_PATIENT}",
            "gateway": f"{base}:{self.ports['PM_GATEWAY_PORT']}{path}",
            "nginx_auth": f"{base}:{self.ports['nginx_auth']}{path}",
            "nginx_plain": f"{base}:{self.ports['nginx_plain']}{path}",
            "floor": f"{base}:{self.ports[FLOOR]}/__floor/patients/{SEED_PATIENT}",
        }

    def gateway_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports['PM_GATEWAY_PORT']}{path}"

    def processes(self) -> dict[str, psutil.Process]:
        assert self.stack is not None
        found = {name: psutil.Process(p.pid) for name, p in self.stack.children.items()}
        if self.stack.broker is not None and self.stack.broker.process is not None:
            found["broker"] = psutil.Process(self.stack.broker.process.pid)
        if self.floor is not None:
            found[FLOOR] = psutil.Process(self.floor.pid)
        if self.nginx is not None:
            found["nginx"] = psutil.Process(self.nginx.pid)
        return found

    def stop(self) -> None:
        for child in (self.nginx, self.floor):
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(5)
        if self.stack is not None:
            self.stack.stop()
        for url in self.databases.values():
            drop_database(self.admin_url, sa.make_url(url).database or "")
