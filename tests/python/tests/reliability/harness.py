"""The whole system on PostgreSQL with a real broker, run in-process by the devstack's Stack so single
services and the broker can be stopped and restarted; a bounded create load; figures written as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from pm.devstack.up import SERVICES, Settings, Stack
from tests.support.databases import PostgresDatabases
from tests.support.ports import reserved_ports

READY_TIMEOUT = 240.0  # five services importing at once on a loaded 2-core machine
DEMO_LOGIN = {"email": "testuser@test.com", "password": "password123"}
HEALTH_PORTS = {spec.name: spec.port_var for spec in SERVICES}


class RecordingStack(Stack):
    """The devstack, with every log line of every service kept for the secret scan."""

    def __init__(self, settings: Settings, extra_env: Mapping[str, str]) -> None:
        super().__init__(settings)
        self.extra_env = dict(extra_env)
        self.lines: list[str] = []

    def say(self, line: str) -> None:
        with self.print_lock:
            self.lines.append(line)

    def child_env(self, bootstrap: str) -> dict[str, str]:
        env = super().child_env(bootstrap)
        env.update(self.extra_env)
        return env


@dataclass
class System:
    stack: RecordingStack
    database_urls: dict[str, str]
    gateway: str = ""

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.stack.settings.ports[HEALTH_PORTS[service]]}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.stack.settings.ports['PM_BILLING_GRPC_PORT']}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack.settings.kafka_port}"

    def healthy(self, service: str) -> bool:
        try:
            return httpx.get(self.url(service) + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_healthy(self, *services: str, timeout: float = 60.0) -> float:
        started = time.monotonic()
        names = services or tuple(HEALTH_PORTS)
        wait_until(lambda: all(self.healthy(name) for name in names), timeout, f"{names} healthy")
        return time.monotonic() - started

    def restart(self, service: str, sig: int) -> dict[str, float]:
        """Stop one service with `sig`, start it again, wait for its health; seconds of each step."""
        started = time.monotonic()
        status = self.stack.stop_service(service, sig)
        stopped = time.monotonic() - started
        self.stack.start_service(service)
        return {"exit_status": status, "stop_seconds": stopped, "recover_seconds": self.wait_healthy(service)}

    def sql(self, service: str, query: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.database_urls[service], poolclass=sa.pool.NullPool)
        try:
            with engine.begin() as connection:
                result = connection.execute(sa.text(query), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def log_text(self) -> str:
        with self.stack.print_lock:
            return "\n".join(self.stack.lines)


def start_system(
    databases: PostgresDatabases, data_dir: Path, extra_env: Mapping[str, str] | None = None
) -> System:
    urls = {name: databases.new(name) for name in ("auth", "patient", "billing", "analytics")}
    env = {f"PM_{name.upper()}_DATABASE_URL": url for name, url in urls.items()}
    env["PM_AUTH_BCRYPT_ROUNDS"] = "6"
    env.update(extra_env or {})
    free = reserved_ports(len(SERVICES) + 2)
    ports = {spec.port_var: free.pop() for spec in SERVICES}
    ports["PM_BILLING_GRPC_PORT"] = free.pop()
    settings = Settings(
        host="127.0.0.1",
        data_dir=data_dir,
        ports=ports,
        kafka_bootstrap=None,
        kafka_port=free.pop(),
        ready_timeout=READY_TIMEOUT,
    )
    stack = RecordingStack(settings, env)
    system = System(stack, urls)
    system.gateway = stack.start()
    try:
        stack.wait_healthy()
    except RuntimeError:
        stack.stop()
        raise AssertionError("the system did not become healthy:\n" + system.log_text()[-6000:]) from None
    return system


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout:.0f}s: {what}")
        time.sleep(interval)


def login(base: str, email: str = DEMO_LOGIN["email"], password: str = DEMO_LOGIN["password"]) -> str:
    response = httpx.post(f"{base}/login", json={"email": email, "password": password}, timeout=15.0)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def patient_body(tag: str = "") -> dict[str, str]:
    unique = uuid.uuid4().hex[:12]
    return {
        "name": f"Load {tag} {unique}".strip(),
        "email": f"load.{unique}@example.com",
        "address": "1 Test Street",
        "dateOfBirth": "1990-01-01",
        "registeredDate": "2024-03-01",
    }


@dataclass
class Outcome:
    started: float
    seconds: float
    status: int  # 0: no HTTP answer (connection refused / reset / timeout)
    content_type: str = ""
    patient_id: str | None = None


@dataclass
class Load:
    """Creates patients through the gateway at a bounded rate on a thread until stopped."""

    gateway: str
    token: str
    rate: float = 15.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Load:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.gateway, headers=headers, timeout=20.0) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/api/patients", json=patient_body())
                    pid = response.json().get("id") if response.status_code == 201 else None
                    outcome = Outcome(
                        started,
                        time.monotonic() - started,
                        response.status_code,
                        response.headers.get("content-type", ""),
                        pid,
                    )
                except httpx.HTTPError:
                    outcome = Outcome(started, time.monotonic() - started, 0)
                self.outcomes.append(outcome)
                self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))

    def created(self) -> list[str]:
        return [o.patient_id for o in self.outcomes if o.status == 201 and o.patient_id]

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in self.outcomes if predicate(o))


def write_figures(name: str, figures: Mapping[str, Any]) -> None:
    """Print the figures and keep them as JSON (Pants copies extra-output/ to dist/)."""
    folder = Path(os.environ.get("PM_FIGURES_DIR", "extra-output")) / "reliability"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, indent=2, sort_keys=True, default=str)
    (folder / f"{name}.json").write_text(text + "\n")
    print(f"FIGURES {name}: {text}")


def keep_log(name: str, text: str) -> None:
    """Keep every log line of a module's system beside its figures, for a failure to be read later."""
    folder = Path(os.environ.get("PM_FIGURES_DIR", "extra-output")) / "reliability"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.log").write_text(text + "\n")


