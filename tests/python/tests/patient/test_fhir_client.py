"""End to end: a FHIR client library (fhirpy) reads and searches the patient service through the real
gateway, with a real token check on both, real PostgreSQL and the real billing service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound

from pm.common.broker import free_port
from pm.common.config import Env
from pm.common.tokens import StaticKeys
from pm.gateway.bootstrap import bootstrap as gateway_bootstrap
from pm.gateway.config import Settings as GatewaySettings
from tests.patient.conftest import KID, Running, new_patient
from tests.patient.fhir_support import validate
from tests.support.servers import LiveServer
from tests.support.tokens import SigningKey

TIMEOUT = {"timeout": 10}


@pytest.fixture
def gateway_url(service: Running, signing_key: SigningKey) -> Iterator[str]:
    """The real gateway in front of the patient service; auth and analytics are not needed here."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = GatewaySettings.from_env(
        Env(
            {
                "PM_PATIENT_URL": service.url,
                "PM_AUTH_URL": nowhere,
                "PM_ANALYTICS_URL": nowhere,
                "PM_JWKS_URL": f"{nowhere}/.well-known/jwks.json",
            }
        )
    )
    gateway = gateway_bootstrap(settings, keys=StaticKeys({KID: signing_key.public}))
    with LiveServer(gateway.app) as live:
        yield live.url


@pytest.fixture
def fhir(gateway_url: str, mint: Callable[..., str]) -> SyncFHIRClient:
    return SyncFHIRClient(f"{gateway_url}/fhir", authorization=f"Bearer {mint()}", requests_config=TIMEOUT)


@pytest.fixture
def registered(gateway_url: str, mint: Callable[..., str]) -> list[dict[str, Any]]:
    """Patients registered through the gateway's JSON API (billing accounts opened for real)."""
    tag = uuid.uuid4().hex[:6]
    people = [
        (f"Ann {tag}Lee", "1980-01-01"),
        (f"Joanne Ann {tag}Lee", "1985-06-15"),
        (f"Bob {tag}Stone", "1975-12-31"),
    ]
    with httpx.Client(
        base_url=gateway_url, headers={"Authorization": f"Bearer {mint()}"}, timeout=10
    ) as http:
        created = []
        for name, born in people:
            response = http.post("/api/patients", json=new_patient(name=name, dateOfBirth=born))
            assert response.status_code == 201, response.text
            created.append(response.json())
    return created


def plain(resource: Any) -> dict[str, Any]:
    return validate(resource.serialize())


def test_a_fhir_client_reads_and_searches_through_the_gateway(
    fhir: SyncFHIRClient, registered: list[dict[str, Any]]
) -> None:
    ann = registered[0]
    family = ann["name"].split(" ")[-1].lower()

    read = plain(fhir.reference("Patient", ann["id"]).to_resource())
    assert read["id"] == ann["id"] and read["birthDate"] == "1980-01-01"
    assert read["name"][0]["family"] == ann["name"].split(" ")[-1]
    assert read["identifier"][0]["value"] == ann["billingAccountId"]

    by_family = fhir.resources("Patient").search(family=family).sort("birthdate").fetch()
    assert [p["id"] for p in by_family] == [ann["id"], registered[1]["id"]]
    by_given = fhir.resources("Patient").search(given="ann", family=family).fetch()
    assert {p["id"] for p in by_given} == {ann["id"], registered[1]["id"]}
    assert [p["id"] for p in fhir.resources("Patient").search(email=ann["email"].upper()).fetch()] == [
        ann["id"]
    ]
    older = fhir.resources("Patient").search(family=family, birthdate="lt1985").fetch()
    assert [p["id"] for p in older] == [ann["id"]]

    # Iterating follows the server's `next` links, one entry a page here.
    everyone = fhir.resources("Patient").search(family=family).sort("-birthdate").limit(1).fetch_all()
    assert [p["id"] for p in everyone] == [registered[1]["id"], ann["id"]]
    raw = fhir.resources("Patient").search(name=family).limit(0).fetch_raw()
    assert raw["total"] == 2


def test_the_client_sees_fhir_errors(
    fhir: SyncFHIRClient, gateway_url: str, registered: list[dict[str, Any]]
) -> None:
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", str(uuid.uuid4())).to_resource()
    with pytest.raises(OperationOutcome) as refused:
        fhir.resources("Patient").search(birthdate="ap1980").fetch()
    assert "birthdate" in str(refused.value)
    anonymous = SyncFHIRClient(f"{gateway_url}/fhir", requests_config=TIMEOUT)
    with pytest.raises(AuthorizationError) as unauthorized:
        anonymous.resources("Patient").search(name="ann").fetch()
    assert "OperationOutcome" in str(unauthorized.value)
    # The CapabilityStatement is public.
    statement = anonymous.execute("metadata", method="get")
    assert validate(statement)["resourceType"] == "CapabilityStatement"
