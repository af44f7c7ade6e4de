"""The runner's pure parts: wrk's summary line, paired ratios against targets, percentiles, the table."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SUMMARY_PREFIX = "BENCH "


class WrkOutputError(ValueError):
    """wrk did not print the summary line written by lua/report.lua (it failed or was killed)."""


@dataclass(frozen=True)
class WrkRun:
    requests: int
    seconds: float
    errors: int
    error_detail: Mapping[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "error_detail": dict(self.error_detail),
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def parse_wrk(output: str) -> WrkRun:
    """The run described by the last `BENCH {...}` line of wrk's stdout."""
    lines = [line for line in output.splitlines() if line.startswith(SUMMARY_PREFIX)]
    if not lines:
        tail = output.strip().splitlines()[-3:]
        raise WrkOutputError("wrk printed no summary line; its output ended with: " + " | ".join(tail))
    try:
        data = json.loads(lines[-1][len(SUMMARY_PREFIX) :])
        errors = {key: int(value) for key, value in data["errors"].items()}
        latency = data["latency_us"]
        return WrkRun(
            requests=int(data["requests"]),
            seconds=int(data["duration_us"]) / 1e6,
            errors=sum(errors.values()),
            error_detail=errors,
            p50_ms=round(latency["p50"] / 1000, 2),
            p90_ms=round(latency["p90"] / 1000, 2),
            p99_ms=round(latency["p99"] / 1000, 2),
            max_ms=round(latency["max"] / 1000, 2),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WrkOutputError(f"unreadable wrk summary line: {lines[-1][:200]} ({exc})") from None


@dataclass(frozen=True)
class Target:
    """`numerator` throughput >= `minimum` x `denominator` throughput, measured in the same rounds."""

    name: str
    numerator: str
    denominator: str
    minimum: float

    def accepts(self, ratio: float) -> bool:
        return ratio >= self.minimum

    def describe(self) -> dict[str, object]:
        return {"numerator": self.numerator, "denominator": self.denominator, "minimum": self.minimum}


@dataclass(frozen=True)
class CpuTarget:
    """CPU per request of the `processes` named for the `numerator` variant <= `maximum` x that of the ones
    named for the `denominator` variant, each measured while its own variant ran, in the same rounds.

    For an edge whose throughput is bound by the service behind it (ours and nginx's both are), a
    throughput ratio cannot show what the edge itself costs; the CPU it burns per request can."""

    name: str
    numerator: str
    numerator_processes: tuple[str, ...]
    denominator: str
    denominator_processes: tuple[str, ...]
    maximum: float

    def accepts(self, ratio: float) -> bool:
        return ratio <= self.maximum

    def describe(self) -> dict[str, object]:
        return {
            "numerator": f"{self.numerator}: {' + '.join(self.numerator_processes)} CPU per request",
            "denominator": f"{self.denominator}: {' + '.join(self.denominator_processes)} CPU per request",
            "maximum": self.maximum,
        }


@dataclass(frozen=True)
class Verdict:
    target: Target | CpuTarget
    ratios: tuple[float, ...]

    @property
    def ratio(self) -> float:
        # The median of per-round ratios: each ratio compares two runs taken back to back, so a burst of
        # load from elsewhere on the machine moves one round, not the verdict.
        return statistics.median(self.ratios) if self.ratios else 0.0

    @property
    def met(self) -> bool:
        return bool(self.ratios) and self.target.accepts(self.ratio)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.target.name,
            **self.target.describe(),
            "ratio": round(self.ratio, 3),
            "round_ratios": [round(r, 3) for r in self.ratios],
            "met": self.met,
        }


def _both_ran(runs: Mapping[str, WrkRun], numerator: str, denominator: str) -> tuple[WrkRun, WrkRun] | None:
    """The round's runs of the two variants a target compares, when both ran without errors."""
    top, bottom = runs.get(numerator), runs.get(denominator)
    if top is None or bottom is None or top.errors or bottom.errors:
        return None
    return top, bottom


def evaluate(target: Target, rounds: Sequence[Mapping[str, WrkRun]]) -> Verdict:
    """Ratio per round in which both sides ran without errors and the denominator did any work."""
    ratios = []
    for runs in rounds:
        pair = _both_ran(runs, target.numerator, target.denominator)
        if pair is None or pair[1].rps <= 0:
            continue
        ratios.append(pair[0].rps / pair[1].rps)
    return Verdict(target, tuple(ratios))


def cpu_ms_per_request(
    run: WrkRun, cpu_percent: Mapping[str, float], processes: Sequence[str]
) -> float | None:
    """CPU milliseconds the `processes` used per request answered (% of one core over the run / req/s);
    None when one of them was not sampled (it would count as free) or nothing was answered."""
    if run.rps <= 0 or any(name not in cpu_percent for name in processes):
        return None
    return sum(cpu_percent[name] for name in processes) * 10 / run.rps


def evaluate_cpu(
    target: CpuTarget,
    rounds: Sequence[Mapping[str, WrkRun]],
    cpu: Sequence[Mapping[str, Mapping[str, float]]],
) -> Verdict:
    """Ratio per round (`cpu[i][variant]` is the CPU sampled during round i's run of that variant, in % of
    one core per process) in which both variants ran without errors, every process named was sampled (one
    missing would count as free) and the denominator's processes used any CPU at all."""
    ratios = []
    for runs, used in zip(rounds, cpu, strict=True):
        pair = _both_ran(runs, target.numerator, target.denominator)
        if pair is None:
            continue
        above = cpu_ms_per_request(pair[0], used.get(target.numerator, {}), target.numerator_processes)
        below = cpu_ms_per_request(pair[1], used.get(target.denominator, {}), target.denominator_processes)
        if above is None or below is None or below <= 0:
            continue
        ratios.append(above / below)
    return Verdict(target, tuple(ratios))


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure reported was observed)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (readable on a terminal and pasteable into docs/benchmarks.md)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