def kill_broker(system: System) -> None:
    """SIGKILL the in-memory broker: everything it held is gone (a fresh one starts empty)."""
    broker = system.stack.broker
    assert broker is not None and broker.process is not None
    code = broker.process.poll()
    if code is not None:  # it must be the one we started that dies here, not one long gone
        raise AssertionError(f"the broker had already exited with status {code}: {broker.log_tail()}")
    broker.process.kill()
    broker.process.wait(10)
    system.stack.say(f"[harness] broker pid {broker.process.pid} SIGKILLed")
    system.stack.broker = None


def start_broker(system: System) -> None:
    """A fresh, empty broker on the same port."""
    system.stack.start_broker()
    assert system.stack.broker is not None and system.stack.broker.process is not None
    system.stack.say(f"[harness] broker pid {system.stack.broker.process.pid} started")


def pipeline_state(
    system: System, topic: str = "patient", group: str = "analytics-service"
) -> dict[str, Any]:
    """Where events stand between the outbox and analytics, for a failure's message: the broker process,
    the relay's and the consumer's health, the outbox, the topic's id and end offsets, the group's
    committed offsets. Every part is best effort (the broker may be the thing that is gone)."""
    state: dict[str, Any] = {}
    broker = system.stack.broker
    if broker is not None and broker.process is not None:
        state["broker"] = {"pid": broker.process.pid, "exit_status": broker.process.poll()}
        state["broker_log_tail"] = broker.log_tail(10)
    for service in ("patient", "analytics"):
        try:
            state[f"{service}_health"] = httpx.get(system.url(service) + "/health", timeout=5.0).json()
        except (httpx.HTTPError, ValueError) as exc:
            state[f"{service}_health"] = repr(exc)
    try:
        state["outbox"] = [
            tuple(row)
            for row in system.sql(
                "patient",
                "SELECT published_at IS NOT NULL AS published, count(*) FROM outbox GROUP BY 1 ORDER BY 1",
            )
        ]
        state["relay_state"] = [
            tuple(row) for row in system.sql("patient", "SELECT topic, topic_id FROM relay_state")
        ]
        state["analytics_events"] = system.sql("analytics", "SELECT count(*) FROM patient_event")[0][0]
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        state["sql"] = repr(exc)
    state.update(_broker_state(system.bootstrap, topic, group))
    return state


