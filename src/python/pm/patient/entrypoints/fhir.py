"""Connexion handlers for the FHIR R4 API (api/fhir.yaml): one method per operation, named by its
operationId (`fhir.fhir_patient_read` -> `fhir_patient_read`), each translating HTTP to a use case and
the result to FHIR JSON (fhir_mapping). Errors are the domain's; FhirOutcomes makes them
OperationOutcomes.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from connexion import request

from pm.common.fhir import FHIR_JSON
from pm.patient.domain.filters import (
    Filter,
    NamePart,
    birthdate_filter,
    email_filter,
    name_filter,
)
from pm.patient.domain.model import (
    InvalidPatient,
    PatientNotFound,
    PatientQuery,
    SortKey,
    sort_text,
)
from pm.patient.entrypoints import cursors
from pm.patient.entrypoints.fhir_mapping import (
    DEFAULT_COUNT,
    MAX_COUNT,
    SORTS,
    capability_statement,
    patient_resource,
    searchset,
)
from pm.patient.service_layer.services import PatientService

HEADERS = {"Content-Type": FHIR_JSON}
SOFTWARE_VERSION = "1.0.0"
# When this statement of capabilities was last changed (CapabilityStatement.date).
PUBLISHED = "2026-12-02"

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_HOST = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")


def base_url() -> str:
    """The FHIR base as the client reached it (through the gateway: its scheme, host and path prefix)."""
    headers = request.headers
    proto = (headers.get("x-forwarded-proto") or "").lower()
    scheme = proto if proto in ("http", "https") else request.url.scheme
    host = headers.get("x-forwarded-host") or headers.get("host") or ""
    if not _HOST.fullmatch(host):
        host = request.url.netloc
    prefix = (headers.get("x-forwarded-prefix") or "").rstrip("/")
    if not _PREFIX.fullmatch(prefix):
        prefix = ""
    return f"{scheme}://{host}{prefix}/fhir"


def _patient_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise PatientNotFound("with this id") from None


def _sort_keys(text: str) -> tuple[SortKey, ...]:
    keys = []
    for part in (p.strip() for p in text.split(",")):
        descending = part.startswith("-")
        field = SORTS.get(part.lstrip("-"))
        if field is None:
            raise InvalidPatient({"_sort": f"Cannot sort by {part.lstrip('-')!r}; use one of {', '.join(SORTS)}."})
        keys.append(SortKey(field, descending))
    return tuple(keys)


def _fhir_sort(keys: tuple[SortKey, ...]) -> str:
    names = {field: name for name, field in SORTS.items()}
    return ",".join(("-" if key.descending else "") + names[key.field] for key in keys)


class FhirHandlers:
    """The operations of api/fhir.yaml, bound to the use cases by bootstrap (`handler_resolver`)."""

    def __init__(self, patients: PatientService) -> None:
        self.patients = patients
        # vread and history-instance are served (and stated in the CapabilityStatement) with versions.
        self.history = False

    def fhir_metadata(self) -> Any:
        statement = capability_statement(
            base_url(), software_version=SOFTWARE_VERSION, published=PUBLISHED, history=self.history
        )
        return statement, 200, HEADERS

    def fhir_patient_read(self, id_: str) -> Any:
        patient = self.patients.get(_patient_id(id_))
        resource = patient_resource(patient)
        headers = {"ETag": f'W/"{patient.version}"', **HEADERS}
        if "lastUpdated" in resource["meta"]:
            headers["Last-Modified"] = _http_date(patient.updated_at)
        return resource, 200, headers

    def fhir_patient_search(
        self,
        name: list[str] | None = None,
        family: list[str] | None = None,
        given: list[str] | None = None,
        email: list[str] | None = None,
        birthdate: list[str] | None = None,
        _count: int | None = None,
        _sort: str | None = None,
        _cursor: str | None = None,
        _format: str | None = None,
    ) -> Any:
        filters: list[Filter] = []
        params: list[tuple[str, str]] = []  # the search as the links repeat it
        for part, values in ((NamePart.ANY, name), (NamePart.FAMILY, family), (NamePart.GIVEN, given)):
            for value in values or ():
                filters.append(name_filter(part, value))
                params.append((part.value, value))
        for value in email or ():
            filters.append(email_filter(value))
            params.append(("email", value))
        for value in birthdate or ():
            filters.append(birthdate_filter(value))
            params.append(("birthdate", value))
        keys = _sort_keys(_sort or "name")
        sort = sort_text(keys)
        # The cursor is valid only for this search and sort: its digest covers both.
        made_for = "fhir?" + urlencode(sorted(params))
        try:
            position = cursors.decode(_cursor, sort, made_for) if _cursor else None
        except InvalidPatient as exc:  # named as the FHIR parameter
            raise InvalidPatient({"_cursor": exc.errors["cursor"]}) from None
        count = DEFAULT_COUNT if _count is None else min(_count, MAX_COUNT)
        page = self.patients.find(
            PatientQuery(size=max(count, 1), sort=keys, cursor=position, filters=tuple(filters))
        )
        base = base_url()

        def link(cursor: Any = None) -> str:
            query = [*params, ("_count", str(count)), ("_sort", _fhir_sort(keys))]
            if cursor is not None:
                query.append(("_cursor", cursors.encode(cursor, sort, made_for)))
            return f"{base}/Patient?{urlencode(query)}"

        links = [("self", link(position))]
        if count > 0:
            links.append(("first", link()))
            if page.prev is not None:
                links.append(("previous", link(page.prev)))
            if page.next is not None:
                links.append(("next", link(page.next)))
        items = page.items if count > 0 else []
        bundle = searchset(base, items, page.total, links, total_estimated=page.total_estimated)
        return bundle, 200, HEADERS


def _http_date(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")

