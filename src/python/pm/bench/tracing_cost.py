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

import httpx

from pm.bench.results import WrkRun
from pm.bench.run import SEED_PATIENT, Bench, _workdir, load, machine, parse_options, say
from pm.devstack.up import DEMO_LOGIN

MODES: dict[str, dict[str, str]] = {
    "off": {"OTEL_SDK_DISABLED": "true"},
    "10%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    "100%": {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.0"},
}
OTEL_VARIABLES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG")


def start(bench: Bench, mode: str) -> str:
    """Start one system with `mode`'s tracing; its gateway URL once a read answers 200."""
    for name in OTEL_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(MODES[mode])
    bench.start_system()
    gateway = f"http://127.0.0.1:{bench.ports['PM_GATEWAY_PORT']}"
    login = httpx.post(
        f"{gateway}/auth/login", json={"email": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]}, timeout=15.0
    )
    login.raise_for_status()
    bench.token = str(login.json()["token"])
    deadline = time.monotonic() + 30
    while (
        httpx.get(
            f"{gateway}/api/patients/{SEED_PATIENT}",
            headers={"Authorization": f"Bearer {bench.token}"},
            timeout=15,
        ).status_code
        != 200
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{mode}: reads do not answer 200")
        time.sleep(0.5)
    return gateway


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
    with _workdir() as workdir:
        benches: dict[str, Bench] = {}
        gateways: dict[str, str] = {}
        try:
            for mode in MODES:
                say(f"[bench] starting the system with tracing {mode}")
                folder = workdir / mode.replace("%", "pct")
                folder.mkdir()
                benches[mode] = Bench(options, folder)
                gateways[mode] = start(benches[mode], mode)
            names = list(MODES)
            for number in range(options.repeats):
                order = names[number % len(names) :] + names[: number % len(names)]
                for mode in order:
                    bench, gateway = benches[mode], gateways[mode]
                    url = f"{gateway}/api/patients/{SEED_PATIENT}"
                    if options.warmup > 0:
                        bench.wrk(url, "get.lua", options.warmup)
                    read, _ = bench.wrk(url, "get.lua", options.duration)
                    write, _ = bench.wrk(
                        f"{gateway}/api/patients",
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
                    say(
                        f"  round {number + 1} tracing {mode:<5} reads {read.rps:8.0f}/s (errors {read.errors})"
                        f"  writes {write.rps:7.1f}/s (errors {write.errors})"
                    )
        finally:
            for bench in benches.values():
                bench.stop()
    results["load_after"] = load()
    results["modes"] = {
        mode: {
            "reads_per_s": _median([r.rps for r in reads[mode]]),
            "writes_per_s": _median([w.rps for w in writes[mode]]),
            "read_p99_ms": _median([r.p99_ms for r in reads[mode]]),
            "rounds": {
                "reads": [r.as_dict() for r in reads[mode]],
                "writes": [w.as_dict() for w in writes[mode]],
            },
        }
        for mode in MODES
    }
    off = results["modes"]["off"]
    say("")
    say(f"{'tracing':<8} {'reads/s':>9} {'vs off':>8} {'writes/s':>9} {'vs off':>8} {'read p99 ms':>12}")
    for mode, figures in results["modes"].items():
        say(
            f"{mode:<8} {figures['reads_per_s']:9.0f} {_change(figures['reads_per_s'], off['reads_per_s']):>8}"
            f" {figures['writes_per_s']:9.1f} {_change(figures['writes_per_s'], off['writes_per_s']):>8}"
            f" {figures['read_p99_ms']:12.2f}"
        )
    output = Path("dist/bench/tracing.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    say(
        f"\n[bench] results in {output}; load average before {results['load_before']}, after {results['load_after']}"
    )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _change(value: float, reference: float) -> str:
    return f"{(value / reference - 1) * 100:+.1f} %" if reference else "n/a"


if __name__ == "__main__":
    main()
