"""`analytics rebuild` empties analytics and has the patient relay publish every retained event again: the
summary ends equal to what the patient database says. Its own system (not the one the broker-loss tests
have killed brokers under), so that it shows the rebuild itself."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from tests.reliability.harness import System, patient_body, wait_until, write_figures

pytestmark = pytest.mark.slow


def test_analytics_rebuild_ends_equal_to_what_the_patient_database_says(system: System, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=system.gateway, headers=headers, timeout=20.0) as client:
        ids = [client.post("/api/patients", json=patient_body("rebuild")).json()["id"] for _ in range(5)]
        assert client.put(f"/api/patients/{ids[0]}", json=patient_body("rebuilt")).status_code == 200
        assert client.delete(f"/api/patients/{ids[1]}").status_code == 204

    def expected() -> dict[str, int]:
        counts = dict(system.sql("patient", "SELECT event_type, count(*) FROM outbox GROUP BY event_type"))
        return {
            "patientsCreated": int(counts.get("PATIENT_CREATED", 0)),
            "patientsUpdated": int(counts.get("PATIENT_UPDATED", 0)),
            "patientsDeleted": int(counts.get("PATIENT_DELETED", 0)),
        }

    def summary() -> dict[str, int]:
        body = httpx.get(system.url("analytics") + "/analytics/summary", headers=headers, timeout=10.0).json()
        return {key: body[key] for key in ("patientsCreated", "patientsUpdated", "patientsDeleted")}

    wait_until(lambda: summary() == expected(), 60.0, "analytics caught up before the rebuild")
    # Make analytics wrong on purpose: a rebuild must not add to what is there, it must start over.
    system.sql("analytics", "UPDATE totals SET patients_created = patients_created + 1000")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pm.analytics.main", "rebuild"],
        env=system.stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    try:
        wait_until(lambda: summary() == expected(), 120.0, "analytics rebuilt from the outbox")
    except AssertionError:
        notes = [line for line in system.log_text().splitlines() if "WARN" in line or "ERROR" in line]
        raise AssertionError(
            f"summary {summary()} != outbox {expected()}; rebuild said: {result.stdout[-2000:]}"
            + "\n".join(notes[-30:])
        ) from None
    rebuilt = time.monotonic() - started
    events = system.sql("analytics", "SELECT count(*), count(DISTINCT event_id) FROM patient_event")[0]
    outbox = system.sql("patient", "SELECT count(*) FROM outbox")[0][0]
    figures = {
        "outbox_events": outbox,
        "analytics_events_after_rebuild": events[0],
        "distinct_event_ids": events[1],
        "seconds_to_rebuild": round(rebuilt, 1),
        **summary(),
    }
    write_figures("analytics_rebuild", figures)
    assert events[0] == events[1] == outbox
