"""The whole system in one command: a broker, the five services, wired, healthy, stopped together.

    ./pants run src/python/pm/devstack:up

Starts a Kafka-protocol broker (unless PM_KAFKA_BOOTSTRAP_SERVERS is set), then every service as a child
process of this one (each migrates and seeds its own database at start: SQLite files under PM_DATA_DIR
unless PM_<SERVICE>_DATABASE_URL is set), waits for every /health, prints `READY <gateway url>` and the demo
login, and streams the services' logs with a prefix. Ctrl-C, SIGTERM, SIGHUP or the death of the process
that started it (`./pants run`, a script, a process manager) stops everything within 10 s; a service that
dies stops the whole stack. `PM_DATA_DIR/devstack.pid` names the running devstack, so that a start that
finds its ports taken by a previous one says which process to stop.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pm.common import tracing
from pm.common.broker import Broker, die_with_parent
from pm.common.catalog import SERVICES
from pm.common.config import ConfigError, Env, exit_config_error

DEMO_LOGIN = ("testuser@test.com", "password123")
STOP_SECONDS = 8.0
PID_FILE = "devstack.pid"
_PR_SET_PDEATHSIG = 1
# The kernel sends the parent-death signal when the *thread* that forked us exits, which in a threaded
# parent (pantsd) may happen while the parent lives on: a signal of its own lets us check before stopping.
PARENT_DEATH_SIGNAL = signal.SIGUSR2


@dataclass(frozen=True)
class Settings:
    host: str
    data_dir: Path
    ports: Mapping[str, int]
    kafka_bootstrap: str | None
    kafka_port: int
    ready_timeout: float

    @staticmethod
    def from_env(env: Env) -> Settings:
        ports: dict[str, int] = {}
        for spec in SERVICES:
            ports[spec.port_var] = env.port(spec.port_var, spec.port)
            for var, default in spec.extra_ports.items():
                ports[var] = env.port(var, default)
        return Settings(
            host=env.text("PM_HOST", "127.0.0.1"),
            data_dir=env.data_dir(),
            ports=ports,
            kafka_bootstrap=env.optional("PM_KAFKA_BOOTSTRAP_SERVERS"),
            kafka_port=env.port("PM_KAFKA_PORT", 9092),
            ready_timeout=env.number("PM_DEVSTACK_READY_TIMEOUT", 90.0, minimum=1.0),
        )


def gateway_addresses(host: str) -> str:
    """Where the gateway's requests to the services come from: loopback, or the address they share."""
    addresses = ["127.0.0.1", "::1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return ",".join(addresses)
    if not (address.is_loopback or address.is_unspecified):
        addresses.append(str(address))
    return ",".join(addresses)


def port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broker: Broker | None = None
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self.print_lock = threading.Lock()
        self.env: dict[str, str] = {}

    def say(self, line: str) -> None:
        with self.print_lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass  # the terminal (or `pants run`) went away first: keep stopping the stack

    @property
    def pid_file(self) -> Path:
        return self.settings.data_dir / PID_FILE

    def check_ports(self) -> None:
        wanted = dict(self.settings.ports)
        if self.settings.kafka_bootstrap is None:
            wanted["PM_KAFKA_PORT"] = self.settings.kafka_port
        for var, port in wanted.items():
            if port_in_use(self.settings.host, port):
                previous = self.previous_devstack()
                if previous is not None:
                    raise ConfigError(
                        f"a devstack from pid {previous} still holds port {port} ({var}); "
                        f"stop it (kill {previous}) or set {var}"
                    )
                raise ConfigError(f"port {port} ({var}) is already in use; stop what uses it or set {var}")

    def previous_devstack(self) -> int | None:
        """The pid in the data folder's pid file, if that process still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid == os.getpid():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # alive, owned by someone else
        return pid

    def write_pid_file(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{os.getpid()}\n")

    def remove_pid_file(self) -> None:
        try:
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()
        except OSError:
            pass

    def child_env(self, bootstrap: str) -> dict[str, str]:
        env = dict(os.environ)
        ports = self.settings.ports
        base = f"http://{self.settings.host}"
        env.update({key: str(value) for key, value in ports.items()})
        # Spans reach the trace view within a second (the SDK's default batches every 5 s).
        env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
        env.update(
            {
                "PM_HOST": self.settings.host,
                "PM_DATA_DIR": str(self.settings.data_dir),
                "PM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "PM_BILLING_GRPC_TARGET": f"{self.settings.host}:{ports['PM_BILLING_GRPC_PORT']}",
                "PM_AUTH_URL": f"{base}:{ports['PM_AUTH_PORT']}",
                "PM_PATIENT_URL": f"{base}:{ports['PM_PATIENT_PORT']}",
                "PM_ANALYTICS_URL": f"{base}:{ports['PM_ANALYTICS_PORT']}",
                "PM_BILLING_URL": f"{base}:{ports['PM_BILLING_PORT']}",
                "PM_JWKS_URL": f"{base}:{ports['PM_AUTH_PORT']}/.well-known/jwks.json",
                # The services believe X-Forwarded-For only from the gateway, which reaches them here.
                "PM_TRUSTED_PROXIES": gateway_addresses(self.settings.host),
                # Children find the same modules this process runs from (a pex, a venv or a test sandbox).
                "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> str:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = self.settings.kafka_bootstrap
        if bootstrap is None:
            bootstrap = self.start_broker()
            self.say(f"[devstack] Kafka-protocol broker (Tansu, in memory) on {bootstrap}")
        self.env = self.child_env(bootstrap)
        for spec in SERVICES:
            self.start_service(spec.name)
        return f"http://{self.settings.host}:{self.settings.ports['PM_GATEWAY_PORT']}"

    def start_broker(self) -> str:
        """Start the in-memory broker on PM_KAFKA_PORT (again, after stop_broker: it comes back empty)."""
        # Its output is kept (appended across restarts): a broker that exits says why there.
        self.broker = Broker(
            port=self.settings.kafka_port, log_path=self.settings.data_dir / "broker.log"
        ).start()
        return self.broker.bootstrap

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def embedded_traces(self) -> bool:
        """Whether spans go to the gateway's embedded store (no OTLP collector named, tracing not off)."""
        return tracing.enabled(self.env) and tracing.collector_endpoint(self.env) is None

    def service_env(self, name: str) -> dict[str, str]:
        """The stack's wiring; with the embedded trace store, every service but the gateway exports to it."""
        if name == "gateway" or not self.embedded_traces():
            return self.env
        gateway = f"http://{self.settings.host}:{self.settings.ports['PM_GATEWAY_PORT']}"
        return {**self.env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{gateway}/v1/traces"}

    def start_service(self, name: str) -> subprocess.Popen[bytes]:
        """Start one service with the stack's wiring; after stop_service this restarts it (fault tests)."""
        process = subprocess.Popen(
            [sys.executable, "-m", f"pm.{name}.main", "serve"],
            env=self.service_env(name),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # only calls prctl: safe with threads
        )
        self.children[name] = process
        threading.Thread(target=self._pump, args=(name, process), daemon=True).start()
        return process

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_SECONDS) -> int:
        """Send one service `sig` and wait for it to exit; killed if it outlives `timeout`. Its exit status."""
        process = self.children[name]
        if process.poll() is None:
            process.send_signal(sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.say(f"[devstack] {name} did not stop in {timeout:.0f}s; killing it")
            process.kill()
            return process.wait(5)

    def _pump(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        width = max(len(s.name) for s in SERVICES)
        for raw in iter(process.stdout.readline, b""):
            self.say(f"{name:<{width}} | {_render_log_line(raw.decode('utf-8', 'replace').rstrip())}")

    def wait_healthy(self, cancel: threading.Event | None = None) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        pending = {spec.name: self.settings.ports[spec.port_var] for spec in SERVICES}
        while pending:
            if cancel is not None and cancel.is_set():
                raise RuntimeError("asked to stop while starting")
            self.raise_if_a_child_died()
            for name, port in list(pending.items()):
                if _healthy(f"http://{self.settings.host}:{port}/health"):
                    self.say(f"[devstack] {name} is healthy on port {port}")
                    del pending[name]
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"not healthy after {self.settings.ready_timeout:.0f}s: {', '.join(pending)}"
                )
            time.sleep(0.2)

    def raise_if_a_child_died(self) -> None:
        for name, process in self.children.items():
            code = process.poll()
            if code is not None:
                raise RuntimeError(f"service {name} exited with status {code}")

    def stop(self) -> None:
        self.stopping.set()
        for spec in reversed(SERVICES):
            process = self.children.get(spec.name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for name, process in self.children.items():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"[devstack] {name} did not stop in time; killing it")
                process.kill()
                process.wait(2)
        if self.broker is not None:
            self.broker.stop()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - our own loopback URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _render_log_line(line: str) -> str:
    """JSON log lines become `LEVEL message key=value ...`; anything else passes through."""
    if not line.startswith("{"):
        return line
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict):
        return line
    level = entry.pop("level", "")
    message = entry.pop("msg", "")
    for noise in ("ts", "service", "logger"):
        entry.pop(noise, None)
    extras = " ".join(f"{k}={v}" for k, v in entry.items() if k != "exc")
    text = f"{level:<7} {message} {extras}".rstrip()
    if "exc" in entry:
        text += "\n" + str(entry["exc"])
    return text


def signal_on_parent_death(sig: int) -> None:
    """Ask the kernel (Linux) to send `sig` when our parent goes, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    except OSError:
        pass  # not Linux: the main loop's parent check still notices, within half a second


def traces_location(stack: Stack, gateway_url: str) -> str:
    if stack.embedded_traces():
        return f"{gateway_url}/dashboard/#traces (GET {gateway_url}/api/traces, ADMIN)"
    if not tracing.enabled(stack.env):
        return "off (OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none)"
    return f"exported to {tracing.collector_endpoint(stack.env)} (view them in that collector's UI)"


def main() -> None:
    parent = os.getppid()
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()

    def on_parent_death(signum: int, _frame: object) -> None:
        if os.getppid() != parent:
            stop_requested.set()

    # Before anything starts: whoever started us can stop us from the first moment on.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(PARENT_DEATH_SIGNAL, on_parent_death)
    signal_on_parent_death(PARENT_DEATH_SIGNAL)
    if os.getppid() != parent:  # it went before the request above took effect
        stop_requested.set()

    try:
        settings = Settings.from_env(Env())
    except ConfigError as err:
        exit_config_error("devstack", str(err))
    stack = Stack(settings)
    try:
        stack.check_ports()
    except ConfigError as err:
        exit_config_error("devstack", str(err))
    stack.write_pid_file()

    started = time.monotonic()
    status = 0
    try:
        if stop_requested.is_set():
            raise RuntimeError("asked to stop while starting")
        gateway_url = stack.start()
        stack.wait_healthy(cancel=stop_requested)
        elapsed = time.monotonic() - started
        stack.say(f"[devstack] all services healthy in {elapsed:.1f}s; data in {settings.data_dir}")
        stack.say(f"[devstack] demo login: {DEMO_LOGIN[0]} / {DEMO_LOGIN[1]} (POST {gateway_url}/auth/login)")
        stack.say(f"[devstack] API docs: {gateway_url}/docs   dashboard: {gateway_url}/dashboard")
        stack.say(f"[devstack] traces: {traces_location(stack, gateway_url)}")
        stack.say(f"READY {gateway_url}")
        while not stop_requested.wait(0.5) and os.getppid() == parent:
            stack.raise_if_a_child_died()
        stack.say("[devstack] stopping")
    except RuntimeError as err:
        if not stop_requested.is_set():
            stack.say(f"[devstack] {err}; stopping the stack")
            status = 1
    finally:
        stack.stop()
        stack.remove_pid_file()
        stack.say("[devstack] stopped")
    sys.exit(status)


if __name__ == "__main__":
    main()
