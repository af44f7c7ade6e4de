"""Benchmarks with targets: `./pants run src/python/pm/bench:run -- [--quick]`.

Starts the whole system (devstack's Stack) on fresh PostgreSQL databases and a private broker, puts nginx
in front of the same patient service (with and without auth_request), drives every variant with wrk,
A/B interleaved over several rounds, then measures the write path and the footprint. Prints one table and
writes dist/bench/results.json. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from pm.bench import nginx
from pm.bench.results import Target, WrkRun, evaluate, parse_wrk, percentile, table
from pm.common.broker import free_port
from pm.common.testing import DEFAULT_ADMIN_URL, create_database, drop_database
from pm.devstack.up import DEMO_LOGIN, SERVICES, Settings, Stack

LUA = Path(__file__).parent / "lua"
SEED_PATIENT = "123e4567-e89b-12d3-a456-426614174000"
DATABASES = ("auth", "patient", "billing", "analytics")
RSS_LIMIT_MB = 150.0

GET_TARGETS = (
    Target("gateway overhead: gateway >= 0.6 x direct", "gateway", "direct", 0.6),
    Target("peer: gateway >= 1.2 x nginx with auth_request", "gateway", "nginx_auth", 1.2),
    Target("peer: gateway >= 0.5 x nginx plain proxy", "gateway", "nginx_plain", 0.5),
    Target("framework floor: direct >= 0.5 x bare route", "direct", "floor", 0.5),
)


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    repeats: int
    connections: int
    write_connections: int
    threads: int
    write_seconds: float
    paced_seconds: float
    output: Path
    admin_url: str


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="pm.bench", description="Benchmarks with targets (see docs/benchmarks.md)."
    )
    parser.add_argument("--quick", action="store_true", help="short runs (4 s, 2 rounds) for development")
    parser.add_argument("--duration", type=float, help="seconds measured per run (default 20; quick 4)")
    parser.add_argument(
        "--warmup", type=float, help="seconds of warm-up before each run (default 5; quick 1)"
    )
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 3; quick 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument(
        "--write-connections", type=int, default=16, help="wrk connections for the write path (default 16)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--output", type=Path, default=Path("dist/bench/results.json"))
    args = parser.parse_args(argv)
    quick = args.quick
    duration = args.duration or (4.0 if quick else 20.0)
    return Options(
        duration=duration,
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 5.0),
        repeats=args.repeats or (2 if quick else 3),
        connections=args.connections,
        write_connections=args.write_connections,
        threads=args.threads,
        write_seconds=duration,
        paced_seconds=5.0 if quick else 30.0,
        output=args.output,
        admin_url=os.environ.get("PM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL),
    )


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"pm.bench: {' and '.join(missing)} not found; install with: apt-get install -y wrk nginx-light"
        )


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(memory.total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class QuietStack(Stack):
    """The devstack, with the services' logs in a file instead of interleaved with the results."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        super().__init__(settings)
        self.log = log_path.open("a", encoding="utf-8")

    def say(self, line: str) -> None:
        with self.print_lock:
            self.log.write(line + "\n")
            self.log.flush()


class CpuSampler:
    """CPU used between start() and stop(), in % of one core: each named process, the runner's reaped
    children (wrk) and every PostgreSQL backend on the machine (shared with anything else using it)."""

    def __init__(self, processes: Mapping[str, psutil.Process]) -> None:
        self.processes = dict(processes)
        self.before: dict[str, float] = {}
        self.postgres_before: dict[int, float] = {}
        self.children_before = 0.0
        self.started = 0.0

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0

    @staticmethod
    def _children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def _postgres(self) -> dict[int, float]:
        found = {}
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "postgres":
                found[process.pid] = self._cpu(process)
        return found

    def start(self) -> None:
        self.started = time.monotonic()
        self.before = {name: self._cpu(p) for name, p in self.processes.items()}
        self.children_before = self._children()
        self.postgres_before = self._postgres()

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        used = {name: self._cpu(p) - self.before[name] for name, p in self.processes.items()}
        used["wrk"] = self._children() - self.children_before
        used["postgres"] = sum(
            cpu - self.postgres_before.get(pid, 0.0) for pid, cpu in self._postgres().items()
        )
        return {name: round(100 * seconds / elapsed, 1) for name, seconds in used.items()}


