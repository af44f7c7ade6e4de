"""Property-based run of the FHIR spec (api/fhir.yaml) against the live service: no 5xx, every answer
with a declared status and media type, every body as declared (errors as OperationOutcomes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.patient.conftest import Running
from tests.patient.test_schemathesis import with_a_real_token


@pytest.fixture
def fhir_schema(service: Running) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{service.url}/fhir/openapi.json")


schema = schemathesis.pytest.from_fixture("fhir_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_fhir_api_keeps_its_spec(case: schemathesis.Case, mint: Callable[..., str]) -> None:
    # Schema-valid input the server still refuses, on purpose: made-up cursors, birthdate prefixes other
    # than the supported ones, comma lists, ids and versions that name nothing (400/404 are declared).
    case.call_and_validate(headers=with_a_real_token(case, mint), timeout=10, excluded_checks=[positive_data_acceptance])
