"""Reads at scale: `./pants run src/python/pm/bench:scale -- [--sizes 10000,100000,1000000]`.

Starts the system on fresh PostgreSQL databases, bulk-loads the patient table (generate_series, realistic
names and dates) up to each size in turn, and after each load times the same reads through the gateway
with one client: p50/p99 per read and its growth against the first size; then, with that many patients
present, `--writers` clients create patients through the gateway for `--creates` seconds (creates/s,
p50/p99, errors). See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

from pm.bench.results import percentile
from pm.common.broker import free_port
from pm.common.pgadmin import DEFAULT_ADMIN_URL, create_database, drop_database
from pm.devstack.up import DEMO_LOGIN, SERVICES, Settings, Stack

DATABASES = ("auth", "patient", "billing", "analytics")
SEED_PATIENT = "123e4567-e89b-12d3-a456-426614174000"
FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra "
    "Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol "
    "Kevin Amanda Brian Dorothy George Melissa Timothy Deborah Ronald Stephanie Jason Rebecca Edward Sharon "
    "Jeffrey Laura Ryan Cynthia Jacob Kathleen Gary Amy Nicholas Angela Eric Shirley Jonathan Anna"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker Cruz "
    "Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson "
    "Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez"
).split()
STREETS = "Main Oak Pine Maple Cedar Elm Washington Lake Hill Park Sunset Lincoln Jackson River".split()
CITIES = "Springfield Riverside Franklin Greenville Bristol Clinton Fairview Salem Madison Georgetown".split()

# Rows from generate_series: a multiplicative hash of the row number picks each part, so that the names,
# dates and addresses are spread like real ones and not sorted like the ids.
LOAD = sa.text("""
    INSERT INTO patients (id, name, email, email_key, address, date_of_birth, registered_date,
                          billing_account_id, version, created_at, updated_at)
    SELECT gen_random_uuid(), p.first || ' ' || p.last, e.email, lower(e.email),
           (1 + h % 9999) || ' ' || (:streets)[1 + (h / 7) % cardinality(:streets)] || ' Street, '
               || (:cities)[1 + (h / 11) % cardinality(:cities)],
           date '1930-01-01' + ((h / 13) % 33000)::int, date '2005-01-01' + ((h / 17) % 7600)::int,
           NULL, 1, now(), now()
    FROM generate_series(:start, :stop) AS i,
         LATERAL (SELECT (i * 2654435761) % 4294967296 AS h) AS x,
         LATERAL (SELECT (:first)[1 + h % cardinality(:first)] AS first,
                         (:last)[1 + (h / 101) % cardinality(:last)] AS last) AS p,
         LATERAL (SELECT lower(p.first) || '.' || lower(p.last) || '.' || i || '@example.org' AS email) AS e
    """)


def reads(gateway: str, walk_hops: int) -> dict[str, Callable[[httpx.Client], list[float]]]:
    """Each read as a function of a client returning its timings (seconds)."""

    def timed(path: str, repeats: int = 30) -> Callable[[httpx.Client], list[float]]:
        def run(client: httpx.Client) -> list[float]:
            for _ in range(3):
                client.get(f"{gateway}{path}").raise_for_status()
            return [_time(client, f"{gateway}{path}") for _ in range(repeats)]

        return run

    def follow(start: str, rel: str) -> Callable[[httpx.Client], list[float]]:
        """Open `start`, then follow its `rel` link (the first time from `start`'s own links if rel is
        "prev": that is, last then prev) and time every hop."""

        def run(client: httpx.Client) -> list[float]:
            links = client.get(f"{gateway}{start}").links
            url = links.get("last" if rel == "prev" else rel, {}).get("url")
            timings: list[float] = []
            while url is not None and len(timings) < walk_hops:
                started = time.perf_counter()
                response = client.get(f"{gateway}{url}")
                response.raise_for_status()
                timings.append(time.perf_counter() - started)
                url = response.links.get(rel, {}).get("url")
            return timings

        return run

    return {
        "GET /api/patients?size=20 (by name)": timed("/api/patients?size=20"),
        "?page=1000&size=20 (offset)": timed("/api/patients?page=1000&size=20"),
        "?page=49000&size=20 (offset)": timed("/api/patients?page=49000&size=20"),
        "?search=smith&size=20": timed("/api/patients?search=smith&size=20"),
        "?search=zzzq&size=20 (no match)": timed("/api/patients?search=zzzq&size=20"),
        "?sort=-registeredDate&size=20": timed("/api/patients?sort=-registeredDate&size=20"),
        f"next links from page 0 ({walk_hops} hops)": follow("/api/patients?size=20", "next"),
        f"last, then prev links ({walk_hops} hops)": follow("/api/patients?size=20", "prev"),
        "GET /api/patients/{id}": timed(f"/api/patients/{SEED_PATIENT}"),
    }


def creates(
    gateway: str, headers: dict[str, str], seconds: float, writers: int
) -> tuple[float, list[float], int]:
    """`writers` clients each creating patients one after another for `seconds`: creates/s (201s over the
    wall time), the latency of every 201, and how many answers were not 201."""
    run = uuid.uuid4().hex[:8]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def writer(n: int) -> None:
        with httpx.Client(headers=headers, timeout=60.0) as client:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                body = {
                    "name": f"Scale Writer {n} {i}",
                    "email": f"scale.{run}.{n}.{i}@example.org",
                    "address": f"{i} Main Street, Springfield",
                    "dateOfBirth": "1980-05-17",
                    "registeredDate": "2024-01-02",
                }
                started = time.perf_counter()
                answer = client.post(f"{gateway}/api/patients", json=body)
                took = time.perf_counter() - started
                with lock:
                    if answer.status_code == 201:
                        latencies.append(took)
                    else:
                        errors[0] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - started), sorted(latencies), errors[0]


def _time(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    client.get(url).raise_for_status()
    return time.perf_counter() - started


class Scale:
    def __init__(self, prefix: str, ports: dict[str, int], admin_url: str, workdir: Path) -> None:
        self.prefix, self.admin_url, self.workdir = prefix, admin_url, workdir
        self.ports = ports
        self.databases: dict[str, str] = {}
        self.stack: Stack | None = None

    def start(self) -> None:
        suffix = uuid.uuid4().hex[:6]
        for name in DATABASES:
            url = create_database(self.admin_url, f"{self.prefix}_{name}_{suffix}")
            self.databases[name] = url
            os.environ[f"PM_{name.upper()}_DATABASE_URL"] = url
        kafka_port = self.ports.pop("PM_KAFKA_PORT")
        settings = Settings("127.0.0.1", self.workdir / "data", self.ports, None, kafka_port, 180.0)
        self.stack = Stack(settings)
        self.stack.say = lambda line: None  # type: ignore[method-assign]  # figures only on stdout
        self.stack.start()
        self.stack.wait_healthy()

    def login(self) -> str:
        """A fresh access token: they live 15 minutes, less than loading a million patients takes."""
        gateway = f"http://127.0.0.1:{self.ports['PM_GATEWAY_PORT']}"
        login = httpx.post(
            f"{gateway}/auth/login",
            json=dict(zip(("email", "password"), DEMO_LOGIN, strict=True)),
            timeout=60.0,
        )
        login.raise_for_status()
        return str(login.json()["token"])

    def load(self, upto: int) -> float:
        """Add patients until the table holds `upto` of them; the seconds it took (load and ANALYZE)."""
        engine = sa.create_engine(self.databases["patient"])
        started = time.monotonic()
        try:
            with engine.begin() as conn:
                have = conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one()
            for start in range(have + 1, upto + 1, 100_000):
                with engine.begin() as conn:
                    conn.execute(
                        LOAD,
                        {
                            "start": start,
                            "stop": min(start + 99_999, upto),
                            "first": FIRST,
                            "last": LAST,
                            "streets": STREETS,
                            "cities": CITIES,
                        },
                    )
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE patients"))
        finally:
            engine.dispose()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        for url in self.databases.values():
            drop_database(self.admin_url, sa.make_url(url).database or "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="patients per step (ascending)")
    parser.add_argument("--prefix", default="pm_scale", help="prefix of the databases it creates")
    parser.add_argument("--port-base", type=int, help="first of 7 consecutive ports (default: free ports)")
    parser.add_argument("--hops", type=int, default=100, help="links followed per walk")
    parser.add_argument("--creates", type=float, default=20.0, help="seconds of creates per size (0: none)")
    parser.add_argument("--writers", type=int, default=8, help="clients creating at once")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [spec.port_var for spec in SERVICES] + ["PM_BILLING_GRPC_PORT", "PM_KAFKA_PORT"]
    ports = {n: (args.port_base + i if args.port_base else free_port()) for i, n in enumerate(names)}
    figures: dict[str, dict[int, tuple[float, float]]] = {}
    writes: dict[int, tuple[float, float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="pm-scale-") as workdir:
        scale = Scale(
            args.prefix, ports, os.environ.get("PM_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL), Path(workdir)
        )
        try:
            scale.start()
            gateway = f"http://127.0.0.1:{ports['PM_GATEWAY_PORT']}"
            for size in sizes:
                print(f"[scale] loading up to {size:,} patients ...", flush=True)
                print(f"[scale] loaded in {scale.load(size):.0f} s; reading", flush=True)
                headers = {"Authorization": f"Bearer {scale.login()}"}
                with httpx.Client(headers=headers, timeout=60.0) as client:
                    for name, run in reads(gateway, args.hops).items():
                        timings = sorted(run(client))
                        figures.setdefault(name, {})[size] = (
                            percentile(timings, 50),
                            percentile(timings, 99),
                        )
                        print(f"  {name:<42} p50 {1000 * figures[name][size][0]:8.1f} ms", flush=True)
                if args.creates > 0:
                    rate, took, errors = creates(gateway, headers, args.creates, args.writers)
                    writes[size] = (rate, percentile(took, 50), percentile(took, 99), errors)
                    label = f"creates ({args.writers} clients)"
                    print(f"  {label:<42} {rate:8.1f} /s, {errors} not 201", flush=True)
        finally:
            scale.stop()
    print(render(figures, sizes))
    for size, (rate, p50, p99, errors) in writes.items():
        print(
            f"creates with {size:,} patients present: {rate:.1f}/s, p50 {1000 * p50:.1f} ms, "
            f"p99 {1000 * p99:.1f} ms, {errors} not 201"
        )


def render(figures: dict[str, dict[int, tuple[float, float]]], sizes: list[int]) -> str:
    head = " | ".join(f"{s:,} p50 / p99" for s in sizes)
    lines = [
        f"| read | {head} | growth (p50, {sizes[-1]:,} vs {sizes[0]:,}) |",
        "|---" * (len(sizes) + 2) + "|",
    ]
    for name, by_size in figures.items():
        cells = " | ".join(f"{1000 * by_size[s][0]:.1f} / {1000 * by_size[s][1]:.1f} ms" for s in sizes)
        growth = by_size[sizes[-1]][0] / by_size[sizes[0]][0]
        lines.append(f"| {name} | {cells} | x{growth:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