class Bench:
    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.databases: dict[str, str] = {}
        self.stack: QuietStack | None = None
        self.nginx: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.token = ""
        self.results: dict[str, Any] = {}

    # -- system ---------------------------------------------------------------------------------------

    def start_system(self) -> None:
        suffix = uuid.uuid4().hex[:8]
        for name in DATABASES:
            url = create_database(self.options.admin_url, f"pm_bench_{name}_{suffix}")
            self.databases[name] = url
            os.environ[f"PM_{name.upper()}_DATABASE_URL"] = url
        os.environ["PM_PATIENT_BENCH_FLOOR"] = "1"
        ports = {spec.port_var: free_port() for spec in SERVICES}
        ports["PM_BILLING_GRPC_PORT"] = free_port()
        self.ports = ports
        settings = Settings(
            host="127.0.0.1",
            data_dir=self.workdir / "data",
            ports=ports,
            kafka_bootstrap=None,
            kafka_port=free_port(),
            ready_timeout=120.0,
        )
        self.stack = QuietStack(settings, self.workdir / "services.log")
        started = time.monotonic()
        self.stack.start()
        spawned = time.monotonic()
        healthy = self._wait_healthy(settings.ready_timeout)
        self.results["startup"] = {
            "broker_seconds": round(spawned - started, 2),
            "service_seconds": {name: round(at - spawned, 2) for name, at in healthy.items()},
            "ready_seconds": round(max(healthy.values()) - started, 2),
            "note": "all five services start at once (as the devstack does), so each competes for the CPU",
        }

    def _wait_healthy(self, timeout: float) -> dict[str, float]:
        assert self.stack is not None
        pending = {spec.name: self.ports[spec.port_var] for spec in SERVICES}
        healthy: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while pending:
                self.stack.raise_if_a_child_died()
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

    def start_nginx(self) -> None:
        directory = self.workdir / "nginx"
        directory.mkdir()
        self.ports["nginx_auth"] = free_port()
        self.ports["nginx_plain"] = free_port()
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

    def login(self) -> None:
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

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(5)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait(5)
        if self.stack is not None:
            self.stack.stop()
        for url in self.databases.values():
            drop_database(self.options.admin_url, sa.make_url(url).database or "")

    def processes(self, *, with_children: bool = False) -> dict[str, psutil.Process]:
        assert self.stack is not None
        found = {name: psutil.Process(p.pid) for name, p in self.stack.children.items()}
        if self.stack.broker is not None and self.stack.broker.process is not None:
            found["broker"] = psutil.Process(self.stack.broker.process.pid)
        if self.nginx is not None:
            found["nginx"] = psutil.Process(self.nginx.pid)
        return found

    # -- load -----------------------------------------------------------------------------------------

    def get_variants(self) -> dict[str, str]:
        base = "http://127.0.0.1"
        path = f"/api/patients/{SEED_PATIENT}"
        return {
            "direct": f"{base}:{self.ports['PM_PATIENT_PORT']}/patients/{SEED_PATIENT}",
            "gateway": f"{base}:{self.ports['PM_GATEWAY_PORT']}{path}",
            "nginx_auth": f"{base}:{self.ports['nginx_auth']}{path}",
            "nginx_plain": f"{base}:{self.ports['nginx_plain']}{path}",
            "floor": f"{base}:{self.ports['PM_PATIENT_PORT']}/__floor/patients/{SEED_PATIENT}",
        }

    def wrk(
        self,
        url: str,
        script: str,
        seconds: float,
        extra_env: Mapping[str, str] | None = None,
        connections: int | None = None,
    ) -> tuple[WrkRun, dict[str, float]]:
        env = dict(os.environ)
        env.update(
            {
                "PM_BENCH_LUA_DIR": str(LUA),
                "PM_BENCH_TOKEN": self.token,
                "PM_BENCH_PATH": httpx.URL(url).raw_path.decode(),
                "PM_BENCH_THREADS": str(self.options.threads),
            }
        )
        env.update(extra_env or {})
        command = [
            "wrk",
            f"-t{self.options.threads}",
            f"-c{connections or self.options.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA / script),
            url,
        ]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        sampler = CpuSampler({**self.processes(), "wrk": psutil.Process(process.pid)})
        sampler.start()
        try:
            output, _ = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        cpu = sampler.stop()
        return parse_wrk(output), cpu

    def read_scenarios(self) -> None:
        variants = self.get_variants()
        names = list(variants)
        rounds: list[dict[str, WrkRun]] = []
        cpu: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for number in range(self.options.repeats):
            # Interleaved, and each round starts with a different variant: none always runs first or last.
            order = names[number % len(names) :] + names[: number % len(names)]
            runs: dict[str, WrkRun] = {}
            for name in order:
                if self.options.warmup > 0:
                    self.wrk(variants[name], "get.lua", self.options.warmup)
                run, used = self.wrk(variants[name], "get.lua", self.options.duration)
                runs[name] = run
                cpu[name].append(used)
                say(
                    f"  round {number + 1} {name:<12} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  errors {run.errors}"
                )
            rounds.append(runs)
        self.results["reads"] = {
            "urls": variants,
            "rounds": [{name: run.as_dict() for name, run in runs.items()} for runs in rounds],
            "summary": {name: _summary([r[name] for r in rounds], cpu[name]) for name in names},
            "targets": [evaluate(target, rounds).as_dict() for target in GET_TARGETS],
        }

    def write_scenario(self) -> None:
        gateway = f"http://127.0.0.1:{self.ports['PM_GATEWAY_PORT']}/api/patients"
        analytics = sa.create_engine(self.databases["analytics"], pool_size=1)
        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_events, args=(analytics, seen, stop), daemon=True)
        created_before = _patients_created(analytics)
        watcher.start()
        logs = self.workdir / "creates"
        logs.mkdir()
        try:
            run_label = uuid.uuid4().hex[:8]

            def post(
                phase: str, seconds: float, rate: float
            ) -> tuple[WrkRun, dict[str, float], dict[str, float]]:
                prefix = logs / f"{phase}-"
                run, used = self.wrk(
                    gateway,
                    "post.lua",
                    seconds,
                    {
                        "PM_BENCH_RUN": f"{run_label}{phase}",
                        "PM_BENCH_RATE": str(rate),
                        "PM_BENCH_LOG": str(prefix),
                    },
                    connections=self.options.write_connections,
                )
                return run, used, _created(logs, f"{phase}-")

            post("warmup", max(2.0, self.options.warmup), 0)
            maximum, max_cpu, max_created = post("max", self.options.write_seconds, 0)
            max_rate = len(max_created) / maximum.seconds
            say(
                f"  write max    {max_rate:8.1f} creates/s  p50 {maximum.p50_ms:6.2f} ms  p99 {maximum.p99_ms:7.2f} ms  errors {maximum.errors}"
            )
            paced_rate = max(1.0, round(max_rate / 2, 1))
            paced, paced_cpu, paced_created = post("paced", self.options.paced_seconds, paced_rate)
            say(
                f"  write paced  {len(paced_created) / paced.seconds:8.1f} creates/s (asked {paced_rate})  errors {paced.errors}"
            )
            every = _created(logs, "")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not every.keys() <= seen.keys():
                time.sleep(0.1)
            # wrk stops with requests in flight: those patients are stored but their 201 was never read,
            # and some commit only after wrk has exited. The patient database is the reference for "every
            # event": count its bench rows once no new one has appeared for QUIET_SECONDS.
            stored = _stored_patients(self.databases["patient"], run_label)
            unchanged_since = time.monotonic()
            while time.monotonic() < deadline and time.monotonic() - unchanged_since < QUIET_SECONDS:
                time.sleep(0.25)
                again = _stored_patients(self.databases["patient"], run_label)
                if again != stored:
                    stored, unchanged_since = again, time.monotonic()
            while time.monotonic() < deadline and not stored <= seen.keys():
                time.sleep(0.1)
        finally:
            stop.set()
            watcher.join(5)
        counts = _event_counts(analytics, sorted(stored))
        created_after = _patients_created(analytics)
        analytics.dispose()
        latencies = [1000 * (seen[pid] - at) for pid, at in paced_created.items() if pid in seen]
        missing = [pid for pid in stored if counts.get(pid, 0) == 0]
        duplicated = [pid for pid in stored if counts.get(pid, 0) > 1]
        self.results["writes"] = {
            "max": {**maximum.as_dict(), "creates_per_second": round(max_rate, 1), "cpu_percent": max_cpu},
            "paced": {
                **paced.as_dict(),
                "asked_rate": paced_rate,
                "creates": len(paced_created),
                "creates_per_second": round(len(paced_created) / paced.seconds, 1),
                "cpu_percent": paced_cpu,
                "non_201": paced.requests - len(paced_created),
            },
            "events": {
                "creates_answered_201": len(every),
                "patients_stored": len(stored),
                "unanswered_at_wrk_stop": len(stored) - len(every),
                "missing_in_analytics": len(missing),
                "counted_more_than_once": len(duplicated),
                "analytics_patients_created_delta": created_after - created_before,
                "latency_ms_p50": round(percentile(latencies, 50), 1) if latencies else None,
                "latency_ms_p99": round(percentile(latencies, 99), 1) if latencies else None,
                "latency_samples": len(latencies),
                "latency_resolution_ms": WATCH_INTERVAL * 1000,
            },
        }
        events = self.results["writes"]["events"]
        paced_ok = paced.errors == 0 and paced.requests == len(paced_created)
        exactly_once = (
            bool(stored)
            and every.keys() <= stored
            and not missing
            and not duplicated
            and events["analytics_patients_created_delta"] == len(stored)
        )
        self.results["writes"]["targets"] = [
            {"name": "write path: zero errors at 50% of max", "met": paced_ok},
            {"name": "write path: every event counted by analytics exactly once", "met": exactly_once},
        ]

    def footprint(self) -> None:
        rss: dict[str, float] = {}
        for name, process in self.processes().items():
            try:
                family = [process, *process.children(recursive=True)]
                rss[name] = round(sum(p.memory_info().rss for p in family) / 2**20, 1)
            except psutil.Error:
                continue
        services = [spec.name for spec in SERVICES]
        self.results["footprint"] = {
            "rss_mb": rss,
            "targets": [
                {
                    "name": f"footprint: every service <= {RSS_LIMIT_MB:.0f} MB RSS",
                    "met": all(rss.get(name, RSS_LIMIT_MB + 1) <= RSS_LIMIT_MB for name in services),
                }
            ],
        }


