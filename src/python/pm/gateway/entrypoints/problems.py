"""Every answer the gateway gives itself for an error is RFC 7807 problem+json."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from pm.common.fhir import FHIR_JSON, outcome_bytes
from pm.common.problems import PROBLEM_JSON, problem_bytes

log = logging.getLogger(__name__)

# Details for the errors Starlette raises itself (unknown path, wrong method).
_DETAILS = {404: "No such resource.", 405: "This method is not allowed here."}


def problem_response(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(problem_bytes(status, title, detail), status, headers=headers, media_type=PROBLEM_JSON)


def outcome_response(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The same answer for a FHIR route: an OperationOutcome (pm.common.fhir)."""
    return Response(outcome_bytes(status, title, detail), status, headers=headers, media_type=FHIR_JSON)


def not_found() -> Response:
    return problem_response(404, "Not Found", _DETAILS[404])


def http_problem(_request: Request, exc: Exception) -> Response:
    """Starlette's HTTPException (router, StaticFiles, our pages) as a problem, headers kept."""
    assert isinstance(exc, HTTPException)
    title = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != title else _DETAILS.get(exc.status_code, title)
    return problem_response(exc.status_code, title, detail, exc.headers)


def internal_error(_request: Request, exc: Exception) -> Response:
    """A bug: logged by the server with its traceback; the client sees a plain problem."""
    return problem_response(500, "Internal Server Error", "An unexpected error occurred.")
