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
from urllib.parse import parse_qsl, urlencode

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
    PatientError,
    PatientGone,
    PatientNotFound,
    PatientQuery,
    SortKey,
    VersionNotFound,
    sort_text,
)
from pm.patient.entrypoints import cursors, history
from pm.patient.entrypoints.fhir_mapping import (
    DEFAULT_COUNT,
    MAX_COUNT,
    SEARCH_PARAMS,
    SORTS,
    capability_statement,
    history_bundle,
    patient_resource,
    readable,
    searchset,
    version_resource,
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
            raise InvalidPatient(
                {"_sort": f"Cannot sort by {part.lstrip('-')!r}; use one of {', '.join(SORTS)}."}
            )
        keys.append(SortKey(field, descending))
    return tuple(keys)


def _fhir_sort(keys: tuple[SortKey, ...]) -> str:
    names = {field: name for name, field in SORTS.items()}
    return ",".join(("-" if key.descending else "") + names[key.field] for key in keys)


def _refuse_lists() -> None:
    """A comma in a search value is FHIR's OR, which this server does not do. The query's own text is
    read: parameter parsing has already split such values at the comma, as if repeated (AND)."""
    listed = sorted(
        {
            name
            for name, value in parse_qsl(request.url.query, keep_blank_values=True)
            if name in SEARCH_PARAMS and "," in value
        }
    )
    if listed:
        message = (
            "A list of values (a comma: FHIR's OR) is not supported; repeat the parameter to require several."
        )
        raise InvalidPatient({name: message for name in listed})


class FhirPatientGone(PatientGone):
    """PatientGone (410) told in FHIR's terms: where the versions are."""

    def __init__(self, patient_id: uuid.UUID, *, purged: bool, version: int | None = None) -> None:
        what = (
            f"Version {version} of patient {patient_id}" if version is not None else f"Patient {patient_id}"
        )
        if purged:
            reason = "was deleted and its personal data erased"
        elif version is not None:
            reason = "records the patient's deletion"
        else:
            reason = "was deleted"
        PatientError.__init__(
            self, f"{what} {reason}. Its versions are listed at /fhir/Patient/{patient_id}/_history."
        )
        self.purged = purged


def _version_number(patient_id: uuid.UUID, text: str) -> int:
    if not text.isdigit() or len(text) > 9:
        raise VersionNotFound(patient_id, text)  # type: ignore[arg-type]
    return int(text)


class FhirHandlers:
    """The operations of api/fhir.yaml, bound to the use cases by bootstrap (`handler_resolver`)."""

    def __init__(self, patients: PatientService) -> None:
        self.patients = patients
        # vread and history-instance (stated in the CapabilityStatement).
        self.history = True

    def fhir_metadata(self) -> Any:
        statement = capability_statement(
            base_url(), software_version=SOFTWARE_VERSION, published=PUBLISHED, history=self.history
        )
        return statement, 200, HEADERS

    def fhir_patient_read(self, id_: str) -> Any:
        patient_id = _patient_id(id_)
        try:
            patient = self.patients.get(patient_id)
        except PatientGone as gone:
            raise FhirPatientGone(patient_id, purged=gone.purged) from None
        resource = patient_resource(patient)
        headers = {"ETag": f'W/"{patient.version}"', **HEADERS}
        if "lastUpdated" in resource["meta"]:
            headers["Last-Modified"] = _http_date(patient.updated_at)
        return resource, 200, headers

    def fhir_patient_vread(self, id_: str, vid: str) -> Any:
        patient_id = _patient_id(id_)
        found = self.patients.version(patient_id, _version_number(patient_id, vid))
        if not readable(found):
            raise FhirPatientGone(patient_id, purged=found.patient is None, version=found.version)
        headers = {"ETag": f'W/"{found.version}"', "Last-Modified": _http_date(found.changed_at), **HEADERS}
        return version_resource(found), 200, headers

    def fhir_patient_history(
        self, id_: str, _count: int | None = None, _cursor: str | None = None, _format: str | None = None
    ) -> Any:
        patient_id = _patient_id(id_)
        try:
            after = history.decode_cursor(_cursor, patient_id) if _cursor else None
        except InvalidPatient as exc:  # named as the FHIR parameter
            raise InvalidPatient({"_cursor": exc.errors["cursor"]}) from None
        count = DEFAULT_COUNT if _count is None else min(_count, MAX_COUNT)
        page = self.patients.history(patient_id, size=count, after_version=after)
        base = base_url()

        def link(after_version: int | None) -> str:
            query = [("_count", str(count))]
            if after_version is not None:
                query.append(("_cursor", history.encode_cursor(after_version, patient_id)))
            return f"{base}/Patient/{patient_id}/_history?{urlencode(query)}"

        links = [("self", link(after)), ("first", link(None))]
        if page.next_after is not None:
            links.append(("next", link(page.next_after)))
        return history_bundle(base, str(patient_id), page.items, links), 200, HEADERS

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
        _refuse_lists()
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