def _broker_state(bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    from pm.common.kafka import make_admin_client

    state: dict[str, Any] = {}

    def attempt(key: str, read: Callable[[], Any]) -> Any:
        try:
            state[key] = read()
        except Exception as exc:  # the broker may be the thing that is gone
            state[key] = repr(exc)[:300]
        return state[key]

    admin = attempt(
        "admin", lambda: make_admin_client(bootstrap, client_id="harness-diagnosis", timeout_ms=5000)
    )
    if isinstance(admin, str):
        return state
    del state["admin"]
    try:
        described = attempt(
            "describe", lambda: [t for t in admin.describe_topics([topic]) if t.get("name") == topic]
        )
        if isinstance(described, str):
            return state
        state["describe"] = [
            {
                "id": str(t.get("topic_id")),
                "error": t.get("error_code"),
                "partitions": len(t.get("partitions") or []),
            }
            for t in described
        ]
        tps = [
            TopicPartition(topic, p.get("partition_index", p.get("partition")))
            for t in described
            for p in (t.get("partitions") or [])
        ]
        attempt(
            "committed",
            lambda: {
                tp.partition: getattr(o, "offset", o)
                for tp, o in admin.list_group_offsets({group: tps}).get(group, {}).items()
            },
        )
        attempt("group", lambda: str(admin.describe_groups([group]))[:600])

        def end_offsets() -> dict[int, int]:
            consumer = KafkaConsumer(bootstrap_servers=[bootstrap], request_timeout_ms=6000)
            try:
                return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
            finally:
                consumer.close()

        attempt("end_offsets", end_offsets)
    finally:
        admin.close()
    return state


def created_event_counts(system: System) -> dict[str, int]:
    """PATIENT_CREATED events recorded by analytics, per patient id."""
    rows = system.sql(
        "analytics",
        "SELECT patient_id, count(*) FROM patient_event WHERE event_type = 'PATIENT_CREATED' GROUP BY patient_id",
    )
    return {str(pid): int(n) for pid, n in rows}


def lost_and_doubled(system: System, created: list[str], timeout: float = 90.0) -> dict[str, Any]:
    """Wait until analytics holds an event for every created patient (or `timeout`); count the missing
    ones and the extra copies."""
    try:
        wait_until(lambda: set(created) <= set(created_event_counts(system)), timeout, "every event counted")
    except AssertionError:
        pass  # reported by the caller's figures
    counts = created_event_counts(system)
    figures: dict[str, Any] = {
        "events_lost": sum(1 for pid in created if pid not in counts),
        "counted_twice": sum(n - 1 for n in counts.values() if n > 1),
    }
    if figures["events_lost"]:
        figures["pipeline"] = pipeline_state(system)
    return figures


def rebuild_analytics(system: System, token: str) -> dict[str, Any]:
    """Make analytics wrong on purpose, run `analytics rebuild`, wait until the summary equals the patient
    outbox's event counts; the figures. Raises AssertionError (with the warnings logged) if it never does."""
    headers = {"Authorization": f"Bearer {token}"}

    def expected() -> dict[str, int]:
        counts = dict(system.sql("patient", "SELECT event_type, count(*) FROM outbox GROUP BY event_type"))
        return {
            "patientsCreated": int(counts.get("PATIENT_CREATED", 0)),
            "patientsUpdated": int(counts.get("PATIENT_UPDATED", 0)),
            "patientsDeleted": int(counts.get("PATIENT_DELETED", 0)),
        }

    def summary() -> dict[str, int]:
        body = httpx.get(system.url("analytics") + "/analytics/summary", headers=headers, timeout=10.0).json()
        return {key: body[key] for key in ("patientsCreated", "patientsUpdated", "patientsDeleted")}

    def explain(what: str) -> AssertionError:
        notes = [
            line
            for line in system.log_text().splitlines()
            if ("WARN" in line or "ERROR" in line) and "blocking the event loop" not in line
        ]
        return AssertionError(
            f"{what}: summary {summary()} != outbox {expected()}\n"
            + json.dumps(pipeline_state(system), default=str, indent=1)
            + "\n"
            + "\n".join(notes[-30:])
        )

    try:
        wait_until(lambda: summary() == expected(), 120.0, "analytics caught up before the rebuild")
    except AssertionError:
        raise explain("before the rebuild") from None
    # A rebuild must not add to what is there, it must start over.
    system.sql("analytics", "UPDATE totals SET patients_created = patients_created + 1000")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pm.analytics.main", "rebuild"],
        env=system.stack.env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    try:
        wait_until(lambda: summary() == expected(), 180.0, "analytics rebuilt from the outbox")
    except AssertionError:
        raise explain(f"after the rebuild ({result.stdout[-1000:]})") from None
    rebuilt = time.monotonic() - started
    events = system.sql("analytics", "SELECT count(*), count(DISTINCT event_id) FROM patient_event")[0]
    return {
        "outbox_events": system.sql("patient", "SELECT count(*) FROM outbox")[0][0],
        "analytics_events_after_rebuild": events[0],
        "distinct_event_ids": events[1],
        "seconds_to_rebuild": round(rebuilt, 1),
        **summary(),
    }
