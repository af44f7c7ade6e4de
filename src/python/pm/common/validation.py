"""Request-body validation that reports every invalid field at once, with messages declared in the spec.

A property in an OpenAPI schema may declare the message for each failing keyword next to itself:

    name:
      type: string
      maxLength: 100
      x-error-messages: {required: "Name is required", maxLength: "Name cannot exceed 100 characters"}

`required` is looked up on the missing property; any other keyword on the property that failed. When one
field fails several keywords, the message declared first wins (declaration order is the priority), so a
blank email reports "Email is required" rather than "Email should be valid". Keywords without a declared
message keep jsonschema's own wording. Use it with `FlaskApp(..., validator_map=VALIDATOR_MAP)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, ProblemException
from connexion.json_schema import Draft4RequestValidator
from connexion.validators import FormDataValidator, JSONRequestBodyValidator, MultiPartFormDataValidator
from jsonschema import FormatChecker, ValidationError  # pants: no-infer-dep (comes with connexion)
from starlette.types import Scope

log = logging.getLogger(__name__)

MESSAGES_KEY = "x-error-messages"
# Every format jsonschema knows (Draft 4's own checker lacks `date`, `uuid`, ...).
FORMAT_CHECKER = FormatChecker()


class ValidationProblem(ProblemException):
    """400 with `errors: {field: message}` for every invalid field."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        fields = ", ".join(sorted(errors))
        super().__init__(
            status=400,
            title="Bad Request",
            detail=f"The request has invalid fields: {fields}.",
            ext={"errors": dict(errors)},
        )


def field_errors(schema: Mapping[str, Any], instance: Any) -> dict[str, str]:
    """`{field path: message}` for every field of `instance` that breaks `schema` (empty when valid).

    The field path is dotted for nested objects (`address.city`); an error about the whole body (e.g. not
    an object) is reported under `body`.
    """
    validator = Draft4RequestValidator(schema, format_checker=FORMAT_CHECKER)
    found: dict[str, tuple[int, str]] = {}
    for error in validator.iter_errors(instance):
        for field, rank, message in _describe(error):
            if field not in found or rank < found[field][0]:
                found[field] = (rank, message)
    return {field: message for field, (_rank, message) in sorted(found.items())}


def _describe(error: ValidationError) -> list[tuple[str, int, str]]:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, Mapping):
        properties = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        described = []
        for name in error.validator_value:
            if name in error.instance:
                continue
            declared = properties.get(name, {}).get(MESSAGES_KEY, {})
            message = declared.get("required", f"{name} is required")
            described.append((".".join([*path, name]), _rank(declared, "required"), message))
        return described
    declared = error.schema.get(MESSAGES_KEY, {}) if isinstance(error.schema, Mapping) else {}
    message = declared.get(str(error.validator), error.message)
    return [(".".join(path) or "body", _rank(declared, str(error.validator)), message)]


def _rank(declared: Mapping[str, str], keyword: str) -> int:
    keywords = list(declared)
    return keywords.index(keyword) if keyword in keywords else len(keywords)


class FieldErrorsJSONValidator(JSONRequestBodyValidator):
    """Connexion JSON body validator that collects ALL errors and maps them to declared messages."""

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        try:
            body = await super()._parse(stream, scope)
            # JSON may escape lone UTF-16 surrogates ("\ud800"), which no database, protobuf or UTF-8
            # consumer accepts: refuse them here rather than fail deep inside the service.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeError:
            # Connexion lets undecodable bytes escape as a 500; they are the client's error.
            raise BadRequestProblem(detail="The request body is not valid UTF-8 text.") from None
        return body

    def _validate(self, body: Any) -> dict | None:
        if not self._nullable and body is None:
            raise BadRequestProblem("Request body must not be empty")
        errors = field_errors(self._schema, body)
        if errors:
            log.info("request body rejected", extra={"fields": sorted(errors)})
            raise ValidationProblem(errors)
        return None


VALIDATOR_MAP = {
    "body": MediaTypeDict(
        {
            "*/*json": FieldErrorsJSONValidator,
            "application/x-www-form-urlencoded": FormDataValidator,
            "multipart/form-data": MultiPartFormDataValidator,
        }
    ),
}
