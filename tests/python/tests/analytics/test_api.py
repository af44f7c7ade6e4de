"""The HTTP API over a real socket and PostgreSQL: tokens, limits, empty state, database down."""

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.engine import make_url

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.adapters.store import SqlUnitOfWork
from pm.analytics.service_layer.services import RawMessage, record_batch
from pm.common.pgadmin import drop_database
from tests.analytics.conftest import event_bytes
from tests.support.tokens import SigningKey

START = datetime(2024, 6, 1, tzinfo=UTC)


def record(database, *values: bytes) -> None:
    messages = [RawMessage("patient", 0, i, None, v) for i, v in enumerate(values)]
    record_batch(SqlUnitOfWork(database), messages, decode_patient_event)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/analytics/summary", "/analytics/events"])
def test_no_token_is_401_problem_with_a_bearer_challenge(api, path: str) -> None:
    response = httpx.get(f"{api.url}{path}", timeout=5)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_bad_tokens_are_401(api, signing_key) -> None:
    stranger = SigningKey(signing_key.kid, "RS256")
    expired = signing_key.mint(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    for token in ("not-a-jwt", stranger.mint(), expired, signing_key.mint(iss="someone-else")):
        response = httpx.get(f"{api.url}/analytics/summary", headers=bearer(token), timeout=5)
        assert response.status_code == 401, token


def test_summary_before_any_event_is_all_zero(api, token) -> None:
    response = httpx.get(f"{api.url}/analytics/summary", headers=bearer(token), timeout=5)
    assert response.status_code == 200
    assert response.json() == {
        "patientsCreated": 0,
        "patientsUpdated": 0,
        "patientsDeleted": 0,
        "currentPatients": 0,
        "registrationsPerMonth": [],
        "lastEventAt": None,
    }


def test_events_default_to_50_newest_first_and_limit_is_honoured(api, token, database) -> None:
    record(database, *(event_bytes("created", occurred_at=START + timedelta(minutes=i)) for i in range(60)))
    default = httpx.get(f"{api.url}/analytics/events", headers=bearer(token), timeout=5).json()
    assert len(default) == 50
    times = [e["occurredAt"] for e in default]
    assert times == sorted(times, reverse=True)
    assert times[0] == "2024-06-01T00:59:00.000Z"
    assert all(uuid.UUID(e["eventId"]) and e["eventType"] == "PATIENT_CREATED" for e in default)
    most = httpx.get(f"{api.url}/analytics/events", params={"limit": 500}, headers=bearer(token), timeout=5)
    assert len(most.json()) == 60
    one = httpx.get(f"{api.url}/analytics/events", params={"limit": 1}, headers=bearer(token), timeout=5)
    assert one.json() == default[:1]


@pytest.mark.parametrize("limit", ["0", "501", "-1", "ten", "2.5"])
def test_a_limit_outside_1_to_500_is_a_400_problem(api, token, limit: str) -> None:
    response = httpx.get(
        f"{api.url}/analytics/events", params={"limit": limit}, headers=bearer(token), timeout=5
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def test_database_down_is_503_problem_and_health_names_it(api, token, database, postgres_databases) -> None:
    drop_database(postgres_databases.admin_url, make_url(database.url).database or "")
    response = httpx.get(f"{api.url}/analytics/summary", headers=bearer(token), timeout=10)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    # Readiness comes from the background health round: the outage shows within an interval.
    deadline = time.monotonic() + 15
    while (health := httpx.get(f"{api.url}/health", timeout=10)).status_code != 503:
        assert time.monotonic() < deadline, "the database outage never showed on /health"
        time.sleep(0.2)
    assert health.json()["status"] == "DOWN"
    assert health.json()["failing"] == ["database"]


def test_openapi_document_is_served(api) -> None:
    document = httpx.get(f"{api.url}/openapi.json", timeout=5).json()
    assert set(document["paths"]) == {"/analytics/summary", "/analytics/events"}
