"""The /fhir routes: to the patient service unchanged, the CapabilityStatement public, and the gateway's own
errors there as FHIR OperationOutcomes rather than problem+json."""

from __future__ import annotations

import httpx
import pytest

from pm.common.broker import free_port
from tests.gateway.conftest import Gateway, SigningKey

FHIR_JSON = "application/fhir+json"


def assert_outcome(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR_JSON
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["severity"] == "error" and issue["code"] == code
    assert issue["diagnostics"], body


@pytest.mark.parametrize(
    "path",
    ["/fhir/Patient", "/fhir/Patient/123e4567-e89b-12d3-a456-426614174000", "/fhir/Patient/x/_history/2"],
)
def test_fhir_paths_reach_the_patient_service_unchanged(
    gateway: Gateway, signing_key: SigningKey, path: str
) -> None:
    response = gateway().get(
        path,
        params={"name": "ann", "_count": "5"},
        headers={"Authorization": f"Bearer {signing_key.token()}"},
    )
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["service"], echoed["path"], echoed["query"]) == ("patient", path, "name=ann&_count=5")
    forwarded = {name.lower(): value for name, value in echoed["headers"]}
    assert "x-forwarded-prefix" not in forwarded, "the public path is the service's own"
    assert forwarded["x-forwarded-host"].startswith("127.0.0.1:")


def test_the_capability_statement_needs_no_token(gateway: Gateway) -> None:
    response = gateway().get("/fhir/metadata")
    assert response.status_code == 200
    assert response.json()["path"] == "/fhir/metadata"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-jwt", "Basic dXNlcjpwYXNz"])
def test_without_a_valid_token_the_gateway_answers_401_as_an_operation_outcome(
    gateway: Gateway, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    client = gateway()
    for path in ("/fhir/Patient", "/fhir/Patient/123/_history", "/fhir/metadata/x"):
        response = client.get(path, headers=headers)
        assert_outcome(response, 401, "login")
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="pm"')


def test_a_patient_service_that_is_down_is_a_502_outcome(gateway: Gateway, signing_key: SigningKey) -> None:
    client = gateway(PM_PATIENT_URL=f"http://127.0.0.1:{free_port()}")
    response = client.get("/fhir/Patient", headers={"Authorization": f"Bearer {signing_key.token()}"})
    assert_outcome(response, 502, "transient")
    # The other routes keep problem+json.
    assert (
        client.get("/api/patients", headers={"Authorization": f"Bearer {signing_key.token()}"}).headers[
            "content-type"
        ]
        == "application/problem+json"
    )
