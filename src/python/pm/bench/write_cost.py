"""CPU and database round trips per create, two versions of the code side by side:
`./pants run src/python/pm/bench:write_cost -- --baseline DIR [--creates N] [--rounds N] [--port-base P]`.

`DIR` is the `src/python` folder of the code to compare with, e.g. main's:
`git archive main src/python | tar -x -C /tmp/base` then `--baseline /tmp/base/src/python`. Its services
run from that folder (first on `PYTHONPATH`), with this pex's third-party packages and generated protobuf
modules (`pm` is a namespace package); this pex's own code is the other version.

For each version it starts, on fresh PostgreSQL databases, a billing gRPC server and a patient service
(the real wiring, its outbox relay publishing to one embedded broker shared by both versions; tokens
checked with a key made for the run, no auth service), each database reached through a proxy that counts
the queries sent (`pm.bench.pgwire`: each one a round trip). Then in rounds that alternate which version
goes first, one client creates `--creates` patients one after another (`POST /patients`, keep-alive), waits
until the relay has published them all, and notes the CPU time (user + system, `psutil`) the patient and
billing processes used, and the queries each database received, per create. It also notes each process's
CPU at rest (health checks and pollers) over the same span, so what the creates cost can be told apart.

It prints the medians over the rounds for both versions, the ratio, the queries of one create, and the
load average before and after. Ports: `--port-base` and the next 7 (default: free ports).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from pm.bench.harness import admin_token, public_pem, signing_key
from pm.bench.measure import load, machine
from pm.bench.write_versions import ISSUER, KID, Version
from pm.common.broker import Broker, free_port

VERSIONS = ("before", "after")


def _body() -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    return {
        "name": f"Bench Writer {tag[:6]}",
        "email": f"write.{tag}@example.org",
        "address": "1 Bench Road",
        "dateOfBirth": "1980-02-03",
        "registeredDate": "2024-01-02",
    }


def _creates(client: httpx.Client, count: int) -> float:
    started = time.monotonic()
    for _ in range(count):
        response = client.post("/patients", json=_body())
        if response.status_code != 201:
            raise RuntimeError(f"create answered {response.status_code}: {response.text[:200]}")
    return time.monotonic() - started


def _kind(query: str) -> str:
    """A query's shape without its values: up to the table it names."""
    words = query.split()
    if len(words) <= 6:
        return query
    for i, word in enumerate(words[:-1]):
        if word.upper() in ("INTO", "UPDATE", "FROM"):
            return " ".join(words[: i + 2]) if i < 6 else f"{words[0]} ... {word} {words[i + 1]}"
    return " ".join(words[:3]) + " ..."


def measure_round(
    version: Version, client: httpx.Client, creates: int, rest_seconds: float
) -> dict[str, Any]:
    version.drained()
    # At rest: health checks, pollers.
    before = version.cpu()
    time.sleep(rest_seconds)
    rest = {svc: (used - before[svc]) / rest_seconds for svc, used in version.cpu().items()}
    marks = {svc: wire.mark() for svc, wire in version.wire.items()}
    before = version.cpu()
    started = time.monotonic()
    wall = _creates(client, creates)
    version.drained()
    elapsed = time.monotonic() - started
    after = version.cpu()
    cpu = {svc: after[svc] - before[svc] for svc in after}
    sent = {svc: len(wire.since(marks[svc])) for svc, wire in version.wire.items()}
    return {
        "creates": creates,
        "creates_per_second": round(creates / wall, 1),
        "elapsed_s": round(elapsed, 3),
        **{f"{svc}_cpu_ms_per_create": round(cpu[svc] * 1000 / creates, 3) for svc in cpu},
        **{
            f"{svc}_cpu_ms_per_create_less_rest": round((cpu[svc] - rest[svc] * elapsed) * 1000 / creates, 3)
            for svc in cpu
        },
        **{f"{svc}_rest_cpu_ms_per_s": round(rest[svc] * 1000, 2) for svc in rest},
        **{f"{svc}_queries_per_create": round(sent[svc] / creates, 2) for svc in sent},
    }


