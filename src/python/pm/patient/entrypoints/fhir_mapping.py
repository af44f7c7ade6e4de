"""A stored patient as a FHIR R4 `Patient` resource, and the Bundles and CapabilityStatement around it.

The mapping, field by field, is written down in docs/fhir.md; the URIs below are the project's own
namespace for what FHIR has no standard system for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pm.patient.domain.filters import DATE_PREFIXES, split_name
from pm.patient.domain.model import ChangeType, Patient, PatientVersion

NAMESPACE = "https://pm.example.org/fhir"
BILLING_ACCOUNT_SYSTEM = f"{NAMESPACE}/sid/billing-account"
REGISTERED_DATE_EXTENSION = f"{NAMESPACE}/StructureDefinition/registered-date"
TOTAL_ESTIMATED_EXTENSION = f"{NAMESPACE}/StructureDefinition/total-estimated"

FHIR_VERSION = "4.0.1"
SEARCH_PARAMS = ("name", "family", "given", "email", "birthdate")
# `_sort` values: the FHIR name and the list's sort field it uses (and that field's index).
SORTS = {"name": "name", "birthdate": "dateOfBirth", "email": "email"}
DEFAULT_COUNT = 20
MAX_COUNT = 100


def instant(moment: datetime | None) -> str | None:
    """A FHIR `instant` (UTC, milliseconds); a moment without a zone is UTC (SQLite keeps none)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def patient_resource(
    patient: Patient, *, version: int | None = None, updated: datetime | None = None
) -> dict[str, Any]:
    """The Patient resource of `patient` (for a past version: `version` and when it was written)."""
    given, family = split_name(patient.name)
    name: dict[str, Any] = {"use": "official", "text": patient.name}
    if family is not None:
        name["family"] = family
    if given:
        name["given"] = given
    meta: dict[str, Any] = {"versionId": str(version if version is not None else patient.version)}
    last_updated = instant(updated if updated is not None else patient.updated_at)
    if last_updated is not None:
        meta["lastUpdated"] = last_updated
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": str(patient.id),
        "meta": meta,
        "extension": [{"url": REGISTERED_DATE_EXTENSION, "valueDate": patient.registered_date.isoformat()}],
    }
    if patient.billing_account_id:
        resource["identifier"] = [
            {
                "use": "secondary",
                "type": {"text": "Billing account"},
                "system": BILLING_ACCOUNT_SYSTEM,
                "value": patient.billing_account_id,
            }
        ]
    resource["name"] = [name]
    resource["telecom"] = [{"system": "email", "value": patient.email}]
    resource["birthDate"] = patient.date_of_birth.isoformat()
    resource["address"] = [{"text": patient.address}]
    return resource


