"""Gateway CPU per proxied read, gateways of several checkouts (or settings) side by side:

    python -m pm.bench.gateway_cpu --gateway new=. --gateway old=/work/gw-before --connections 4

Starts auth and patient (this process's code, fresh PostgreSQL databases) and one gateway per
`NAME=CHECKOUT[,VARIABLE=VALUE...]`, each run from that checkout's `src/python` (this process's path after
it) with those variables, all in front of the same two services. In rounds that alternate the order, sends `--requests` authenticated
`GET /api/patients/{id}` through one gateway at a time over `--connections` keep-alive connections, and
reads the gateway process's utime+stime from /proc before and after: the figure is CPU ms per read, which
the machine's other load disturbs far less than req/s. Ports from `--port-base` up (10 of them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from pm.bench.system import SEED_PATIENT
from pm.common.broker import die_with_parent
from pm.common.pgadmin import DEFAULT_ADMIN_URL, create_database, drop_database
from pm.devstack.up import DEMO_LOGIN, port_in_use

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15 of stat)


def start(module: str, checkout: Path | None, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m <module> serve`, from `checkout`'s sources when given (else from this process's path)."""
    paths = [str(checkout / "src/python")] if checkout is not None else []
    paths += env["PYTHONPATH"].split(os.pathsep)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "serve"],
            env={**env, "PYTHONPATH": os.pathsep.join(paths)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # only calls prctl: safe with threads
        )


def wait_until(url: str, ok: set[int], timeout: float = 90.0) -> None:
    """Until `url` answers one of `ok` (a gateway's /health is 503 here: analytics is not running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2.0).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not up after {timeout:.0f}s")
        time.sleep(0.2)


async def drive(port: int, path: str, token: str, requests: int, connections: int) -> int:
    """`requests` GETs over `connections` keep-alive connections; the number of non-200 answers."""
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    left, failures = requests, 0

    async def one_connection() -> None:
        nonlocal left, failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while left > 0:
            left -= 1
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            failures += not head.startswith(b"HTTP/1.1 200")
        writer.close()

    await asyncio.gather(*(one_connection() for _ in range(connections)))
    return failures


def options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pm.bench.gateway_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", action="append", required=True, help="NAME=CHECKOUT[,VARIABLE=VALUE...]")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port-base", type=int, default=5400)
    parser.add_argument("--db-prefix", default="gw_")
    parser.add_argument(
        "--spans-to",
        help="the gateway auth and patient export spans to (their tracing is off "
        "without it); as in the devstack, its CPU then includes receiving them",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    gateways = dict(item.split("=", 1) for item in args.gateway)  # name -> checkout[,VARIABLE=VALUE...]
    workdir = Path(tempfile.mkdtemp(prefix=f"{args.db_prefix}gateway_cpu_"))
    base, local = args.port_base, "http://127.0.0.1"
    ports = {"auth": base, "patient": base + 1, **{name: base + 10 + i for i, name in enumerate(gateways)}}
    if taken := [port for port in ports.values() if port_in_use("127.0.0.1", port)]:
        raise SystemExit(f"ports {taken} are in use: is another run still going?")
    admin = os.environ.get("PM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)
    suffix = uuid.uuid4().hex[:6]
    databases = {name: f"{args.db_prefix}bench_{name}_{suffix}" for name in ("auth", "patient")}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "PYTHONUNBUFFERED": "1",
        "PM_DATA_DIR": str(workdir),
        "PM_AUTH_PORT": str(ports["auth"]),
        "PM_PATIENT_PORT": str(ports["patient"]),
        "PM_AUTH_URL": f"{local}:{ports['auth']}",
        "PM_PATIENT_URL": f"{local}:{ports['patient']}",
        "PM_JWKS_URL": f"{local}:{ports['auth']}/.well-known/jwks.json",
        # Nobody listens there: reads need neither analytics, billing nor the broker.
        "PM_ANALYTICS_URL": f"{local}:{base + 2}",
        "PM_BILLING_GRPC_TARGET": f"127.0.0.1:{base + 3}",
        "PM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{base + 4}",
        "PM_TRUSTED_PROXIES": "127.0.0.1,::1",
    }
    services = {**env, "OTEL_SDK_DISABLED": "true"}
    if args.spans_to:
        services = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{local}:{ports[args.spans_to]}/v1/traces"}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, database in databases.items():
            services[f"PM_{name.upper()}_DATABASE_URL"] = create_database(admin, database)
        for name in ("auth", "patient"):
            processes[name] = start(f"pm.{name}.main", None, services, workdir / "services.log")
        for name, spec in gateways.items():
            checkout, *variables = spec.split(",")
            own = {**env, **dict(v.split("=", 1) for v in variables), "PM_GATEWAY_PORT": str(ports[name])}
            processes[name] = start(
                "pm.gateway.main", Path(checkout).resolve(), own, workdir / "services.log"
            )
        wait_until(f"{env['PM_AUTH_URL']}/health", {200})
        login = {"email": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]}
        token = httpx.post(f"{env['PM_AUTH_URL']}/login", json=login, timeout=15).json()["token"]
        path = f"/api/patients/{SEED_PATIENT}"
        for name in gateways:
            wait_until(f"{local}:{ports[name]}/health", {200, 503})
            asyncio.run(drive(ports[name], path, token, 300, args.connections))  # keys, pools, token cache
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}", flush=True)
        figures: dict[str, list[float]] = {name: [] for name in gateways}
        order = list(gateways)
        for round_ in range(args.rounds):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                before, started = cpu_seconds(processes[name].pid), time.monotonic()
                failures = asyncio.run(drive(ports[name], path, token, args.requests, args.connections))
                used = cpu_seconds(processes[name].pid) - before
                figures[name].append(used * 1000 / args.requests)
                rate = args.requests / (time.monotonic() - started)
                print(
                    f"round {round_ + 1} {name:>8}: {figures[name][-1]:.3f} ms CPU/read, {rate:.0f} req/s, "
                    f"{failures} not 200",
                    flush=True,
                )
        print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load {os.getloadavg()}")
        for name, values in figures.items():
            print(f"{name:>8}: median {statistics.median(values):.3f} ms CPU/read ({args.connections} conn)")
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        for database in databases.values():
            drop_database(admin, database)


if __name__ == "__main__":
    main()
