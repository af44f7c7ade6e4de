"""What tracing costs: `./pants run src/python/pm/bench:tracing_cost -- [--quick]`.

Starts three systems side by side on fresh PostgreSQL databases, identical but for tracing: off
(`OTEL_SDK_DISABLED=true`), sampled at 10 % and at 100 % (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`
with `OTEL_TRACES_SAMPLER_ARG`), each with the gateway's embedded trace store. Only one is driven at a
time, in interleaved rounds (each round starts with a different mode), so that the machine's background
load falls on every mode alike. Reads: `GET /api/patients/{id}` through the gateway with wrk; writes:
`POST /api/patients` as fast as the system answers. Prints req/s per mode and the change against off;
writes dist/bench/tracing.json. See docs/observability.md for the figures and the default chosen.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from pm.bench.measure import Wrk, load, machine
from pm.bench.options import Options, parse_options
from pm.bench.results import WrkRun
from pm.bench.run import _workdir, say
from pm.bench.system import SEED_PATIENT, System

MODES: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.0"},
}
OTEL_VARIABLES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")


def start(options: Options, workdir: Path, mode: str) -> System:
    """Start one whole system with `mode`'s tracing (databases, services, a login)."""
    for name in OTEL_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(MODES[mode])
    system = System(options.admin_url, workdir)
    system.start()
    return system


def main(argv: list[str] | None = None) -> None:
    options = parse_options(argv)
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "load_before": load(),
        "options": {
            "duration_s": options.duration,
            "repeats": options.repeats,
            "connections": options.connections,
        },
    }
    reads: dict[str, list[WrkRun]] = {mode: [] for mode in MODES}
    writes: dict[str, list[WrkRun]] = {mode: [] for mode in MODES}
    read_cpu_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    write_cpu_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    with _workdir() as workdir:
        systems: dict[str, System] = {}
        try:
            for mode in MODES:
                say(f"[bench] starting the system with tracing {mode}")
                folder = workdir / mode.replace("%", "pct")
                folder.mkdir()
                systems[mode] = start(options, folder, mode)
            names = list(MODES)
            for number in range(options.repeats):
                order = names[number % len(names) :] + names[: number % len(names)]
                for mode in order:
                    system = systems[mode]
                    wrk = Wrk(system.token, options.threads, options.connections, system.processes)
                    url = system.gateway_url(f"/api/patients/{SEED_PATIENT}")
                    if options.warmup > 0:
                        wrk(url, "get.lua", options.warmup)
                    read, read_cpu = wrk(url, "get.lua", options.duration)
                    write, write_cpu = wrk(
                        system.gateway_url("/api/patients"),
                        "post.lua",
                        options.write_seconds,
                        {
                            "PM_BENCH_RUN": uuid.uuid4().hex[:8],
                            "PM_BENCH_RATE": "0",
                            "PM_BENCH_LOG": str(workdir / f"creates-{uuid.uuid4().hex[:6]}-"),
                        },
                        connections=options.write_connections,
                    )
                    reads[mode].append(read)
                    writes[mode].append(write)
                    read_cpu_ms[mode].append(cpu_ms_per_request(read_cpu, read))
                    write_cpu_ms[mode].append(cpu_ms_per_request(write_cpu, write))
                    say(
                        f"  round {number + 1} tracing {mode:<5} reads {read.rps:8.0f}/s (errors {read.errors},"
                        f" {read_cpu_ms[mode][-1]:.2f} ms CPU each)  writes {write.rps:7.1f}/s"
                        f" (errors {write.errors}, {write_cpu_ms[mode][-1]:.2f} ms CPU each)"
                    )
        finally:
            for system in systems.values():
                system.stop()
    results["load_after"] = load()
    results["modes"] = {
        mode: {
            "reads_per_s": _median([r.rps for r in reads[mode]]),
            "writes_per_s": _median([w.rps for w in writes[mode]]),
            "read_p99_ms": _median([r.p99_ms for r in reads[mode]]),
            "read_cpu_ms": _median(read_cpu_ms[mode]),
            "write_cpu_ms": _median(write_cpu_ms[mode]),
            "rounds": {
                "reads": [r.as_dict() for r in reads[mode]],
                "writes": [w.as_dict() for w in writes[mode]],
            },
        }
        for mode in MODES
    }
    off = results["modes"]["off"]
    say("")
    say(
        f"{'tracing':<8} {'reads/s':>9} {'vs off':>8} {'writes/s':>9} {'vs off':>8} {'read p99 ms':>12}"
        f" {'CPU/read ms':>12} {'vs off':>8} {'CPU/write ms':>13} {'vs off':>8}"
    )
    for mode, figures in results["modes"].items():
        say(
            f"{mode:<8} {figures['reads_per_s']:9.0f} {_change(figures['reads_per_s'], off['reads_per_s']):>8}"
            f" {figures['writes_per_s']:9.1f} {_change(figures['writes_per_s'], off['writes_per_s']):>8}"
            f" {figures['read_p99_ms']:12.2f}"
            f" {figures['read_cpu_ms']:12.2f} {_change(figures['read_cpu_ms'], off['read_cpu_ms']):>8}"
            f" {figures['write_cpu_ms']:13.2f} {_change(figures['write_cpu_ms'], off['write_cpu_ms']):>8}"
        )
    output = Path("dist/bench/tracing.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    say(
        f"\n[bench] results in {output}; load average before {results['load_before']}, after {results['load_after']}"
    )


def cpu_ms_per_request(cpu_percent: dict[str, float], run: WrkRun) -> float:
    """CPU time the system spent per request answered: every process of it (services, broker, postgres;
    not wrk), from `Wrk`'s per-process % of a core over the run. Less sensitive to a busy machine than
    req/s, since time spent waiting for a CPU is not counted."""
    busy = sum(percent for name, percent in cpu_percent.items() if name != "wrk")
    return busy / 100 * run.seconds / run.requests * 1000 if run.requests else 0.0


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _change(value: float, reference: float) -> str:
    return f"{(value / reference - 1) * 100:+.1f} %" if reference else "n/a"


if __name__ == "__main__":
    main()
