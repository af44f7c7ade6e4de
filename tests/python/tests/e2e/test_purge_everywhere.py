"""A purged patient leaves no trace of its personal data in any database of the system.

The whole system runs (devstack on PostgreSQL, one database per service); a patient is created, renamed,
seen by analytics, then purged through the gateway. Afterwards every column of every table of every
database (auth, patient, billing, analytics) is read and searched for the patient's names, emails,
address and date of birth, text and binary (stored event payloads) alike.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from pm.common.db import make_engine
from tests.e2e.conftest import SERVICES_WITH_DATABASES, RunningSystem


def _wait_for_event(gateway: httpx.Client, auth: dict[str, str], patient_id: str, event_type: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = gateway.get("/api/analytics/events", params={"limit": 200}, headers=auth).json()
        if any(e["patientId"] == patient_id and e["eventType"] == event_type for e in events):
            return
        time.sleep(0.5)
    raise AssertionError(f"analytics did not record {event_type} within 60 s")


def _matches(value: Any, needles: list[str]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value).lower()
        return [n for n in needles if n.lower().encode() in raw]
    text = str(value).lower()
    return [n for n in needles if n.lower() in text]


def _scan(url: str, needles: list[str]) -> tuple[list[str], int]:
    """(`table.column: needle` for every hit, number of cells read) over every table of the database."""
    engine = make_engine(url)
    hits: list[str] = []
    cells = 0
    try:
        with engine.connect() as conn:
            metadata = sa.MetaData()
            metadata.reflect(conn)
            for table in metadata.sorted_tables:
                for row in conn.execute(sa.select(table)):
                    for column, value in zip(table.columns, row, strict=True):
                        cells += 1
                        hits.extend(f"{table.name}.{column.name}: {n}" for n in _matches(value, needles))
    finally:
        engine.dispose()
    return hits, cells


def test_a_purged_patients_data_is_nowhere_in_any_database(
    system: RunningSystem, gateway: httpx.Client, auth: dict[str, str]
) -> None:
    tag = uuid.uuid4().hex[:10]
    body = {
        "name": f"Purgeable Person {tag}",
        "email": f"purgeable.{tag}@example.com",
        "address": f"{tag} Forgotten Lane, Springfield",
        "dateOfBirth": "1931-07-19",
        "registeredDate": "2024-05-06",
    }
    renamed = {**body, "name": f"Renamed Purgeable {tag}", "email": f"renamed.{tag}@example.com"}
    created = gateway.post("/api/patients", json=body, headers=auth)
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    updated = gateway.put(f"/api/patients/{patient_id}", json=renamed, headers=auth)
    assert updated.status_code == 200, updated.text
    _wait_for_event(gateway, auth, patient_id, "PATIENT_UPDATED")

    # History through the gateway, before the purge: both versions with their records.
    history = gateway.get(f"/api/patients/{patient_id}/history", params={"size": 1}, headers=auth)
    assert history.status_code == 200, history.text
    assert [v["changeType"] for v in history.json()] == ["UPDATED"]
    assert history.links["next"]["url"].startswith(f"/api/patients/{patient_id}/history?")
    older = gateway.get(history.links["next"]["url"], headers=auth).json()
    assert [(v["version"], v["patient"]["name"]) for v in older] == [(1, body["name"])]
    assert (
        gateway.get(f"/api/patients/{patient_id}/history/2", headers=auth).json()["patient"]["name"]
        == renamed["name"]
    )

    needles = [body["name"], body["email"], body["address"], renamed["name"], renamed["email"], tag]
    databases = {name.lower(): system.env[f"PM_{name}_DATABASE_URL"] for name in SERVICES_WITH_DATABASES}
    before = {service: _scan(url, needles)[0] for service, url in databases.items()}
    # The check can see: the data is in the patient, billing and analytics databases before the purge.
    assert before["patient"] and before["billing"] and before["analytics"], before

    purged = gateway.delete(f"/api/patients/{patient_id}", params={"purge": "true"}, headers=auth)
    assert purged.status_code == 204, purged.text
    _wait_for_event(gateway, auth, patient_id, "PATIENT_PURGED")

    after = {service: _scan(url, needles) for service, url in databases.items()}
    assert {service: hits for service, (hits, _) in after.items()} == {s: [] for s in databases}
    assert all(cells > 0 for _, cells in after.values())
    with make_engine(databases["patient"]).connect() as conn:
        born = conn.execute(
            sa.text(
                "SELECT count(*) FROM patient_versions WHERE patient_id = :id AND date_of_birth IS NOT NULL"
            ),
            {"id": patient_id},
        ).scalar_one()
    assert born == 0

    # What stays: the ids, the history's shape, the billing account, the counts.
    gone = gateway.get(f"/api/patients/{patient_id}", headers=auth)
    assert gone.status_code == 410
    versions = gateway.get(f"/api/patients/{patient_id}/history", headers=auth).json()
    assert [(v["changeType"], v["patient"]) for v in versions] == [
        ("PURGED", None),
        ("DELETED", None),
        ("UPDATED", None),
        ("CREATED", None),
    ]
    assert gateway.get("/api/patients", params={"search": tag}, headers=auth).json() == []
    summary = gateway.get("/api/analytics/summary", headers=auth).json()
    assert summary["patientsCreated"] >= 1 and summary["patientsDeleted"] >= 1
