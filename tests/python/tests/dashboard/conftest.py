"""The whole system (pm.devstack) and a headless Chromium driven by Playwright, for the dashboard tests.

Chromium is Debian's package (`apt-get install -y chromium`); Playwright never downloads a browser here.
Screenshots go to PM_DASHBOARD_SCREENSHOTS when it is set, to a temporary folder otherwise.
PM_DASHBOARD_GATEWAY_URL runs them against a system that is already up (e.g. a devstack in another shell).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from pm.common.broker import free_ports

CHROMIUM = os.environ.get("PM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEMO_EMAIL = "testuser@test.com"
DEMO_PASSWORD = "password123"
READY_SECONDS = 150.0
# The machines that run the suite are shared and often busy: generous waits, still bounded.
ACTION_TIMEOUT_MS = 20_000
_PR_SET_PDEATHSIG = 1
PORT_VARIABLES = (
    "PM_GATEWAY_PORT",
    "PM_AUTH_PORT",
    "PM_PATIENT_PORT",
    "PM_BILLING_PORT",
    "PM_BILLING_GRPC_PORT",
    "PM_ANALYTICS_PORT",
    "PM_KAFKA_PORT",
)


@dataclass(frozen=True)
class System:
    url: str
    # The system's broker (host:port), for tests that put messages on a topic themselves.
    kafka: str | None = None

    def token(self, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> str:
        response = httpx.post(
            f"{self.url}/auth/login", json={"email": email, "password": password}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["token"])

    def client(self, token: str) -> httpx.Client:
        """An API client through the gateway, acting as someone other than the browser's user."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _die_with_the_tests() -> None:
    """The devstack gets SIGTERM if this test process dies without tearing down (e.g. killed by Pants)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _start_devstack(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = dict(os.environ)
    env.update(zip(PORT_VARIABLES, map(str, free_ports(len(PORT_VARIABLES))), strict=True))
    env.pop("PM_KAFKA_BOOTSTRAP_SERVERS", None)
    env.update(
        {
            "PM_DATA_DIR": str(data_dir),
            "PM_HOST": "127.0.0.1",
            # The services run from the same modules as this test (a Pants sandbox or the dev venv).
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in [k for k in env if k.endswith("_DATABASE_URL") and k.startswith("PM_")]:
        del env[name]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pm.devstack.up"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_the_tests,
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return process, line.split(" ", 1)[1].strip(), f"127.0.0.1:{env['PM_KAFKA_PORT']}"
        if process.poll() is not None:
            break
        time.sleep(0.2)
    _stop(process)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
    pytest.fail(f"the devstack did not print READY within {READY_SECONDS:.0f}s:\n{tail}", pytrace=False)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The real system, started once for the dashboard tests by the devstack command.

    PM_DASHBOARD_GATEWAY_URL points the tests at a system that is already running instead (and
    PM_DASHBOARD_KAFKA_BOOTSTRAP at its broker, for the tests that need it).
    """
    running = os.environ.get("PM_DASHBOARD_GATEWAY_URL")
    if running:
        yield System(url=running.rstrip("/"), kafka=os.environ.get("PM_DASHBOARD_KAFKA_BOOTSTRAP"))
        return
    folder = tmp_path_factory.mktemp("devstack")
    log_path = folder / "devstack.log"
    process, url, kafka = _start_devstack(folder / "data", log_path)
    try:
        yield System(url=url, kafka=kafka)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)", pytrace=False)
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("PM_DASHBOARD_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
