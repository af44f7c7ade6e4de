"""Black-box tests of the whole system through the gateway, in the spirit of the original integration tests
but asserting real content. Marked slow: they start every service."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import RunningSystem

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"
SEEDED_NAMES = {
    "John Doe",
    "Jane Smith",
    "Alice Johnson",
    "Bob Brown",
    "Emily Davis",
    "Michael Green",
    "Sarah Taylor",
    "David Wilson",
    "Laura White",
    "James Harris",
    "Emma Moore",
    "Ethan Martinez",
    "Sophia Clark",
    "Daniel Lewis",
    "Isabella Walker",
}
PATIENT_FIELDS = {"id", "name", "email", "address", "dateOfBirth", "registeredDate", "billingAccountId"}


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["title"] and "detail" in body
    assert "Traceback" not in response.text
    return body


def new_patient(**overrides: str) -> dict[str, str]:
    unique = uuid.uuid4().hex[:10]
    patient = {
        "name": f"E2E Patient {unique}",
        "email": f"e2e.{unique}@example.com",
        "address": "1 Test Street, Springfield",
        "dateOfBirth": "1990-04-12",
        "registeredDate": "2024-05-01",
    }
    patient.update(overrides)
    return patient


def test_login_returns_a_bearer_token(gateway: httpx.Client) -> None:
    response = gateway.post("/auth/login", json={"email": "testuser@test.com", "password": "password123"})
    assert response.status_code == 200
    body = response.json()
    assert body["tokenType"] == "Bearer"
    assert body["expiresIn"] > 0
    assert body["token"].count(".") == 2


def test_login_with_a_wrong_password_is_401_problem(gateway: httpx.Client) -> None:
    response = gateway.post("/auth/login", json={"email": "testuser@test.com", "password": "wrongpassword"})
    assert_problem(response, 401)


def test_validate_returns_the_callers_claims(gateway: httpx.Client, auth: dict[str, str]) -> None:
    response = gateway.get("/auth/validate", headers=auth)
    assert response.status_code == 200
    assert response.json()["sub"] == "testuser@test.com"
    assert response.json()["role"] == "ADMIN"


def test_patients_require_a_token_and_say_so(gateway: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic abc"}):
        response = gateway.get("/api/patients", headers=headers)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_list_returns_the_seeded_patients_with_every_field(
    gateway: httpx.Client, auth: dict[str, str]
) -> None:
    response = gateway.get("/api/patients", params={"size": 100}, headers=auth)
    assert response.status_code == 200
    patients = response.json()
    assert SEEDED_NAMES <= {p["name"] for p in patients}
    assert int(response.headers["x-total-count"]) >= 15
    john = next(p for p in patients if p["id"] == "123e4567-e89b-12d3-a456-426614174000")
    assert john["name"] == "John Doe"
    assert john["email"] == "john.doe@example.com"
    assert PATIENT_FIELDS <= set(john)


def test_paging_and_search(gateway: httpx.Client, auth: dict[str, str]) -> None:
    page = gateway.get("/api/patients", params={"page": 0, "size": 5}, headers=auth)
    assert page.status_code == 200
    assert len(page.json()) == 5
    assert 'rel="next"' in page.headers["link"]
    # Links point at the gateway's paths, so a client can follow them.
    next_link = next(part for part in page.headers["link"].split(",") if 'rel="next"' in part)
    next_url = next_link.split(";")[0].strip().strip("<>")
    assert "/api/patients?" in next_url
    followed = gateway.get(next_url, headers=auth)
    assert followed.status_code == 200
    assert {p["id"] for p in followed.json()}.isdisjoint({p["id"] for p in page.json()})
    found = gateway.get("/api/patients", params={"search": "isabella"}, headers=auth)
    assert [p["name"] for p in found.json()] == ["Isabella Walker"]


def test_create_read_update_delete(gateway: httpx.Client, auth: dict[str, str]) -> None:
    created = gateway.post("/api/patients", json=new_patient(), headers=auth)
    assert created.status_code == 201, created.text
    patient = created.json()
    assert patient["billingAccountId"]
    assert created.headers["location"].endswith(f"/api/patients/{patient['id']}")

    fetched = gateway.get(f"/api/patients/{patient['id']}", headers=auth)
    assert fetched.status_code == 200
    assert fetched.json()["email"] == patient["email"]
    etag = fetched.headers["etag"]

    changed = dict(patient, name="E2E Renamed")
    changed.pop("id")
    changed.pop("billingAccountId")
    updated = gateway.put(f"/api/patients/{patient['id']}", json=changed, headers={**auth, "If-Match": etag})
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "E2E Renamed"
    stale = gateway.put(f"/api/patients/{patient['id']}", json=changed, headers={**auth, "If-Match": etag})
    assert_problem(stale, 412)

    assert gateway.delete(f"/api/patients/{patient['id']}", headers=auth).status_code == 204
    assert_problem(gateway.get(f"/api/patients/{patient['id']}", headers=auth), 410)
    assert_problem(gateway.delete(f"/api/patients/{patient['id']}", headers=auth), 410)
    assert_problem(gateway.get(f"/api/patients/{uuid.uuid4()}", headers=auth), 404)


def test_validation_errors_use_the_original_messages(gateway: httpx.Client, auth: dict[str, str]) -> None:
    response = gateway.post("/api/patients", json={"name": "x" * 101, "email": "not-an-email"}, headers=auth)
    body = assert_problem(response, 400)
    errors = body["errors"]
    assert errors["name"] == "Name cannot exceed 100 characters"
    assert errors["email"] == "Email should be valid"
    assert errors["address"] == "Address is required"
    assert errors["dateOfBirth"] == "Date of birth is required"
    assert errors["registeredDate"] == "Registered date is required"


def test_duplicate_email_is_409(gateway: httpx.Client, auth: dict[str, str]) -> None:
    response = gateway.post("/api/patients", json=new_patient(email="JOHN.DOE@example.com"), headers=auth)
    assert_problem(response, 409)


def test_a_user_cannot_delete_but_an_admin_can(gateway: httpx.Client, auth: dict[str, str]) -> None:
    email = f"user.{uuid.uuid4().hex[:8]}@example.com"
    created = gateway.post(
        "/auth/users", json={"email": email, "password": "s3cret-pass", "role": "USER"}, headers=auth
    )
    assert created.status_code == 201, created.text
    login = gateway.post("/auth/login", json={"email": email, "password": "s3cret-pass"})
    user_auth = {"Authorization": f"Bearer {login.json()['token']}"}
    patient = gateway.post("/api/patients", json=new_patient(), headers=user_auth)
    assert patient.status_code == 201, patient.text
    assert_problem(gateway.delete(f"/api/patients/{patient.json()['id']}", headers=user_auth), 403)
    assert_problem(gateway.get("/auth/users", headers=user_auth), 403)
    assert gateway.delete(f"/api/patients/{patient.json()['id']}", headers=auth).status_code == 204


def test_a_created_patient_reaches_analytics(gateway: httpx.Client, auth: dict[str, str]) -> None:
    created = gateway.post("/api/patients", json=new_patient(registeredDate="2023-02-14"), headers=auth)
    assert created.status_code == 201
    patient_id = created.json()["id"]
    deadline = time.monotonic() + 30
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = gateway.get("/api/analytics/events", params={"limit": 100}, headers=auth).json()
        if any(e["patientId"] == patient_id for e in events):
            break
        time.sleep(0.5)
    matching = [e for e in events if e["patientId"] == patient_id]
    assert [e["eventType"] for e in matching] == ["PATIENT_CREATED"]
    assert matching[0]["actor"] == "testuser@test.com"
    summary = gateway.get("/api/analytics/summary", headers=auth).json()
    assert summary["patientsCreated"] >= 1
    assert any(m["month"] == "2023-02" and m["count"] >= 1 for m in summary["registrationsPerMonth"])


def test_api_docs_and_swagger_ui_are_served(gateway: httpx.Client) -> None:
    for name, path in (("patients", "/patients"), ("auth", "/login"), ("analytics", "/analytics/summary")):
        response = gateway.get(f"/api-docs/{name}")
        assert response.status_code == 200, name
        assert path in response.json()["paths"]
    ui = gateway.get("/docs")
    assert ui.status_code == 200
    assert "swagger" in ui.text.lower()


def test_unknown_paths_are_404_problems(gateway: httpx.Client, auth: dict[str, str]) -> None:
    assert_problem(gateway.get("/nothing/here"), 404)
    assert_problem(gateway.get("/api/unknown", headers=auth), 404)


def test_request_id_is_echoed(gateway: httpx.Client) -> None:
    response = gateway.get("/health", headers={"X-Request-ID": "e2e-trace-1"})
    assert response.headers["x-request-id"] == "e2e-trace-1"
    assert gateway.get("/health").headers["x-request-id"]


def test_health_reports_every_downstream_up(gateway: httpx.Client) -> None:
    # Readiness is the last background round (every 3 s, 3 s timeout per check): on a loaded machine one
    # round can time out and say DEGRADED; the system is healthy when a round within 30 s says UP.
    deadline = time.monotonic() + 30
    while True:
        response = gateway.get("/health")
        assert response.status_code == 200, response.text
        if response.json()["status"] == "UP" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.json()["status"] == "UP", response.text


def test_passwords_and_tokens_never_reach_the_logs(system: RunningSystem, admin_token: str) -> None:
    # The devstack's own banner prints the demo login on purpose; the services must never log secrets.
    logs = "\n".join(line for line in system.output if not line.startswith(("[devstack]", "READY")))
    assert "auth " in logs and "patient " in logs
    assert "password123" not in logs
    assert "s3cret-pass" not in logs
    assert admin_token not in logs


def client_traceparent() -> tuple[str, str, dict[str, str]]:
    """A caller's own sampled trace context: (trace id, its span id, the header)."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, {"traceparent": f"00-{trace_id}-{span_id}-01"}