# After wrk stops, no new bench patient for this long means the creates it left in flight are done
# (the slowest create of a run, printed as max_ms, stays around a second on these machines).
QUIET_SECONDS = 3.0
WATCH_INTERVAL = 0.01


def _watch_events(engine: sa.Engine, seen: dict[str, float], stop: threading.Event) -> None:
    """Record when each created patient's event first appears in analytics' table (committed rows)."""
    last = 0
    query = sa.text(
        "SELECT seq, patient_id FROM patient_event WHERE seq > :last AND event_type = 'PATIENT_CREATED' ORDER BY seq"
    )
    with engine.connect() as conn:
        last = int(conn.execute(sa.text("SELECT coalesce(max(seq), 0) FROM patient_event")).scalar_one())
        conn.commit()
        while not stop.is_set():
            rows = conn.execute(query, {"last": last}).all()
            conn.commit()
            now = time.time()
            for seq, patient_id in rows:
                seen.setdefault(patient_id, now)
                last = max(last, int(seq))
            time.sleep(WATCH_INTERVAL)


def _stored_patients(patient_url: str, run_label: str) -> set[str]:
    engine = sa.create_engine(patient_url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id FROM patients WHERE email LIKE :pattern"),
                {"pattern": f"bench-{run_label}%"},
            )
            return {str(row[0]) for row in rows}
    finally:
        engine.dispose()


