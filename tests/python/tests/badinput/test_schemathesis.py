"""Property-based requests from each OpenAPI document (patients, auth, analytics), through the gateway with
a valid token and straight to each service: never a 5xx, never a response that breaks the document."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.reliability.harness import System, write_figures

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 8
RAN: Counter[str] = Counter()
# These would end the fuzzer's own session (every later case a 401) or charge the demo account's login
# throttle with wrong current passwords; tests/python/tests/auth/test_sessions.py covers their bad input.
SESSION_ENDING = ("/logout", "/users/me/password")


def targets(system: System) -> list[tuple[str, str, str]]:
    """(label, where the document is served, base URL its paths are relative to)."""
    return [
        ("patients direct", system.url("patient") + "/openapi.json", system.url("patient")),
        ("auth direct", system.url("auth") + "/openapi.json", system.url("auth")),
        ("analytics direct", system.url("analytics") + "/openapi.json", system.url("analytics")),
        ("patients via gateway", system.gateway + "/api-docs/patients", system.gateway + "/api"),
        ("auth via gateway", system.gateway + "/api-docs/auth", system.gateway + "/auth"),
        ("analytics via gateway", system.gateway + "/api-docs/analytics", system.gateway + "/api"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_openapi_fuzzing_finds_no_5xx_and_no_spec_violation(system: System, token: str, index: int) -> None:
    label, document, base_url = targets(system)[index]
    assert httpx.get(document, timeout=10.0).status_code == 200
    schema = schemathesis.openapi.from_url(document)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err raises here: the document is invalid
        if operation.path in SESSION_ENDING:
            continue
        failures.extend(fuzz(operation, label, base_url, headers))
    write_figures(f"schemathesis_{label.replace(' ', '_')}", {"cases": RAN[label], "failures": len(failures)})
    assert failures == [], "\n".join(failures[:5])


def fuzz(operation: Any, label: str, base_url: str, headers: dict[str, str]) -> list[str]:
    failures: list[str] = []

    @given(case=operation.as_strategy(), _=st.just(None))
    @settings(
        max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def run(case: schemathesis.Case, _: None) -> None:
        RAN[label] += 1
        try:
            case.call_and_validate(
                base_url=base_url,
                headers=headers,
                timeout=15,
                checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
            )
        except AssertionError as err:
            failures.append(f"{operation.label}: {str(err)[:400]}")
            raise

    try:
        run()
    except AssertionError:
        pass  # collected in `failures`, reported by the caller
    return failures
