"""History, soft deletion and purge over HTTP, on PostgreSQL with the real billing server and broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
import httpx
import sqlalchemy as sa

from pm.common.db import Database
from pm.common.tokens import TokenVerifier
from pm.patient.adapters import tables
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.patient.conftest import (
    USER,
    BillingServer,
    Running,
    decode,
    new_patient,
    read_events,
    start_service,
    unreachable_target,
)


def _changed(body: dict[str, str], **changes: str) -> dict[str, str]:
    return {**{k: v for k, v in body.items() if k != "registeredDate"}, **changes}


def test_every_change_is_a_version_and_history_pages_newest_first_by_cursor(client: httpx.Client) -> None:
    body = new_patient()
    patient_id = client.post("/patients", json=body).json()["id"]
    for n in range(1, 5):
        assert (
            client.put(f"/patients/{patient_id}", json=_changed(body, name=f"Renamed {n}")).status_code == 200
        )
    current = client.get(f"/patients/{patient_id}")
    assert current.headers["ETag"].endswith('-5"'), "the ETag is the version"

    seen: list[dict] = []
    url: str | None = f"/patients/{patient_id}/history?size=2"
    pages = 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        seen.extend(response.json())
        links = response.links
        assert links["first"]["url"].endswith(f"/patients/{patient_id}/history?size=2")
        url = links.get("next", {}).get("url")
        pages += 1
    assert pages == 3
    assert [v["version"] for v in seen] == [5, 4, 3, 2, 1]
    assert [v["changeType"] for v in seen] == ["UPDATED"] * 4 + ["CREATED"]
    assert {v["actor"] for v in seen} == {"admin@example.com"}
    assert seen[-1]["patient"]["name"] == body["name"]
    assert seen[0]["patient"]["name"] == "Renamed 4"
    assert seen[0]["changedAt"] >= seen[-1]["changedAt"]

    one = client.get(f"/patients/{patient_id}/history/3")
    assert one.status_code == 200
    assert one.json()["patient"]["name"] == "Renamed 2" and one.json()["changeType"] == "UPDATED"
    missing = client.get(f"/patients/{patient_id}/history/6")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert "no version 6" in missing.json()["detail"]
    assert client.get(f"/patients/{uuid.uuid4()}/history").status_code == 404
    assert client.get(f"/patients/{uuid.uuid4()}/history/1").status_code == 404

    # A cursor is bound to its patient and refused when altered.
    other = client.post("/patients", json=new_patient()).json()["id"]
    cursor = client.get(f"/patients/{patient_id}/history?size=2").links["next"]["url"].split("cursor=")[1]
    refused = client.get(f"/patients/{other}/history", params={"cursor": cursor})
    assert refused.status_code == 400 and "cursor" in refused.json()["errors"]
    assert client.get(f"/patients/{patient_id}/history", params={"cursor": "AAAA"}).status_code == 400


def test_a_deleted_patient_is_gone_left_out_of_lists_and_its_email_is_free(
    client: httpx.Client, service: Running
) -> None:
    body = new_patient()
    patient_id = client.post("/patients", json=body).json()["id"]
    assert client.delete(f"/patients/{patient_id}").status_code == 204

    for response in (
        client.get(f"/patients/{patient_id}"),
        client.put(f"/patients/{patient_id}", json=_changed(body)),
        client.delete(f"/patients/{patient_id}"),
    ):
        assert response.status_code == 410, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["title"] == "Gone"
        assert "was deleted" in problem["detail"] and "/history" in problem["detail"]

    listed = client.get("/patients", params={"size": 100}).json()
    assert patient_id not in {p["id"] for p in listed}
    assert client.get("/patients", params={"search": body["name"]}).json() == []
    assert client.get("/patients", params={"search": body["email"]}).json() == []

    history = client.get(f"/patients/{patient_id}/history").json()
    assert [(v["version"], v["changeType"]) for v in history] == [(2, "DELETED"), (1, "CREATED")]
    assert history[0]["patient"]["email"] == body["email"], "the record as it was when deleted"

    again = client.post("/patients", json=new_patient(email=body["email"].upper()))
    assert again.status_code == 201, again.text
    assert again.json()["id"] != patient_id

    # Order holds per key (one patient, one partition), not across the topic's partitions.
    events = [decode(r) for r in read_events(service.bootstrap, service.topic, expect=3)]
    by_patient = {
        pid: [e.event_type for e in events if e.patient_id == pid] for pid in (patient_id, again.json()["id"])
    }
    assert by_patient == {
        patient_id: [pb.PATIENT_CREATED, pb.PATIENT_DELETED],
        again.json()["id"]: [pb.PATIENT_CREATED],
    }


def test_users_may_read_history_but_not_delete_or_purge(
    client: httpx.Client, service: Running, mint: Callable[..., str]
) -> None:
    patient_id = client.post("/patients", json=new_patient()).json()["id"]
    as_user = {"Authorization": f"Bearer {mint(sub=USER, role='USER')}"}
    assert client.delete(f"/patients/{patient_id}", headers=as_user).status_code == 403
    assert client.delete(f"/patients/{patient_id}?purge=true", headers=as_user).status_code == 403
    assert client.get(f"/patients/{patient_id}/history", headers=as_user).status_code == 200
    assert client.get(f"/patients/{patient_id}").status_code == 200


def _outbox_payloads(database: Database, patient_id: str) -> list[bytes]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.outbox.c.payload)
            .where(tables.outbox.c.patient_id == uuid.UUID(patient_id))
            .order_by(tables.outbox.c.id)
        )
        return [bytes(r.payload) for r in rows]


def test_purge_erases_versions_outbox_and_billing_and_keeps_ids(
    client: httpx.Client, service: Running, billing_server: BillingServer
) -> None:
    body = new_patient()
    created = client.post("/patients", json=body).json()
    patient_id = created["id"]
    assert client.put(f"/patients/{patient_id}", json=_changed(body, name="Second Name")).status_code == 200

    purged = client.delete(f"/patients/{patient_id}", params={"purge": "true"})
    assert purged.status_code == 204, purged.text

    gone = client.get(f"/patients/{patient_id}")
    assert gone.status_code == 410 and "erased" in gone.json()["detail"]
    assert client.delete(f"/patients/{patient_id}", params={"purge": "true"}).status_code == 410
    history = client.get(f"/patients/{patient_id}/history").json()
    assert [(v["version"], v["changeType"], v["patient"]) for v in history] == [
        (4, "PURGED", None),
        (3, "DELETED", None),
        (2, "UPDATED", None),
        (1, "CREATED", None),
    ]
    # Every stored event of the patient (published or not) is rewritten without personal data.
    payloads = _outbox_payloads(service.database, patient_id)
    assert len(payloads) == 4
    for payload in payloads:
        for secret in (body["name"], "Second Name", body["email"], body["address"], body["dateOfBirth"]):
            assert secret.encode() not in payload
    events = [pb.PatientEvent.FromString(p) for p in payloads]
    assert [e.event_type for e in events] == [
        pb.PATIENT_CREATED,
        pb.PATIENT_UPDATED,
        pb.PATIENT_DELETED,
        pb.PATIENT_PURGED,
    ]
    assert {e.patient_id for e in events} == {patient_id}
    assert events[0].billing_account_id == created["billingAccountId"]
    # Billing's copy: the account stays, its name and email are blank.
    with grpc.insecure_channel(billing_server.target) as channel:
        account = billing_pb2_grpc.BillingServiceStub(channel).GetBillingAccount(
            billing_pb2.GetBillingAccountRequest(patient_id=patient_id), timeout=5
        )
    assert (account.account_id, account.name, account.email) == (created["billingAccountId"], "", "")
    # The PURGED event reaches the topic with no personal data.
    published = [decode(r) for r in read_events(service.bootstrap, service.topic, expect=4)]
    purge_event = next(e for e in published if e.event_type == pb.PATIENT_PURGED)
    assert (purge_event.name, purge_event.email, purge_event.address, purge_event.date_of_birth) == (
        "",
        "",
        "",
        "",
    )
    assert purge_event.actor == "admin@example.com"


def test_purge_of_a_soft_deleted_patient_and_of_unknown_ids(client: httpx.Client) -> None:
    body = new_patient()
    patient_id = client.post("/patients", json=body).json()["id"]
    assert client.delete(f"/patients/{patient_id}").status_code == 204
    assert client.delete(f"/patients/{patient_id}", params={"purge": "true"}).status_code == 204
    history = client.get(f"/patients/{patient_id}/history").json()
    assert [(v["changeType"], v["patient"]) for v in history] == [
        ("PURGED", None),
        ("DELETED", None),
        ("CREATED", None),
    ]
    assert client.delete(f"/patients/{uuid.uuid4()}", params={"purge": "true"}).status_code == 404


def test_purge_with_billing_down_is_503_and_erases_nothing(
    patient_db: Database, verifier: TokenVerifier, kafka_bootstrap: str, topic: str, mint: Callable[..., str]
) -> None:
    patient_id = uuid.uuid4()
    with patient_db.transaction() as session:
        # A patient as the seed stores it (no billing account), written directly: creation needs billing.
        now = sa.func.now()
        session.execute(
            sa.insert(tables.patients).values(
                id=patient_id,
                name="Kept Person",
                email="kept.person@example.com",
                email_key="kept.person@example.com",
                address="1 Kept Road",
                date_of_birth=sa.func.date("1980-01-01"),
                registered_date=sa.func.date("2024-01-01"),
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    for running in start_service(patient_db, verifier, unreachable_target(), kafka_bootstrap, topic):
        with httpx.Client(
            base_url=running.url, timeout=15, headers={"Authorization": f"Bearer {mint()}"}
        ) as c:
            started = time.monotonic()
            response = c.delete(f"/patients/{patient_id}", params={"purge": "true"})
            elapsed = time.monotonic() - started
            still = c.get(f"/patients/{patient_id}")
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert "Nothing was erased" in response.json()["detail"]
    assert elapsed < 5, "bounded attempts with a deadline, not a hang"
    assert still.status_code == 200 and still.json()["name"] == "Kept Person"
