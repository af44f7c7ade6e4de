"""The runner's report: one text summary of results.json (Markdown tables, pasteable into the docs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pm.bench.results import table


def render(results: Mapping[str, Any]) -> str:
    reads = results["reads"]["summary"]
    lines = [
        f"machine: {results['machine']['cpus']} CPUs ({results['machine']['cpu_model']}), "
        f"{results['machine']['memory_gb']} GB; load before {results['load_before']} after {results['load_after']}",
        "",
        table(
            ["GET /patients/{id}", "req/s", "p50 ms", "p99 ms", "errors", "busiest processes (% of a core)"],
            [
                [name, f"{s['rps']:.0f}", s["p50_ms"], s["p99_ms"], s["errors"], _busiest(s["cpu_percent"])]
                for name, s in reads.items()
            ],
        ),
        "",
    ]
    writes = results["writes"]
    events = writes["events"]
    targets = [*results["reads"]["targets"], *writes["targets"], *results["footprint"]["targets"]]
    lines += [
        table(
            ["target", "measured", "met"],
            [
                [
                    t["name"],
                    f"{t['ratio']:.2f} (rounds {t['round_ratios']})" if "ratio" in t else "",
                    "yes" if t["met"] else "NO",
                ]
                for t in targets
            ],
        ),
        "",
        f"writes: max {writes['max']['creates_per_second']} creates/s (p50 {writes['max']['p50_ms']} ms, p99 "
        f"{writes['max']['p99_ms']} ms); paced {writes['paced']['creates_per_second']} creates/s for "
        f"{writes['paced']['seconds']} s, errors {writes['paced']['errors']}, non-201 {writes['paced']['non_201']}",
        f"events: {events['patients_stored']} patients stored ({events['creates_answered_201']} 201s read), missing {events['missing_in_analytics']}, counted twice "
        f"{events['counted_more_than_once']}; 201 -> analytics p50 {events['latency_ms_p50']} ms, p99 "
        f"{events['latency_ms_p99']} ms",
        "",
        table(
            ["process", "RSS MB after the run", "cold start to healthy s"],
            [
                [name, mb, results["startup"]["service_seconds"].get(name, "")]
                for name, mb in results["footprint"]["rss_mb"].items()
            ],
        ),
        f"whole system READY in {results['startup']['ready_seconds']} s",
    ]
    return "\n".join(lines)


def _busiest(cpu: Mapping[str, float]) -> str:
    top = sorted(cpu.items(), key=lambda item: -item[1])[:3]
    return ", ".join(f"{name} {value:.0f}" for name, value in top)
