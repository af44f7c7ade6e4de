"""FHIR R4 `OperationOutcome`: how an error is told to a FHIR client, from the problem+json the rest of the
system speaks (RFC 7807 `type`, `title`, `status`, `detail`, and `errors: {field: message}`).

Used by the patient service for everything it answers under /fhir and by the gateway for its own
answers on the /fhir routes (401, 403, 502-504), so that a FHIR client always gets a FHIR error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

FHIR_JSON = "application/fhir+json"

# HTTP status -> OperationOutcome.issue.code (value set http://hl7.org/fhir/ValueSet/issue-type).
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    410: "deleted",
    412: "conflict",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    502: "transient",
    503: "transient",
    504: "timeout",
}


def issue_code(status: int) -> str:
    if status in _ISSUE_CODES:
        return _ISSUE_CODES[status]
    return "exception" if status >= 500 else "processing"


def operation_outcome(
    status: int, title: str, detail: str, errors: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One issue per invalid field (`expression` names it) when `errors` is given, else one issue;
    `details.text` is the HTTP reason, `diagnostics` the sentence written for a person."""
    code = issue_code(status)
    if errors:
        issues = [
            {
                "severity": "error",
                "code": code,
                "details": {"text": title},
                "diagnostics": str(message),
                "expression": [str(field)],
            }
            for field, message in errors.items()
        ]
    else:
        issues = [{"severity": "error", "code": code, "details": {"text": title}, "diagnostics": detail}]
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_from_problem(status: int, problem: Any) -> dict[str, Any]:
    """The OperationOutcome saying what a problem+json body says (anything unreadable: the status alone)."""
    if not isinstance(problem, Mapping):
        problem = {}
    title = str(problem.get("title") or "Error")
    detail = str(problem.get("detail") or title)
    errors = problem.get("errors")
    if isinstance(errors, Mapping) and errors:
        return operation_outcome(status, title, detail, {str(k): str(v) for k, v in errors.items()})
    return operation_outcome(status, title, detail)


def outcome_bytes(status: int, title: str, detail: str) -> bytes:
    return json.dumps(operation_outcome(status, title, detail)).encode()
