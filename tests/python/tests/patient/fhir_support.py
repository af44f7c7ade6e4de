"""Checks shared by the FHIR tests: every resource served is validated by two independent FHIR libraries.

- `fhir.resources` (pydantic models of FHIR R4B, the release after R4 with the same Patient, Bundle,
  CapabilityStatement and OperationOutcome elements used here): unknown elements, wrong types, bad
  primitive formats (ids, instants, dates, URIs) and missing required elements fail;
- `fhirclient`'s models, generated from the FHIR R4 (4.0.1) definitions, in strict mode: the same,
  against R4 itself.
"""

from __future__ import annotations

import importlib
from typing import Any

import httpx
from fhir.resources.R4B import get_fhir_model_class
from fhirclient.models.fhirabstractbase import FHIRAbstractBase

FHIR_JSON = "application/fhir+json"
_R4_MODULES = {
    "Patient": ("fhirclient.models.patient", "Patient"),
    "Bundle": ("fhirclient.models.bundle", "Bundle"),
    "CapabilityStatement": ("fhirclient.models.capabilitystatement", "CapabilityStatement"),
    "OperationOutcome": ("fhirclient.models.operationoutcome", "OperationOutcome"),
}


def validate(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` if both libraries accept it as a valid FHIR resource of its resourceType."""
    kind = resource["resourceType"]
    get_fhir_model_class(kind).model_validate(resource)
    module, name = _R4_MODULES[kind]
    model: type[FHIRAbstractBase] = getattr(importlib.import_module(module), name)
    model(jsondict=resource, strict=True)  # raises FHIRValidationError
    return resource


def fhir_body(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The validated resource of a FHIR answer with `status` and the FHIR JSON media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0] == FHIR_JSON, response.headers
    return validate(response.json())


def outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    """The validated OperationOutcome of an error answer."""
    body = fhir_body(response, status)
    assert body["resourceType"] == "OperationOutcome", body
    assert all(issue["severity"] == "error" for issue in body["issue"]), body
    return body
