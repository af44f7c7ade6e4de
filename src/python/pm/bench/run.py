"""Benchmarks with targets: `./pants run src/python/pm/bench:run -- [--quick]`.

Starts the whole system (devstack's Stack) on fresh PostgreSQL databases and a private broker, the
framework floor (`pm.bench.floor`) beside it, and nginx in front of the same patient service (with and
without auth_request); drives every variant with wrk, A/B interleaved over several rounds, then measures
the write path and the footprint. Prints one table and writes dist/bench/results.json. See
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pm.bench.measure import Wrk, footprint, load, machine
from pm.bench.options import Options, parse_options
from pm.bench.reads import read_scenarios
from pm.bench.report import render
from pm.bench.system import System
from pm.bench.writes import write_scenario
from pm.devstack.up import SERVICES

RSS_LIMIT_MB = 150.0


def check_tools() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"pm.bench: {' and '.join(missing)} not found; install with: apt-get install -y wrk nginx-light"
        )


def say(line: str) -> None:
    print(line, flush=True)


def measure(system: System, options: Options, workdir: Path) -> dict[str, Any]:
    """Start the system, then every scenario in turn: the results' measured sections."""
    say("[bench] starting the system on PostgreSQL")
    results: dict[str, Any] = {"startup": system.start()}
    wrk = Wrk(system.token, options.threads, options.connections, system.processes)
    say(f"[bench] READY in {results['startup']['ready_seconds']} s; reads ({options.repeats} rounds)")
    results["reads"] = read_scenarios(wrk, system.get_variants(), options, say)
    say("[bench] write path")
    results["writes"] = write_scenario(
        wrk, system.gateway_url("/api/patients"), system.databases, options, workdir, say
    )
    services = [spec.name for spec in SERVICES]
    results["footprint"] = footprint(system.processes(), services, RSS_LIMIT_MB)
    return results


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
        "options": options.as_dict(),
    }
    with _workdir() as workdir:
        system = System(options.admin_url, workdir)
        try:
            results.update(measure(system, options, workdir))
        except RuntimeError as err:
            options.output.parent.mkdir(parents=True, exist_ok=True)
            kept = options.output.parent / "services.log"
            shutil.copy(system.log_path, kept)
            say(f"[bench] failed: {err}; the services' log is in {kept}")
            raise SystemExit(1) from None
        finally:
            system.stop()
    results["load_after"] = load()
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    say("")
    say(render(results))
    say(f"\n[bench] results in {options.output}")
    targets = [
        *results["reads"]["targets"],
        *results["writes"]["targets"],
        *results["footprint"]["targets"],
    ]
    sys.exit(0 if all(t["met"] for t in targets) else 1)


if __name__ == "__main__":
    main()
