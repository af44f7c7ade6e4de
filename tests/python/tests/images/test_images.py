"""Smoke test of the service images with podman: they start, answer /health, run non-root, stop on SIGTERM.

Uses the images `./pants package docker::` built (pm-<service>:latest) through the podman service that
scripts/containers/setup.sh starts (DOCKER_HOST, or its default socket), or a local podman otherwise.
The five containers share the host network so that they reach each other, the test's Kafka-protocol
broker and PostgreSQL on 127.0.0.1, each on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pm.common.broker import free_port, free_ports
from tests.support.databases import PostgresDatabases

pytestmark = pytest.mark.slow

SERVICES = ("auth", "billing", "patient", "analytics", "gateway")
STARTUP_SECONDS = 90.0


def podman_base() -> list[str] | None:
    executable = shutil.which("podman") or ("/usr/bin/podman" if Path("/usr/bin/podman").exists() else None)
    if executable is None:
        return None
    host = os.environ.get("DOCKER_HOST") or f"unix:///tmp/pm-containers-{os.getuid()}/podman.sock"
    if host.startswith("unix://") and Path(host.removeprefix("unix://")).exists():
        # The service started by setup.sh carries the runtime and ulimit settings this machine needs.
        return [executable, "--remote", "--url", host]
    return [executable]


@dataclass
class Podman:
    base: list[str]

    def __call__(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, timeout=timeout, check=check
        )


@pytest.fixture(scope="module")
def podman() -> Podman:
    base = podman_base()
    if base is None:
        pytest.skip("podman is not installed (scripts/containers/setup.sh installs and configures it)")
    runner = Podman(base)
    try:
        runner("info", timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"podman does not work here ({exc}); run scripts/containers/setup.sh")
    missing = [s for s in SERVICES if runner("image", "exists", f"pm-{s}:latest", check=False).returncode]
    if missing:
        pytest.skip(f"images not built: {', '.join(missing)}; run ./pants package docker::")
    return runner


@dataclass
class Container:
    service: str
    name: str
    port: int
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    podman: Podman
    containers: dict[str, Container]

    def logs(self, service: str) -> str:
        result = self.podman("logs", "--tail", "20", self.containers[service].name, check=False)
        return result.stdout + result.stderr


def wait_healthy(url: str, timeout: float = STARTUP_SECONDS) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{url}/health", timeout=3)
            if last.status_code == 200:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url}/health not UP after {timeout}s (last: {last and last.text})")


@pytest.fixture(scope="module")
def system(podman: Podman, kafka_bootstrap: str, postgres_databases: PostgresDatabases) -> Iterator[System]:
    tag = uuid.uuid4().hex[:6]
    *chosen, grpc_port = free_ports(len(SERVICES) + 1)
    ports = dict(zip(SERVICES, chosen, strict=True))
    auth_url = f"http://127.0.0.1:{ports['auth']}"
    common = {
        "PM_LOG_LEVEL": "INFO",
        "PM_JWKS_URL": f"{auth_url}/.well-known/jwks.json",
        "PM_AUTH_URL": auth_url,
        "PM_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    settings = {
        "auth": {"PM_AUTH_BCRYPT_ROUNDS": "4"},
        "billing": {"PM_BILLING_GRPC_PORT": str(grpc_port)},
        "patient": {"PM_BILLING_GRPC_TARGET": f"127.0.0.1:{grpc_port}"},
        "analytics": {},
        "gateway": {
            "PM_PATIENT_URL": f"http://127.0.0.1:{ports['patient']}",
            "PM_ANALYTICS_URL": f"http://127.0.0.1:{ports['analytics']}",
        },
    }
    containers: dict[str, Container] = {}
    try:
        for service in SERVICES:
            environment = {**common, **settings[service], f"PM_{service.upper()}_PORT": str(ports[service])}
            if service != "gateway":
                environment[f"PM_{service.upper()}_DATABASE_URL"] = postgres_databases.new(f"img_{service}")
            name = f"pm-smoke-{service}-{tag}"
            flags = [f"--env={k}={v}" for k, v in environment.items()]
            podman("run", "--detach", "--name", name, "--network", "host", *flags, f"pm-{service}:latest")
            extra = {"grpc": grpc_port} if service == "billing" else {}
            containers[service] = Container(service, name, ports[service], extra)
        yield System(podman, containers)
    finally:
        for container in containers.values():
            podman("rm", "--force", "--time", "2", container.name, check=False)


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_answers_health_up(system: System, service: str) -> None:
    try:
        response = wait_healthy(system.containers[service].url)
    except AssertionError:
        pytest.fail(f"{service} never became healthy; its log:\n{system.logs(service)}")
    assert response.json()["status"] == "UP"


def test_billing_answers_the_grpc_health_check(system: System) -> None:
    billing = system.containers["billing"]
    wait_healthy(billing.url)
    with grpc.insecure_channel(f"127.0.0.1:{billing.extra['grpc']}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("service", SERVICES)
def test_images_run_as_a_non_root_user_and_their_healthcheck_passes(system: System, service: str) -> None:
    container = system.containers[service]
    wait_healthy(container.url)
    uid = system.podman("exec", container.name, "id", "-u").stdout.strip()
    assert uid.isdigit() and int(uid) != 0
    # The image's own HEALTHCHECK command (what Docker and compose run), executed inside the container.
    result = system.podman("healthcheck", "run", container.name, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", ["auth", "billing"])
def test_default_ports_are_exposed_and_published(podman: Podman, service: str) -> None:
    port = {"auth": 4005, "billing": 4001}[service]
    config = json.loads(podman("image", "inspect", f"pm-{service}:latest").stdout)[0]["Config"]
    assert f"{port}/tcp" in config["ExposedPorts"]
    host_port = free_port()
    name = f"pm-smoke-published-{service}-{uuid.uuid4().hex[:6]}"
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1:{host_port}:{port}",
        f"pm-{service}:latest",
    )
    try:
        assert wait_healthy(f"http://127.0.0.1:{host_port}").json()["status"] == "UP"
    finally:
        podman("rm", "--force", "--time", "2", name, check=False)


def test_sigterm_stops_every_service_within_ten_seconds(system: System) -> None:
    # Runs last in this module: it stops the shared containers.
    for service in reversed(SERVICES):
        container = system.containers[service]
        wait_healthy(container.url)
        started = time.monotonic()
        system.podman("stop", "--time", "10", container.name, timeout=30)
        elapsed = time.monotonic() - started
        state = json.loads(system.podman("inspect", container.name).stdout)[0]["State"]
        assert elapsed < 10, f"{service} took {elapsed:.1f}s to stop"
        # 137 would mean podman had to SIGKILL it after the grace period.
        assert state["ExitCode"] != 137, f"{service} was killed, exit code {state['ExitCode']}"