def one_create(version: Version, client: httpx.Client) -> dict[str, list[str]]:
    """The queries of one create (and of its publication), by shape."""
    version.drained()
    marks = {svc: wire.mark() for svc, wire in version.wire.items()}
    _creates(client, 1)
    version.drained()
    time.sleep(0.2)
    return {svc: [_kind(q) for q in wire.since(marks[svc])] for svc, wire in version.wire.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, required=True, help="src/python of the code to compare with")
    parser.add_argument("--creates", type=int, default=200, help="creates per round and version")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30, help="unmeasured creates per version first")
    parser.add_argument("--rest-seconds", type=float, default=3.0)
    parser.add_argument("--port-base", type=int, default=None)
    parser.add_argument("--prefix", default="pm_wcost", help="database name prefix")
    parser.add_argument("--output", type=Path, default=Path("dist/bench/write_cost.json"))
    args = parser.parse_args(argv)
    if not (args.baseline / "pm" / "patient").is_dir():
        parser.error(f"{args.baseline} holds no pm/patient")

    ports = [args.port_base + i for i in range(9)] if args.port_base else [free_port() for _ in range(9)]
    key = signing_key()
    token = admin_token(
        key, kid=KID, issuer=ISSUER, subject="bench@example.org", lifetime=7200, sid=str(uuid.uuid4())
    )
    load_before = load()
    results: dict[str, Any] = {"machine": machine(), "load_before": load_before, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "public.pem"
        key_file.write_bytes(public_pem(key))
        broker = Broker(ports[8]).start()
        versions: dict[str, Version] = {}
        try:
            versions["before"] = Version(
                "before", args.baseline, ports[0:4], broker.bootstrap, key_file, args.prefix
            )
            versions["after"] = Version("after", None, ports[4:8], broker.bootstrap, key_file, args.prefix)
            for version in versions.values():
                version.wait_ready()
            clients = {
                name: httpx.Client(base_url=v.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
                for name, v in versions.items()
            }
            for client in clients.values():
                _creates(client, args.warmup)
            results["one_create"] = {name: one_create(v, clients[name]) for name, v in versions.items()}
            for round_no in range(args.rounds):
                order = VERSIONS if round_no % 2 == 0 else tuple(reversed(VERSIONS))
                for name in order:
                    figures = measure_round(versions[name], clients[name], args.creates, args.rest_seconds)
                    figures.update(version=name, round=round_no + 1, load=load())
                    results["rounds"].append(figures)
                    print(json.dumps(figures), flush=True)
            for client in clients.values():
                client.close()
        finally:
            for version in versions.values():
                version.close()
            broker.stop()
    results["load_after"] = load()
    summary = _summary(results["rounds"])
    results["summary"] = summary
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    _print(results, summary)


def _summary(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = [k for k in rounds[0] if k not in ("version", "round", "load", "creates")]
    return {
        name: {k: round(statistics.median(r[k] for r in rounds if r["version"] == name), 3) for k in keys}
        for name in VERSIONS
    }


def _print(results: dict[str, Any], summary: dict[str, dict[str, float]]) -> None:
    print(f"\nload average before {results['load_before']}, after {results['load_after']}")
    print(
        f"{'median of ' + str(len(results['rounds']) // 2) + ' rounds':<42} {'before':>10} {'after':>10} {'after/before':>13}"
    )
    for key in summary["before"]:
        b, a = summary["before"][key], summary["after"][key]
        ratio = f"{a / b:.2f}" if b else "-"
        print(f"{key:<42} {b:>10} {a:>10} {ratio:>13}")
    for name, queries in results["one_create"].items():
        for svc, kinds in queries.items():
            counted = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in Counter(kinds).items())
            print(f"one create, {name}, {svc} database ({len(kinds)}): {counted}")


if __name__ == "__main__":
    main()
