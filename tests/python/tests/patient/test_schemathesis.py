"""Property-based run of the patient spec against the live service: no 5xx, every response as declared."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.patient.conftest import Running

CASES: Counter[str] = Counter()


@pytest.fixture
def api_schema(service: Running) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json")


@pytest.fixture(scope="module", autouse=True)
def report_case_count() -> Iterator[None]:
    yield
    print(f"\nschemathesis cases run: {sum(CASES.values())} {dict(CASES)}")


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_service_keeps_its_spec(case: schemathesis.Case, mint: Callable[..., str]) -> None:
    CASES[case.operation.label] += 1
    # "Not in the future" is a rule JSON Schema cannot state: such bodies must be refused (400, or an
    # earlier 401/404 when the token or the id is what is wrong).
    born_later = born_in_the_future(case.body)
    # A cursor is opaque: only one the service made (in a Link) is valid, whatever the schema allows.
    made_up_cursor = bool((case.query or {}).get("cursor"))
    response = case.call_and_validate(
        headers=with_a_real_token(case, mint),
        timeout=10,
        excluded_checks=[positive_data_acceptance] if born_later or made_up_cursor else None,
    )
    if born_later or made_up_cursor:
        assert response.status_code >= 400


def with_a_real_token(case: schemathesis.Case, mint: Callable[..., str]) -> dict[str, str]:
    """The case's own headers, with the generated bearer credential swapped for a valid token, unless the
    case's point is a missing or malformed one: a negative case that dropped `Authorization` (or sent one
    that is not `Bearer ...`) must be refused, and adding a token would turn it into a valid request."""
    headers = dict(case.headers or {})
    credential = headers.get("Authorization")
    if credential is None or not str(credential).startswith("Bearer "):
        headers_mode = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
        if headers_mode is not None and headers_mode.mode.is_negative:
            return headers
    headers["Authorization"] = f"Bearer {mint()}"
    return headers


def born_in_the_future(body: object) -> bool:
    born = body.get("dateOfBirth") if isinstance(body, dict) else None
    return isinstance(born, str) and born > date.today().isoformat()