def wait_for_spans(
    gateway: httpx.Client, auth: dict[str, str], trace_id: str, services: set[str], seconds: float = 40
) -> list[dict]:
    """The trace's spans once every one of `services` has a span in it (each exports in batches)."""
    deadline = time.monotonic() + seconds
    spans: list[dict] = []
    while time.monotonic() < deadline:
        response = gateway.get(f"/api/traces/{trace_id}", headers=auth)
        if response.status_code == 200:
            spans = response.json()["spans"]
            # The relay publishes after the request's commit and exports its PRODUCER span in a later batch.
            kinds = {s["kind"] for s in spans}
            if services <= {s["service"] for s in spans} and {"CONSUMER", "PRODUCER"} <= kinds:
                return spans
        else:
            assert response.status_code == 404, response.text
        time.sleep(0.5)
    pytest.fail(f"trace {trace_id} lacks spans of {services}: {[(s['service'], s['name']) for s in spans]}")


def only(spans: list[dict], **wanted: object) -> dict:
    matching = [s for s in spans if all(s[k] == v for k, v in wanted.items())]
    assert len(matching) == 1, (wanted, [(s["service"], s["kind"], s["name"]) for s in spans])
    return matching[0]


def assert_one_trace_through_the_system(
    response: httpx.Response, spans: list[dict], trace_id: str, client_span: str, event_type: str
) -> dict:
    """gateway SERVER (child of the caller) → gateway CLIENT → patient SERVER → publish → analytics process;
    returns patient's server span."""
    _, answered_trace, answered_span, flags = response.headers["traceresponse"].split("-")
    assert (answered_trace, int(flags, 16) & 1) == (trace_id, 1)
    edge = only(spans, service="gateway", kind="SERVER")
    assert edge["parentSpanId"] == client_span
    assert edge["spanId"] == answered_span
    proxied = only(spans, service="gateway", kind="CLIENT")
    assert proxied["parentSpanId"] == edge["spanId"]
    patient = only(spans, service="patient", kind="SERVER")
    assert patient["parentSpanId"] == proxied["spanId"]
    publish = only(spans, service="patient", kind="PRODUCER")
    assert publish["parentSpanId"] == patient["spanId"]
    assert publish["attributes"]["pm.event_type"] == event_type
    assert publish["attributes"]["messaging.destination.name"] == "patient"
    process = only(spans, service="analytics", kind="CONSUMER")
    assert process["parentSpanId"] == publish["spanId"]
    assert process["name"] == "process patient"
    return patient


