"""Connexion handlers for /patients: translate HTTP to use cases and back, nothing more.

Bodies and parameters were validated against api/openapi.yaml before these run.
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from typing import Any
from urllib.parse import urlencode

from connexion import request

from pm.common.problems import AsProblem, ErrorTable, unavailable
from pm.common.tokens import require_role
from pm.patient.adapters.relay import OutboxRelay
from pm.patient.domain.model import (
    BillingRejected,
    BillingUnavailable,
    Cursor,
    Direction,
    DuplicateEmail,
    ErasureUnavailable,
    InvalidPatient,
    PatientDetails,
    PatientGone,
    PatientNotFound,
    PatientPage,
    PatientQuery,
    StalePatient,
    VersionNotFound,
    parse_sort,
    sort_text,
)
from pm.patient.entrypoints import cursors, history
from pm.patient.entrypoints.bodies import patient_json
from pm.patient.entrypoints.broker import outbox_view
from pm.patient.service_layer.services import PatientService

# Operations declare JSON and problem+json responses: Connexion needs the success type spelled out.
JSON = {"Content-Type": "application/json"}
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


# The one place patient domain errors become HTTP problems (installed by spec_app).
ERRORS: ErrorTable = {
    InvalidPatient: AsProblem(
        400, "Bad Request", "The request has invalid fields.", ext=lambda exc: {"errors": exc.errors}
    ),
    PatientNotFound: AsProblem(404, "Not Found"),
    VersionNotFound: AsProblem(404, "Not Found"),
    PatientGone: AsProblem(410, "Gone"),
    DuplicateEmail: AsProblem(409, "Conflict"),
    StalePatient: AsProblem(412, "Precondition Failed"),
    BillingUnavailable: unavailable(lambda exc: f"{exc} Nothing was stored; try again later."),
    ErasureUnavailable: unavailable(
        lambda exc: f"{exc} Nothing was erased; the purge can be repeated safely."
    ),
    BillingRejected: AsProblem(502, "Bad Gateway", lambda exc: f"{exc} Nothing was stored."),
}


def _patient_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise PatientNotFound("with this id") from None


def _prefix() -> str:
    """Path prefix a proxy mounted us under (X-Forwarded-Prefix, e.g. `/api`), for Location and Link."""
    prefix = (request.headers.get("x-forwarded-prefix") or "").rstrip("/")
    return prefix if _PREFIX.fullmatch(prefix) else ""


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


class PatientHandlers:
    """The operations of api/openapi.yaml (operationId `patients.<method>`), bound to the use cases by
    bootstrap (`handler_resolver`)."""

    def __init__(self, patients: PatientService, relay: OutboxRelay) -> None:
        self.patients = patients
        self.relay = relay

    def outbox(self, token_info: dict[str, Any]) -> Any:
        """`broker.outbox`: the outbox side of the broker view (ADMIN)."""
        return outbox_view(self.relay, token_info)

    def list_patients(
        self,
        page: int = 0,
        size: int = 20,
        search: str | None = None,
        sort: str = "name",
        cursor: str | None = None,
    ) -> Any:
        search = (search.strip() if search else None) or None
        keys = parse_sort(sort)
        sort = sort_text(keys)
        position = cursors.decode(cursor, sort, search) if cursor else None
        result = self.patients.find(PatientQuery(page, size, search, keys, position))
        headers = {
            "X-Total-Count": str(result.total),
            "X-Total-Count-Estimated": "true" if result.total_estimated else "false",
            "Link": _links(result, search, sort),
            **JSON,
        }
        return [patient_json(p) for p in result.items], 200, headers

    def get_patient(self, id_: str) -> Any:
        patient = self.patients.get(_patient_id(id_))
        return patient_json(patient), 200, {"ETag": patient.etag, **JSON}

    def create_patient(self, body: dict[str, Any], token_info: dict[str, Any]) -> Any:
        patient = self.patients.register(_details(body), actor=token_info["sub"])
        location = f"{_prefix()}/patients/{patient.id}"
        return patient_json(patient), 201, {"Location": location, "ETag": patient.etag, **JSON}

    def update_patient(self, id_: str, body: dict[str, Any], token_info: dict[str, Any]) -> Any:
        patient = self.patients.update(
            _patient_id(id_),
            _details(body),
            actor=token_info["sub"],
            if_match=request.headers.get("if-match"),
        )
        return patient_json(patient), 200, {"ETag": patient.etag, **JSON}

    def delete_patient(self, id_: str, token_info: dict[str, Any], purge: bool = False) -> Any:
        require_role(token_info, "ADMIN")
        remove = self.patients.purge if purge else self.patients.delete
        remove(_patient_id(id_), actor=token_info["sub"], if_match=request.headers.get("if-match"))
        return None, 204

    def patient_history(self, id_: str, size: int = 20, cursor: str | None = None) -> Any:
        patient_id = _patient_id(id_)
        after = history.decode_cursor(cursor, patient_id) if cursor else None
        page = self.patients.history(patient_id, size=size, after_version=after)
        links = history.links(f"{_prefix()}/patients/{patient_id}/history", patient_id, size, page)
        return [history.version_json(v) for v in page.items], 200, {"Link": links, **JSON}

    def patient_version(self, id_: str, version: int) -> Any:
        found = self.patients.version(_patient_id(id_), version)
        return history.version_json(found), 200, JSON
