"""What the audit trail costs a read: `./pants run src/python/pm/bench:audit_cost -- [--seconds N] [--rounds N]`.

Starts two patient services as child processes on one fresh PostgreSQL database (migrated and seeded),
identical but for the audit trail: `bootstrap(..., audit=False)` and the real wiring. Tokens are checked
with a key made for the run (no auth service); the broker and billing are unreachable, which reads never
need. Then, in rounds that alternate which goes first so the machine's background load falls on both
alike, it drives `GET /patients/{id}` of one seeded patient against one service at a time:

- one client, one request after another: the latency each read gets (median, p95);
- `--clients` concurrent clients (threads, keep-alive): requests per second, where the chain head's lock
  makes the audited reads queue for each other.

It prints each figure for both, the ratio audited/plain (median of the per-round ratios), the load
average before and after, and what an entry takes in PostgreSQL: the heap bytes per row
(`pg_relation_size / rows`), the indexes' bytes per row, and the average `pg_column_size` of a row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from pm.bench.harness import admin_token, public_pem, signing_key, wait_healthy
from pm.bench.measure import load, machine
from pm.common.broker import free_port
from pm.common.pgadmin import DEFAULT_ADMIN_URL, create_database, drop_database

SEED_PATIENT = "123e4567-e89b-12d3-a456-426614174000"
KID = "audit-bench"
ISSUER = "pm-auth"
MODES = ("plain", "audited")


def serve(argv: list[str]) -> None:
    """The child: one patient service, with or without the audit trail, until SIGTERM."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from pm.common.config import Env
    from pm.common.logs import configure_logging
    from pm.common.tokens import StaticKeys, TokenVerifier
    from pm.common.web import serve as serve_http
    from pm.patient.bootstrap import bootstrap
    from pm.patient.config import Settings

    mode, port, database_url, key_file = argv
    configure_logging("patient", "WARNING")
    unreachable = f"127.0.0.1:{free_port()}"
    settings = Settings.from_env(
        Env(
            {
                "PM_PATIENT_DATABASE_URL": database_url,
                "PM_KAFKA_BOOTSTRAP_SERVERS": unreachable,
                "PM_BILLING_GRPC_TARGET": unreachable,
                "PM_LOG_LEVEL": "WARNING",
            }
        )
    )
    public = load_pem_public_key(Path(key_file).read_bytes())
    service = bootstrap(
        settings,
        verifier=TokenVerifier(StaticKeys({KID: public}), issuer=ISSUER),
        audit=mode == "audited",
    )
    # No workers (relay, topics, revocations): reads need none of them.
    serve_http(service.app, host="127.0.0.1", port=int(port), service=f"patient-{mode}")


def _start(mode: str, database_url: str, key_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pm.bench.audit_cost", "serve", mode, str(port), database_url, str(key_file)],
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(f"{url}/health/live", timeout=60, processes=[process]):
        raise RuntimeError(f"the {mode} service did not start")
    return process, url


def _drive(url: str, token: str, clients: int, seconds: float) -> dict[str, float]:
    """`clients` keep-alive clients reading one patient for `seconds`: req/s, median and p95 latency (ms)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    # Clients are made first (an SSL context each: slow on a busy machine), then all start together.
    https = [
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        for _ in range(clients)
    ]
    ready = threading.Barrier(clients + 1)
    stop = 0.0

    def client(i: int) -> None:
        ready.wait()
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = https[i].get(f"/patients/{SEED_PATIENT}").status_code
            latencies[i].append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    stop = started + seconds
    ready.wait()
    for thread in threads:
        thread.join()
    for http in https:
        http.close()
    elapsed = time.monotonic() - started
    every = sorted(x for per in latencies for x in per)
    if sum(errors):
        raise RuntimeError(f"{sum(errors)} reads were not answered 200")
    return {
        "rps": round(len(every) / elapsed, 1),
        "p50_ms": round(statistics.median(every), 2),
        "p95_ms": round(every[int(len(every) * 0.95) - 1], 2),
        "requests": len(every),
    }


def _entry_size(database_url: str) -> dict[str, Any]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE audit_events"))
            row = conn.execute(
                sa.text(
                    "SELECT count(*) AS n, pg_relation_size('audit_events') AS heap, "
                    "pg_indexes_size('audit_events') AS indexes, "
                    "avg(pg_column_size(a.*))::numeric(10,1) AS row_bytes FROM audit_events a"
                )
            ).one()
    finally:
        engine.dispose()
    n = max(1, int(row.n))
    return {
        "entries": int(row.n),
        "heap_bytes_per_entry": round(int(row.heap) / n, 1),
        "index_bytes_per_entry": round(int(row.indexes) / n, 1),
        "avg_row_bytes": float(row.row_bytes or 0),
    }


def _ratio(runs: dict[str, list[dict[str, float]]], key: str) -> float:
    return round(
        statistics.median(a[key] / p[key] for a, p in zip(runs["audited"], runs["plain"], strict=True)), 3
    )


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        serve(args[1:])
        return
    parser = argparse.ArgumentParser(prog="audit_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the throughput runs")
    options = parser.parse_args(args)

    from pm.common.config import Env
    from pm.patient.bootstrap import prepare_database
    from pm.patient.config import Settings

    admin_url = os.environ.get("PM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)
    name = f"pm_bench_audit_{uuid.uuid4().hex[:8]}"
    database_url = create_database(admin_url, name)
    processes: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {"machine": machine(), "load_before": load(), "options": vars(options)}
    try:
        prepare_database(Settings.from_env(Env({"PM_PATIENT_DATABASE_URL": database_url})))
        key = signing_key()
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as pem:
            pem.write(public_pem(key))
        token = admin_token(key, kid=KID, issuer=ISSUER, subject="bench@example.com", lifetime=3600)
        urls: dict[str, str] = {}
        for mode in MODES:
            process, urls[mode] = _start(mode, database_url, Path(pem.name))
            processes.append(process)
            _drive(urls[mode], token, 2, 1.0)  # warm-up: connections, caches
        sequential: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        concurrent: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
        for round_ in range(options.rounds):
            order = MODES if round_ % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                sequential[mode].append(_drive(urls[mode], token, 1, options.seconds))
                concurrent[mode].append(_drive(urls[mode], token, options.clients, options.seconds))
        results.update(
            sequential=sequential,
            concurrent=concurrent,
            ratios={
                "sequential_p50_latency": _ratio(sequential, "p50_ms"),
                "sequential_rps": _ratio(sequential, "rps"),
                "concurrent_rps": _ratio(concurrent, "rps"),
                "concurrent_p50_latency": _ratio(concurrent, "p50_ms"),
            },
            entry_size=_entry_size(database_url),
            load_after=load(),
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        drop_database(admin_url, name)
    _report(results)


def _report(results: dict[str, Any]) -> None:
    print(
        f"machine: {results['machine']['cpus']} CPUs; load before {results['load_before']}, after {results['load_after']}"
    )
    for kind in ("sequential", "concurrent"):
        for mode in MODES:
            runs = results[kind][mode]
            print(
                f"{kind:10} {mode:8} req/s "
                + " ".join(f"{r['rps']:7.1f}" for r in runs)
                + "   p50 ms "
                + " ".join(f"{r['p50_ms']:6.2f}" for r in runs)
                + "   p95 ms "
                + " ".join(f"{r['p95_ms']:6.2f}" for r in runs)
            )
    print("audited/plain (median of per-round ratios):", json.dumps(results["ratios"]))
    print("audit entry size:", json.dumps(results["entry_size"]))
    out = Path("dist/bench/audit.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
