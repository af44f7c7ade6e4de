"""Connexion handlers for /patients: translate HTTP to use cases and back, nothing more.

Bodies and parameters were validated against api/openapi.yaml before these run.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar
from urllib.parse import urlencode

from connexion import request

from pm.common.problems import Problem
from pm.common.tokens import require_role
from pm.patient.domain.model import (
    BillingRejected,
    BillingUnavailable,
    Cursor,
    Direction,
    DuplicateEmail,
    InvalidPatient,
    Patient,
    PatientDetails,
    PatientError,
    PatientNotFound,
    PatientPage,
    PatientQuery,
    StalePatient,
    parse_sort,
    sort_text,
)
from pm.patient.entrypoints import cursors
from pm.patient.service_layer.services import PatientService

F = TypeVar("F", bound=Callable[..., Any])

RETRY_AFTER_SECONDS = "5"
# Operations declare JSON and problem+json responses: Connexion needs the success type spelled out.
JSON = {"Content-Type": "application/json"}
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


def _problem(exc: PatientError) -> Problem:
    """The one place domain errors become HTTP problems."""
    if isinstance(exc, InvalidPatient):
        return Problem(400, "Bad Request", "The request has invalid fields.", errors=exc.errors)
    if isinstance(exc, PatientNotFound):
        return Problem(404, "Not Found", str(exc))
    if isinstance(exc, DuplicateEmail):
        return Problem(409, "Conflict", str(exc))
    if isinstance(exc, StalePatient):
        return Problem(412, "Precondition Failed", str(exc))
    if isinstance(exc, BillingUnavailable):
        return Problem(
            503,
            "Service Unavailable",
            f"{exc} Nothing was stored; try again later.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if isinstance(exc, BillingRejected):
        return Problem(502, "Bad Gateway", f"{exc} Nothing was stored.")
    raise exc


def translating_errors(handler: F) -> F:
    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except PatientError as exc:
            raise _problem(exc) from None

    return wrapper  # type: ignore[return-value]


def _service() -> PatientService:
    service: PatientService = request.state.patients
    return service


def _patient_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise PatientNotFound("with this id") from None


def _prefix() -> str:
    """Path prefix a proxy mounted us under (X-Forwarded-Prefix, e.g. `/api`), for Location and Link."""
    prefix = (request.headers.get("x-forwarded-prefix") or "").rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


def _json(patient: Patient) -> dict[str, Any]:
    return {
        "id": str(patient.id),
        "name": patient.name,
        "email": patient.email,
        "address": patient.address,
        "dateOfBirth": patient.date_of_birth.isoformat(),
        "registeredDate": patient.registered_date.isoformat(),
        "billingAccountId": patient.billing_account_id,
    }


def _details(body: dict[str, Any]) -> PatientDetails:
    registered = body.get("registeredDate")
    return PatientDetails(
        name=body["name"],
        email=body["email"],
        address=body["address"],
        date_of_birth=date.fromisoformat(body["dateOfBirth"]),
        registered_date=date.fromisoformat(registered) if registered else None,
    )


def _links(page: PatientPage, search: str | None, sort: str) -> str:
    """first and last by their own (cheap) queries, next and prev as keyset cursors from this page's
    edges: following them costs the same on every page."""

    def link(rel: str, cursor: Cursor | None = None) -> str:
        params: dict[str, Any] = {"size": page.query.size, "sort": sort}
        if search:
            params["search"] = search
        if cursor is not None:
            params["cursor"] = cursors.encode(cursor, sort, search)
        return f'<{_prefix()}/patients?{urlencode(params)}>; rel="{rel}"'

    last = Cursor(Direction.LAST)
    links = [link("first")]
    prev = page.prev
    if prev is None and not page.items and page.query.page > 0 and page.query.cursor is None and page.total:
        prev = last  # a page number past the end: the way back is the last page
    if prev is not None:
        links.append(link("prev", prev))
    if page.next is not None:
        links.append(link("next", page.next))
    links.append(link("last", last))
    return ", ".join(links)


@translating_errors
def list_patients(
    page: int = 0, size: int = 20, search: str | None = None, sort: str = "name", cursor: str | None = None
) -> Any:
    search = (search.strip() if search else None) or None
    keys = parse_sort(sort)
    sort = sort_text(keys)
    position = cursors.decode(cursor, sort, search) if cursor else None
    result = _service().find(PatientQuery(page, size, search, keys, position))
    headers = {
        "X-Total-Count": str(result.total),
        "X-Total-Count-Estimated": "true" if result.total_estimated else "false",
        "Link": _links(result, search, sort),
        **JSON,
    }
    return [_json(p) for p in result.items], 200, headers


@translating_errors
def get_patient(id_: str) -> Any:
    patient = _service().get(_patient_id(id_))
    return _json(patient), 200, {"ETag": patient.etag, **JSON}


@translating_errors
def create_patient(body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    patient = _service().register(_details(body), actor=token_info["sub"])
    location = f"{_prefix()}/patients/{patient.id}"
    return _json(patient), 201, {"Location": location, "ETag": patient.etag, **JSON}


@translating_errors
def update_patient(id_: str, body: dict[str, Any], token_info: dict[str, Any]) -> Any:
    patient = _service().update(
        _patient_id(id_), _details(body), actor=token_info["sub"], if_match=request.headers.get("if-match")
    )
    return _json(patient), 200, {"ETag": patient.etag, **JSON}


@translating_errors
def delete_patient(id_: str, token_info: dict[str, Any]) -> Any:
    require_role(token_info, "ADMIN")
    _service().delete(_patient_id(id_), actor=token_info["sub"], if_match=request.headers.get("if-match"))
    return None, 204