def searchset(
    base: str,
    patients: Sequence[Patient],
    total: int,
    links: Sequence[tuple[str, str]],
    *,
    total_estimated: bool = False,
) -> dict[str, Any]:
    """A `searchset` Bundle: `links` as (relation, url), one `match` entry per patient."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links],
        "entry": [
            {
                "fullUrl": f"{base}/Patient/{patient.id}",
                "resource": patient_resource(patient),
                "search": {"mode": "match"},
            }
            for patient in patients
        ],
    }
    if total_estimated:
        # The count is the database planner's estimate (docs/fhir.md): said on the primitive itself.
        bundle["_total"] = {"extension": [{"url": TOTAL_ESTIMATED_EXTENSION, "valueBoolean": True}]}
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


# A change as the FHIR interaction that would have made it, and that interaction's answer.
_REQUESTS = {
    ChangeType.CREATED: ("POST", "201 Created"),
    ChangeType.UPDATED: ("PUT", "200 OK"),
    ChangeType.DELETED: ("DELETE", "204 No Content"),
    ChangeType.PURGED: ("DELETE", "204 No Content"),
}


def readable(version: PatientVersion) -> bool:
    """A version has a resource unless it records the deletion or its data was erased (purge)."""
    return version.patient is not None and version.change_type not in (ChangeType.DELETED, ChangeType.PURGED)


def version_resource(version: PatientVersion) -> dict[str, Any]:
    assert version.patient is not None
    return patient_resource(version.patient, version=version.version, updated=version.changed_at)


def history_bundle(
    base: str, patient_id: str, versions: Sequence[PatientVersion], links: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """A `history` Bundle: one entry per version, newest first, each with the request that made it and
    its response; the resource when the version has one (`readable`)."""
    entries = []
    for version in versions:
        method, status = _REQUESTS[version.change_type]
        entry: dict[str, Any] = {"fullUrl": f"{base}/Patient/{patient_id}"}
        if readable(version):
            entry["resource"] = version_resource(version)
        entry["request"] = {
            "method": method,
            "url": "Patient" if method == "POST" else f"Patient/{patient_id}",
        }
        entry["response"] = {
            "status": status,
            "etag": f'W/"{version.version}"',
            "lastModified": instant(version.changed_at),
        }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "link": [{"relation": relation, "url": url} for relation, url in links],
        "entry": entries,
    }
    if not bundle["entry"]:
        del bundle["entry"]
    return bundle


def capability_statement(
    base: str, *, software_version: str, published: str, history: bool
) -> dict[str, Any]:
    """What this server does, exactly: Patient read and search-type with the parameters and `_sort`
    values it supports, and vread and history-instance when `history` (versions are kept); nothing else."""
    interactions = ["read", *(["vread", "history-instance"] if history else []), "search-type"]
    string_docs = (
        "Case-insensitive; matches when a word of the name (words are separated by spaces) starts with "
        "the value. Repeat the parameter to require several (AND); a comma list (OR) is refused."
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "publisher": "Patient Management System",
        "kind": "instance",
        "software": {"name": "pm-patient", "version": software_version},
        "implementation": {
            "description": "Patient Management System FHIR R4 API (read and search)",
            "url": base,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "Read-only. Every operation but this one needs `Authorization: Bearer <JWT>` from the "
                    "auth service. Errors are OperationOutcome."
                ),
                "security": {
                    "description": "Bearer JSON Web Token issued by the auth service (POST /auth/login).",
                },
                "resource": [
                    {
                        "type": "Patient",
                        "profile": "http://hl7.org/fhir/StructureDefinition/Patient",
                        "interaction": [{"code": code} for code in interactions],
                        "versioning": "versioned",
                        "readHistory": history,
                        "updateCreate": False,
                        "conditionalCreate": False,
                        "conditionalRead": "not-supported",
                        "conditionalUpdate": False,
                        "conditionalDelete": "not-supported",
                        "searchParam": [
                            {
                                "name": "name",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-name",
                                "type": "string",
                                "documentation": string_docs + " The whole name is matched as well.",
                            },
                            {
                                "name": "family",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-family",
                                "type": "string",
                                "documentation": "The last word of the name starts with the value. "
                                + string_docs,
                            },
                            {
                                "name": "given",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-given",
                                "type": "string",
                                "documentation": "A word before the last starts with the value. "
                                + string_docs,
                            },
                            {
                                "name": "email",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-email",
                                "type": "token",
                                "documentation": "The whole address, compared case-insensitively.",
                            },
                            {
                                "name": "birthdate",
                                "definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate",
                                "type": "date",
                                "documentation": (
                                    "YYYY, YYYY-MM or YYYY-MM-DD with an optional prefix: "
                                    + ", ".join(DATE_PREFIXES)
                                    + ". Repeat for a range (e.g. ge1980&birthdate=lt1990)."
                                ),
                            },
                            {
                                "name": "_count",
                                "type": "number",
                                "documentation": (
                                    f"Entries per page, default {DEFAULT_COUNT}, at most {MAX_COUNT} (larger "
                                    "values are served as the maximum); 0 answers the total alone."
                                ),
                            },
                            {
                                "name": "_sort",
                                "type": "special",
                                "documentation": (
                                    "Comma-separated, `-` for descending: "
                                    + ", ".join(SORTS)
                                    + ". Default name (the whole name as stored). Ties are broken by id."
                                ),
                            },
                        ],
                    }
                ],
            }
        ],
    }
