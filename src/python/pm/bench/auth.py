"""Benchmark: logins/s and validations/s of a real auth server over loopback HTTP.

    ./pants run src/python/pm/bench:auth -- --rounds 12 --seconds 10 --concurrency 8
    ./pants run src/python/pm/bench:auth -- --database-url postgresql+psycopg2://postgres@127.0.0.1/bench

The server runs as a forked child process (`pm.auth.main serve`, one uvicorn worker) on a free port with
a throw-away SQLite database unless a database URL is given; clients are threads of this process, so
client and server share the machine's cores. Prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx

from pm.bench.harness import wait_healthy
from pm.common.broker import free_port

DEMO = {"email": "testuser@test.com", "password": "password123"}


def _serve(environ: dict[str, str]) -> None:
    os.environ.update(environ)
    from pm.auth.main import main

    main(["serve"])


def _load(
    name: str, call: Callable[[httpx.Client], int], *, seconds: float, concurrency: int
) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        nonlocal failures
        mine: list[float] = []
        bad = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = call(client)
                mine.append(time.perf_counter() - started)
                bad += status != 200
        with lock:
            latencies.extend(mine)
            failures += bad

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    figures = {
        "requests": len(latencies),
        "non_200": failures,
        "per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000,
    }
    print(
        f"{name:<12} {figures['per_second']:8.1f}/s  p50 {figures['p50_ms']:7.1f} ms  "
        f"p95 {figures['p95_ms']:7.1f} ms  ({figures['requests']:.0f} requests, "
        f"{figures['non_200']:.0f} not 200, {concurrency} clients, {elapsed:.1f} s)"
    )
    return figures


def _bcrypt_ms(rounds: int) -> float:
    hashed = bcrypt.hashpw(b"password123", bcrypt.gensalt(rounds))
    started = time.perf_counter()
    bcrypt.checkpw(b"password123", hashed)
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.bench.auth", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (PM_AUTH_BCRYPT_ROUNDS)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pm-auth-bench-") as scratch:
        port = free_port()
        environ = {
            "PM_AUTH_PORT": str(port),
            "PM_DATA_DIR": scratch,
            "PM_AUTH_DATABASE_URL": args.database_url or f"sqlite:///{Path(scratch) / 'auth.db'}",
            "PM_AUTH_BCRYPT_ROUNDS": str(args.rounds),
            "PM_LOG_LEVEL": "WARNING",
            # All clients log in as one user at once; the brute-force limit would turn that into 429s.
            "PM_AUTH_MAX_FAILURES_PER_EMAIL": "1000000",
            "PM_AUTH_MAX_FAILURES_PER_CLIENT": "1000000",
        }
        # Fork before any client thread exists; the child is a plain single-worker auth server.
        server = multiprocessing.get_context("fork").Process(target=_serve, args=(environ,), daemon=True)
        server.start()
        base = f"http://127.0.0.1:{port}"
        try:
            if not wait_healthy(f"{base}/health", timeout=60.0):
                raise SystemExit(f"auth did not become healthy at {base} within 60s")
            database = "PostgreSQL" if args.database_url else "SQLite"
            load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
            print(
                f"auth at {base}: bcrypt cost {args.rounds}, {database}, {os.cpu_count()} CPUs, load {load}"
            )
            print(f"one bcrypt check at cost {args.rounds}: {_bcrypt_ms(args.rounds):.0f} ms (this process)")
            token = httpx.post(f"{base}/login", json=DEMO, timeout=30).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            _load(
                "login",
                lambda c: c.post(f"{base}/login", json=DEMO).status_code,
                seconds=args.seconds,
                concurrency=args.concurrency,
            )
            _load(
                "validate",
                lambda c: c.get(f"{base}/validate", headers=headers).status_code,
                seconds=args.seconds,
                concurrency=args.concurrency,
            )
        finally:
            if server.pid is not None and server.is_alive():
                os.kill(server.pid, 15)
            server.join(15)


if __name__ == "__main__":
    main()
