"""Reads: `GET` of one seeded patient through every variant, interleaved rounds, paired ratios as targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pm.bench.measure import Wrk
from pm.bench.options import Options
from pm.bench.results import CpuTarget, Target, WrkRun, evaluate, evaluate_cpu

GET_TARGETS = (
    Target("gateway overhead: gateway >= 0.6 x direct", "gateway", "direct", 0.6),
    Target("peer: gateway >= 0.5 x nginx plain proxy", "gateway", "nginx_plain", 0.5),
    Target("framework floor: direct >= 0.5 x bare route", "direct", "floor", 0.5),
)
# Both edges are bound by the patient process behind them, so their throughput cannot show what checking
# the token costs at the edge; the CPU per request of the processes doing it can.
EDGE_CPU_TARGET = CpuTarget(
    "peer: gateway CPU/request <= 0.8 x (nginx + auth /validate)",
    "gateway",
    ("gateway",),
    "nginx_auth",
    ("nginx", "auth"),
    0.8,
)


def read_scenarios(
    wrk: Wrk, variants: dict[str, str], options: Options, say: Callable[[str], None]
) -> dict[str, Any]:
    names = list(variants)
    rounds: list[dict[str, WrkRun]] = []
    round_cpu: list[dict[str, dict[str, float]]] = []  # per round, per variant: % of a core per process
    for number in range(options.repeats):
        # Interleaved, and each round starts with a different variant: none always runs first or last.
        order = names[number % len(names) :] + names[: number % len(names)]
        runs: dict[str, WrkRun] = {}
        used_by: dict[str, dict[str, float]] = {}
        for name in order:
            if options.warmup > 0:
                wrk(variants[name], "get.lua", options.warmup)
            run, used = wrk(variants[name], "get.lua", options.duration)
            runs[name] = run
            used_by[name] = used
            say(
                f"  round {number + 1} {name:<12} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:7.2f} ms  errors {run.errors}"
            )
        rounds.append(runs)
        round_cpu.append(used_by)
    targets = [evaluate(target, rounds) for target in GET_TARGETS]
    targets.append(evaluate_cpu(EDGE_CPU_TARGET, rounds, round_cpu))
    return {
        "urls": variants,
        "rounds": [
            {name: {**run.as_dict(), "cpu_percent": used[name]} for name, run in runs.items()}
            for runs, used in zip(rounds, round_cpu, strict=True)
        ],
        "summary": {name: summary([r[name] for r in rounds], [u[name] for u in round_cpu]) for name in names},
        "targets": [verdict.as_dict() for verdict in targets],
    }


def summary(runs: list[WrkRun], cpu: list[dict[str, float]]) -> dict[str, Any]:
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