def _patients_created(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT coalesce(sum(patients_created), 0) FROM totals")).scalar_one()
    return int(value)


def _event_counts(engine: sa.Engine, patient_ids: list[str]) -> dict[str, int]:
    if not patient_ids:
        return {}
    query = sa.text(
        "SELECT patient_id, count(*) FROM patient_event WHERE event_type = 'PATIENT_CREATED' "
        "AND patient_id IN :ids GROUP BY patient_id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    with engine.connect() as conn:
        return {str(pid): int(n) for pid, n in conn.execute(query, {"ids": patient_ids})}


def _created(directory: Path, prefix: str) -> dict[str, float]:
    """Patient id -> epoch seconds of its 201, from the per-thread logs written by lua/post.lua."""
    created: dict[str, float] = {}
    for path in sorted(directory.glob(f"{prefix}*")):
        for line in path.read_text().splitlines():
            patient_id, _, at = line.partition(" ")
            if patient_id != "?":
                created[patient_id] = float(at) / 1000
    return created


def _summary(runs: list[WrkRun], cpu: list[dict[str, float]]) -> dict[str, Any]:
    def median(values: list[float]) -> float:
        return round(sorted(values)[len(values) // 2], 2)

    names = cpu[0].keys() if cpu else []
    return {
        "rps": median([r.rps for r in runs]),
        "p50_ms": median([r.p50_ms for r in runs]),
        "p99_ms": median([r.p99_ms for r in runs]),
        "errors": sum(r.errors for r in runs),
        "cpu_percent": {name: median([c[name] for c in cpu]) for name in names},
    }


def say(line: str) -> None:
    print(line, flush=True)


def render(results: Mapping[str, Any]) -> str:
    reads = results["reads"]["summary"]
    lines = [
        f"machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['memory_gb']} GB; load before {results['load_before']} after {results['load_after']}",
        "",
        table(
            ["GET /patients/{id}", "req/s", "p50 ms", "p99 ms", "errors", "busiest processes (% of a core)"],
            [
                [name, f"{s['rps']:.0f}", s["p50_ms"], s["p99_ms"], s["errors"], _busiest(s["cpu_percent"])]
                for name, s in reads.items()
            ],
        ),
        "",
    ]
    writes = results["writes"]
    events = writes["events"]
    targets = [*results["reads"]["targets"], *writes["targets"], *results["footprint"]["targets"]]
    lines += [
        table(
            ["target", "measured", "met"],
            [
                [
                    t["name"],
                    f"{t['ratio']:.2f} (rounds {t['round_ratios']})" if "ratio" in t else "",
                    "yes" if t["met"] else "NO",
                ]
                for t in targets
            ],
        ),
        "",
        f"writes: max {writes['max']['creates_per_second']} creates/s (p50 {writes['max']['p50_ms']} ms, p99 "
        f"{writes['max']['p99_ms']} ms); paced {writes['paced']['creates_per_second']} creates/s for "
        f"{writes['paced']['seconds']} s, errors {writes['paced']['errors']}, non-201 {writes['paced']['non_201']}",
        f"events: {events['patients_stored']} patients stored ({events['creates_answered_201']} 201s read), missing {events['missing_in_analytics']}, counted twice "
        f"{events['counted_more_than_once']}; 201 -> analytics p50 {events['latency_ms_p50']} ms, p99 "
        f"{events['latency_ms_p99']} ms",
        "",
        table(
            ["process", "RSS MB after the run", "cold start to healthy s"],
            [
                [name, mb, results["startup"]["service_seconds"].get(name, "")]
                for name, mb in results["footprint"]["rss_mb"].items()
            ],
        ),
        f"whole system READY in {results['startup']['ready_seconds']} s",
    ]
    return "\n".join(lines)


def _busiest(cpu: Mapping[str, float]) -> str:
    top = sorted(cpu.items(), key=lambda item: -item[1])[:3]
    return ", ".join(f"{name} {value:.0f}" for name, value in top)


@contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as name:
        yield Path(name)


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    check_tools()
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_before": load(),
        "options": {
            "duration_s": options.duration,
            "warmup_s": options.warmup,
            "repeats": options.repeats,
            "connections": options.connections,
            "write_connections": options.write_connections,
            "threads": options.threads,
            "paced_s": options.paced_seconds,
        },
    }
    with _workdir() as workdir:
        bench = Bench(options, workdir)
        try:
            say("[bench] starting the system on PostgreSQL")
            bench.start_system()
            bench.start_nginx()
            bench.login()
            say(
                f"[bench] READY in {bench.results['startup']['ready_seconds']} s; reads ({options.repeats} rounds)"
            )
            bench.read_scenarios()
            say("[bench] write path")
            bench.write_scenario()
            bench.footprint()
        except RuntimeError as err:
            options.output.parent.mkdir(parents=True, exist_ok=True)
            kept = options.output.parent / "services.log"
            shutil.copy(workdir / "services.log", kept)
            say(f"[bench] failed: {err}; the services' log is in {kept}")
            raise SystemExit(1) from None
        finally:
            bench.stop()
        results.update(bench.results)
    results["load_after"] = load()
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(render(results))
    say(f"\n[bench] results in {options.output}")
    failed = [
        t["name"]
        for t in [
            *results["reads"]["targets"],
            *results["writes"]["targets"],
            *results["footprint"]["targets"],
        ]
        if not t["met"]
    ]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
