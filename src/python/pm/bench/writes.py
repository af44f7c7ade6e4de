"""The write path: `POST /api/patients` through the gateway at its maximum, then paced at half of it; every
event must reach analytics exactly once, and how long it took is measured."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pm.bench.measure import Wrk
from pm.bench.options import Options
from pm.bench.results import WrkRun, percentile

# After wrk stops, no new bench patient for this long means the creates it left in flight are done
# (the slowest create of a run, printed as max_ms, stays around a second on these machines).
QUIET_SECONDS = 3.0
WATCH_INTERVAL = 0.01


def write_scenario(
    wrk: Wrk,
    gateway: str,
    databases: dict[str, str],
    options: Options,
    workdir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    analytics = sa.create_engine(databases["analytics"], pool_size=1)
    seen: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_events, args=(analytics, seen, stop), daemon=True)
    created_before = _patients_created(analytics)
    watcher.start()
    logs = workdir / "creates"
    logs.mkdir()
    try:
        run_label = uuid.uuid4().hex[:8]

        def post(
            phase: str, seconds: float, rate: float
        ) -> tuple[WrkRun, dict[str, float], dict[str, float]]:
            prefix = logs / f"{phase}-"
            run, used = wrk(
                gateway,
                "post.lua",
                seconds,
                {
                    "PM_BENCH_RUN": f"{run_label}{phase}",
                    "PM_BENCH_RATE": str(rate),
                    "PM_BENCH_LOG": str(prefix),
                },
                connections=options.write_connections,
            )
            return run, used, _created(logs, f"{phase}-")

        post("warmup", max(2.0, options.warmup), 0)
        maximum, max_cpu, max_created = post("max", options.write_seconds, 0)
        max_rate = len(max_created) / maximum.seconds
        say(
            f"  write max    {max_rate:8.1f} creates/s  p50 {maximum.p50_ms:6.2f} ms  p99 {maximum.p99_ms:7.2f} ms  errors {maximum.errors}"
        )
        paced_rate = max(1.0, round(max_rate / 2, 1))
        paced, paced_cpu, paced_created = post("paced", options.paced_seconds, paced_rate)
        say(
            f"  write paced  {len(paced_created) / paced.seconds:8.1f} creates/s (asked {paced_rate})  errors {paced.errors}"
        )
        every = _created(logs, "")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not every.keys() <= seen.keys():
            time.sleep(0.1)
        # wrk stops with requests in flight: those patients are stored but their 201 was never read,
        # and some commit only after wrk has exited. The patient database is the reference for "every
        # event": count its bench rows once no new one has appeared for QUIET_SECONDS.
        stored = _stored_patients(databases["patient"], run_label)
        unchanged_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - unchanged_since < QUIET_SECONDS:
            time.sleep(0.25)
            again = _stored_patients(databases["patient"], run_label)
            if again != stored:
                stored, unchanged_since = again, time.monotonic()
        while time.monotonic() < deadline and not stored <= seen.keys():
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(5)
    counts = _event_counts(analytics, sorted(stored))
    created_after = _patients_created(analytics)
    analytics.dispose()
    latencies = [1000 * (seen[pid] - at) for pid, at in paced_created.items() if pid in seen]
    missing = [pid for pid in stored if counts.get(pid, 0) == 0]
    duplicated = [pid for pid in stored if counts.get(pid, 0) > 1]
    writes: dict[str, Any] = {
        "max": {**maximum.as_dict(), "creates_per_second": round(max_rate, 1), "cpu_percent": max_cpu},
        "paced": {
            **paced.as_dict(),
            "asked_rate": paced_rate,
            "creates": len(paced_created),
            "creates_per_second": round(len(paced_created) / paced.seconds, 1),
            "cpu_percent": paced_cpu,
            "non_201": paced.requests - len(paced_created),
        },
        "events": {
            "creates_answered_201": len(every),
            "patients_stored": len(stored),
            "unanswered_at_wrk_stop": len(stored) - len(every),
            "missing_in_analytics": len(missing),
            "counted_more_than_once": len(duplicated),
            "analytics_patients_created_delta": created_after - created_before,
            "latency_ms_p50": round(percentile(latencies, 50), 1) if latencies else None,
            "latency_ms_p99": round(percentile(latencies, 99), 1) if latencies else None,
            "latency_samples": len(latencies),
            "latency_resolution_ms": WATCH_INTERVAL * 1000,
        },
    }
    events = writes["events"]
    paced_ok = paced.errors == 0 and paced.requests == len(paced_created)
    exactly_once = (
        bool(stored)
        and every.keys() <= stored
        and not missing
        and not duplicated
        and events["analytics_patients_created_delta"] == len(stored)
    )
    writes["targets"] = [
        {"name": "write path: zero errors at 50% of max", "met": paced_ok},
        {"name": "write path: every event counted by analytics exactly once", "met": exactly_once},
    ]
    return writes


def _watch_events(engine: sa.Engine, seen: dict[str, float], stop: threading.Event) -> None:
    """Record when each created patient's event first appears in analytics' table (committed rows)."""
    last = 0
    query = sa.text(
        "SELECT seq, patient_id FROM patient_event WHERE seq > :last AND event_type = 'PATIENT_CREATED' ORDER BY seq"
    )
    with engine.connect() as conn:
        last = int(conn.execute(sa.text("SELECT coalesce(max(seq), 0) FROM patient_event")).scalar_one())
        conn.commit()
        while not stop.is_set():
            rows = conn.execute(query, {"last": last}).all()
            conn.commit()
            now = time.time()
            for seq, patient_id in rows:
                seen.setdefault(patient_id, now)
                last = max(last, int(seq))
            time.sleep(WATCH_INTERVAL)


def _stored_patients(patient_url: str, run_label: str) -> set[str]:
    engine = sa.create_engine(patient_url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id FROM patients WHERE email LIKE :pattern"),
                {"pattern": f"bench-{run_label}%"},
            )
            return {str(row[0]) for row in rows}
    finally:
        engine.dispose()


def _patients_created(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT coalesce(sum(patients_created), 0) FROM totals")).scalar_one()
    return int(value)


def _event_counts(engine: sa.Engine, patient_ids: list[str]) -> dict[str, int]:
    if not patient_ids:
        return {}
    query = sa.text(
        "SELECT patient_id, count(*) FROM patient_event WHERE event_type = 'PATIENT_CREATED' "
        "AND patient_id IN :ids GROUP BY patient_id"
    ).bindparams(sa.bindparam("ids", expanding=True))
    with engine.connect() as conn:
        return {str(pid): int(n) for pid, n in conn.execute(query, {"ids": patient_ids})}


def _created(directory: Path, prefix: str) -> dict[str, float]:
    """Patient id -> epoch seconds of its 201, from the per-thread logs written by lua/post.lua."""
    created: dict[str, float] = {}
    for path in sorted(directory.glob(f"{prefix}*")):
        for line in path.read_text().splitlines():
            patient_id, _, at = line.partition(" ")
            if patient_id != "?":
                created[patient_id] = float(at) / 1000
    return created
