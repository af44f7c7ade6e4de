"""The framework floor the runner starts beside patient: the real route's answers, without the framework."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pm.bench.floor import FloorRoute
from pm.common.db import Database
from pm.common.tokens import StaticKeys, TokenVerifier
from pm.common.web import ServiceMiddleware
from pm.patient.bootstrap import migrate_and_seed
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

SEED_PATIENT = "123e4567-e89b-12d3-a456-426614174000"
KEY = SigningKey("floor-test")


@pytest.fixture
def floor(postgres_url: str) -> Iterator[str]:
    migrate_and_seed(postgres_url)
    database = Database(postgres_url)
    verifier = TokenVerifier(StaticKeys({KEY.kid: KEY.public}), issuer=ISSUER)
    app = ServiceMiddleware(FloorRoute(database, verifier), service="floor-test")
    try:
        with LiveServer(app) as server:
            yield server.url
    finally:
        database.dispose()


def test_a_seeded_patient_is_answered_as_json_with_its_etag(floor: str) -> None:
    response = httpx.get(
        f"{floor}/__floor/patients/{SEED_PATIENT}",
        headers={"Authorization": f"Bearer {KEY.mint()}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["etag"]
    body = response.json()
    assert body["id"] == SEED_PATIENT
    assert set(body) == {
        "id",
        "name",
        "email",
        "address",
        "dateOfBirth",
        "registeredDate",
        "billingAccountId",
    }


def test_without_a_valid_token_it_is_a_401_problem(floor: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = httpx.get(f"{floor}/__floor/patients/{SEED_PATIENT}", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"


def test_unknown_ids_and_other_routes_are_404_problems(floor: str) -> None:
    auth = {"Authorization": f"Bearer {KEY.mint()}"}
    for path in (
        "/__floor/patients/00000000-0000-0000-0000-000000000000",
        "/__floor/patients/not-a-uuid",
        "/patients",
    ):
        response = httpx.get(f"{floor}{path}", headers=auth, timeout=10)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json", path
