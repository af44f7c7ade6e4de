"""The patient HTTP API over a live server, with PostgreSQL, the real billing gRPC server and a broker."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
import sqlalchemy as sa

from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from pm.proto.events.v1 import patient_event_pb2 as pb
from tests.patient.conftest import USER, BillingServer, Running, decode, new_patient, read_events


def rows(running: Running, table: str) -> int:
    with running.database.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_create_stores_patient_opens_billing_account_and_publishes_event(
    client: httpx.Client, service: Running, billing_server: BillingServer
) -> None:
    body = new_patient(name="Grace Hopper", email="grace.hopper@example.com")
    response = client.post("/patients", json=body)

    assert response.status_code == 201, response.text
    created = response.json()
    patient_id = created["id"]
    assert response.headers["Location"] == f"/patients/{patient_id}"
    assert {k: created[k] for k in body} == body
    assert created["billingAccountId"]

    fetched = client.get(f"/patients/{patient_id}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["ETag"] == response.headers["ETag"]

    with grpc.insecure_channel(billing_server.target) as channel:
        account = billing_pb2_grpc.BillingServiceStub(channel).GetBillingAccount(
            billing_pb2.GetBillingAccountRequest(patient_id=patient_id), timeout=5
        )
    assert account.account_id == created["billingAccountId"]
    assert account.email == "grace.hopper@example.com"

    [record] = read_events(service.bootstrap, service.topic, expect=1)
    assert record.key == patient_id.encode()
    assert dict(record.headers)["event-type"] == b"PATIENT_CREATED"
    event = decode(record)
    assert event.event_type == pb.PATIENT_CREATED
    assert uuid.UUID(event.event_id)
    assert (event.patient_id, event.name, event.email) == (
        patient_id,
        "Grace Hopper",
        "grace.hopper@example.com",
    )
    assert event.actor == "admin@example.com"
    assert event.billing_account_id == created["billingAccountId"]
    assert event.date_of_birth == body["dateOfBirth"]
    assert event.occurred_at.seconds > 0


def test_update_and_delete_publish_events_in_order(client: httpx.Client, service: Running) -> None:
    patient_id = client.post("/patients", json=new_patient()).json()["id"]
    changed = new_patient(name="Renamed Person")
    del changed["registeredDate"]

    updated = client.put(f"/patients/{patient_id}", json=changed)
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Renamed Person"
    assert updated.json()["registeredDate"] == "2024-05-06"  # kept when omitted
    assert client.delete(f"/patients/{patient_id}").status_code == 204
    assert client.get(f"/patients/{patient_id}").status_code == 410

    events = [decode(r) for r in read_events(service.bootstrap, service.topic, expect=3)]
    assert [e.event_type for e in events] == [pb.PATIENT_CREATED, pb.PATIENT_UPDATED, pb.PATIENT_DELETED]
    assert {e.patient_id for e in events} == {patient_id}
    assert events[1].name == "Renamed Person"
    assert len({e.event_id for e in events}) == 3


def test_duplicate_email_is_refused_case_insensitively(client: httpx.Client, service: Running) -> None:
    client.post("/patients", json=new_patient(email="Dup.Licate@Example.com")).raise_for_status()

    response = client.post("/patients", json=new_patient(email="dup.licate@example.COM"))

    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 409
    assert rows(service, "patients") == 1
    assert rows(service, "outbox") == 1

    other = client.post("/patients", json=new_patient()).json()
    clash = client.put(f"/patients/{other['id']}", json=new_patient(email="DUP.LICATE@example.com"))
    assert clash.status_code == 409


def test_if_match_with_a_stale_etag_is_refused(client: httpx.Client) -> None:
    created = client.post("/patients", json=new_patient())
    patient_id, first_etag = created.json()["id"], created.headers["ETag"]

    fresh = client.put(f"/patients/{patient_id}", json=new_patient(), headers={"If-Match": first_etag})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] != first_etag

    stale = client.put(f"/patients/{patient_id}", json=new_patient(), headers={"If-Match": first_etag})
    assert stale.status_code == 412
    assert stale.json()["title"] == "Precondition Failed"
    assert client.delete(f"/patients/{patient_id}", headers={"If-Match": first_etag}).status_code == 412
    deleted = client.delete(f"/patients/{patient_id}", headers={"If-Match": fresh.headers["ETag"]})
    assert deleted.status_code == 204


def test_paging_search_and_sort(client: httpx.Client) -> None:
    names = ["Carol Zed", "alice Young", "Bob Xavier", "Dave Walker", "Erin Vance"]
    for i, name in enumerate(names):
        body = new_patient(name=name, email=f"{name.split()[0].lower()}@example.org")
        body["registeredDate"] = f"2024-0{i + 1}-01"
        client.post("/patients", json=body).raise_for_status()

    first = client.get("/patients", params={"size": 2})
    assert first.status_code == 200
    assert first.headers["X-Total-Count"] == "5"
    assert [p["name"] for p in first.json()] == ["alice Young", "Bob Xavier"]
    links = dict((rel, url) for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', first.headers["Link"]))
    assert set(links) == {"first", "next", "last"}

    middle = client.get(links["next"])
    assert [p["name"] for p in middle.json()] == ["Carol Zed", "Dave Walker"]
    assert {rel for _url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', middle.headers["Link"])} == {
        "first",
        "prev",
        "next",
        "last",
    }
    # The last link is a keyset read backwards from the end: the final full page (issue 16).
    last = client.get(links["last"])
    assert [p["name"] for p in last.json()] == ["Dave Walker", "Erin Vance"]

    newest_first = client.get("/patients", params={"sort": "-registeredDate", "size": 3})
    assert [p["name"] for p in newest_first.json()] == ["Erin Vance", "Dave Walker", "Bob Xavier"]

    found = client.get("/patients", params={"search": "ALICE"})
    assert [p["name"] for p in found.json()] == ["alice Young"]
    assert found.headers["X-Total-Count"] == "1"
    by_email = client.get("/patients", params={"search": "bob@example"})
    assert [p["name"] for p in by_email.json()] == ["Bob Xavier"]
    nothing = client.get("/patients", params={"search": "%"})
    assert nothing.json() == [] and nothing.headers["X-Total-Count"] == "0"

    assert client.get("/patients", params={"sort": "password"}).status_code == 400
    assert client.get("/patients", params={"size": 101}).status_code == 400
    assert client.get("/patients", params={"page": -1}).status_code == 400


def test_only_admins_may_delete(client: httpx.Client, service: Running, mint: Callable[..., str]) -> None:
    patient_id = client.post("/patients", json=new_patient()).json()["id"]
    as_user = {"Authorization": f"Bearer {mint(sub=USER, role='USER')}"}

    refused = client.delete(f"/patients/{patient_id}", headers=as_user)
    assert refused.status_code == 403
    assert client.get(f"/patients/{patient_id}", headers=as_user).status_code == 200
    assert client.delete(f"/patients/{patient_id}").status_code == 204


def test_every_call_needs_a_valid_token(service: Running, mint: Callable[..., str]) -> None:
    with httpx.Client(base_url=service.url, timeout=10) as anonymous:
        missing = anonymous.get("/patients")
        expired = anonymous.get("/patients", headers={"Authorization": f"Bearer {mint(ttl=-120)}"})
        garbage = anonymous.post("/patients", json=new_patient(), headers={"Authorization": "Bearer x.y.z"})
    for response in (missing, expired, garbage):
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert rows(service, "patients") == 0


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "123e4567-e89b-12d3-a456-42661417400Z"])
def test_unknown_or_malformed_ids_are_not_found(client: httpx.Client, bad_id: str) -> None:
    for response in (
        client.get(f"/patients/{bad_id}"),
        client.put(f"/patients/{bad_id}", json=new_patient()),
        client.delete(f"/patients/{bad_id}"),
    ):
        assert response.status_code in (400, 404), response.text
    unknown = str(uuid.uuid4())
    assert client.get(f"/patients/{unknown}").status_code == 404
    assert client.put(f"/patients/{unknown}", json=new_patient()).status_code == 404
    assert client.delete(f"/patients/{unknown}").status_code == 404


def test_wrong_methods_name_the_allowed_ones(client: httpx.Client) -> None:
    collection = client.request("OPTIONS", "/patients")
    item = client.patch(f"/patients/{uuid.uuid4()}", json={})
    assert collection.status_code == 405 and item.status_code == 405
    assert set(collection.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    assert set(item.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}


def test_paths_with_control_characters_are_not_found(client: httpx.Client) -> None:
    response = client.get("/patients/%0A")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_concurrent_creates_with_one_email_store_exactly_one_patient(
    client: httpx.Client, service: Running
) -> None:
    body = new_patient(email="race@example.com")
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(lambda _: client.post("/patients", json=body).status_code, range(6)))
    assert statuses == [201] + [409] * 5
    assert rows(service, "patients") == 1
    assert rows(service, "outbox") == 1