def test_a_request_is_one_trace_from_the_gateway_through_billing_and_kafka_to_analytics(
    gateway: httpx.Client, auth: dict[str, str]
) -> None:
    trace_id, client_span, header = client_traceparent()
    created = gateway.post("/api/patients", json=new_patient(), headers={**auth, **header})
    assert created.status_code == 201, created.text
    spans = wait_for_spans(gateway, auth, trace_id, {"gateway", "patient", "billing", "analytics"})
    patient = assert_one_trace_through_the_system(created, spans, trace_id, client_span, "PATIENT_CREATED")
    by_id = {s["spanId"]: s for s in spans}
    billing_call = only(
        spans, service="patient", kind="CLIENT", name="/pm.billing.v1.BillingService/CreateBillingAccount"
    )
    assert billing_call["parentSpanId"] == patient["spanId"]
    billing = only(spans, service="billing", kind="SERVER")
    assert billing["parentSpanId"] == billing_call["spanId"]
    assert billing["name"] == "/pm.billing.v1.BillingService/CreateBillingAccount"
    # The databases' statements sit under the server span that ran them.
    statements = [s for s in spans if s["kind"] == "CLIENT" and s["attributes"].get("db.system")]
    assert {by_id[s["parentSpanId"]]["service"] for s in statements} >= {"patient", "billing"}
    # The list of recent traces has it, with every service it crossed.
    recent = gateway.get("/api/traces", params={"limit": 50}, headers=auth).json()
    listed = only(recent, traceId=trace_id)
    assert set(listed["services"]) == {"gateway", "patient", "billing", "analytics"}
    assert listed["rootSpan"]["service"] == "gateway" and listed["errors"] == 0

    patient_id = created.json()["id"]
    changed = {k: v for k, v in created.json().items() if k not in ("id", "billingAccountId")}
    changed["name"] = "E2E Traced Rename"
    trace_id, client_span, header = client_traceparent()
    updated = gateway.put(f"/api/patients/{patient_id}", json=changed, headers={**auth, **header})
    assert updated.status_code == 200, updated.text
    spans = wait_for_spans(gateway, auth, trace_id, {"gateway", "patient", "analytics"})
    assert_one_trace_through_the_system(updated, spans, trace_id, client_span, "PATIENT_UPDATED")

    trace_id, client_span, header = client_traceparent()
    deleted = gateway.delete(f"/api/patients/{patient_id}", headers={**auth, **header})
    assert deleted.status_code == 204, deleted.text
    spans = wait_for_spans(gateway, auth, trace_id, {"gateway", "patient", "analytics"})
    assert_one_trace_through_the_system(deleted, spans, trace_id, client_span, "PATIENT_DELETED")


def test_every_response_carries_a_traceresponse(gateway: httpx.Client) -> None:
    for response in (gateway.get("/health"), gateway.get("/nothing/here"), gateway.get("/api/patients")):
        version, trace_id, span_id, _flags = response.headers["traceresponse"].split("-")
        assert version == "00" and int(trace_id, 16) and int(span_id, 16)


def test_traces_are_for_admins(gateway: httpx.Client) -> None:
    assert_problem(gateway.get("/api/traces"), 401)
