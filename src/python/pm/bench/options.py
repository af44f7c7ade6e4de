"""The runner's command line: how long, how many rounds, how many connections, where the results go."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from pm.common.pgadmin import DEFAULT_ADMIN_URL


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

    def as_dict(self) -> dict[str, float | int]:
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "repeats": self.repeats,
            "connections": self.connections,
            "write_connections": self.write_connections,
            "threads": self.threads,
            "paced_s": self.paced_seconds,
        }


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
