"""`analytics rebuild` empties analytics and has the patient relay publish every retained event again: the
summary ends equal to what the patient database says. Its own system here; `test_broker_loss.py` runs it
again after its broker kills."""

from __future__ import annotations

import httpx
import pytest

from tests.reliability.harness import System, patient_body, rebuild_analytics, write_figures

pytestmark = pytest.mark.slow


def test_analytics_rebuild_ends_equal_to_what_the_patient_database_says(system: System, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=system.gateway, headers=headers, timeout=20.0) as client:
        ids = [client.post("/api/patients", json=patient_body("rebuild")).json()["id"] for _ in range(5)]
        assert client.put(f"/api/patients/{ids[0]}", json=patient_body("rebuilt")).status_code == 200
        assert client.delete(f"/api/patients/{ids[1]}").status_code == 204
    figures = rebuild_analytics(system, token)
    write_figures("analytics_rebuild", figures)
    assert (
        figures["analytics_events_after_rebuild"] == figures["distinct_event_ids"] == figures["outbox_events"]
    )
