"""Request-body validation that never echoes what was sent.

Connexion's stock messages quote the offending value ("'hunter22' is too short") in the response and in
its log; for a login or user body that value is a password. These messages name the field and the rule.
"""

from __future__ import annotations

import logging
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.validators import VALIDATOR_MAP, JSONRequestBodyValidator
from jsonschema import ValidationError  # pants: no-infer-dep (a dependency of connexion)

log = logging.getLogger(__name__)

_RULES = {
    "minLength": "must be at least {} characters",
    "maxLength": "must be at most {} characters",
    "pattern": "has an invalid format",
    "format": "must be a valid {}",
    "enum": "must be one of {}",
    "type": "must be of type {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "minProperties": "must have at least {} field(s)",
}


def describe(error: ValidationError) -> tuple[str, str]:
    """(field, message) for a schema violation, built from the schema only."""
    field = ".".join(str(part) for part in error.path) or "body"
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        if missing:
            name = ".".join([*map(str, error.path), missing[0]])
            return name, f"{name} is required"
    if error.validator in ("required", "additionalProperties"):
        # These messages quote property names only, never values.
        return field, error.message
    if field == "email" and error.validator in ("pattern", "format"):
        return field, "Email should be valid"
    template = _RULES.get(str(error.validator), "is invalid")
    value = error.validator_value
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    return field, f"{field} {template.format(shown)}"


class SafeJSONRequestBodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream: Any, scope: Any) -> Any:
        try:
            return await super()._parse(stream, scope)
        except UnicodeDecodeError:
            # Connexion lets undecodable bytes escape as a 500; they are the client's mistake.
            raise ProblemException(
                status=400, title="Bad Request", detail=f"Request body is not valid {self._encoding} text"
            ) from None

    def _validate(self, body: Any) -> dict | None:
        if body is None:
            return super()._validate(body)
        errors = sorted(self._validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
        if not errors:
            return body
        fields: dict[str, str] = {}
        for error in errors:
            field, message = describe(error)
            fields.setdefault(field, message)
        log.info("request body rejected", extra={"fields": sorted(fields)})
        raise ProblemException(
            status=400, title="Bad Request", detail="; ".join(fields.values()), ext={"errors": fields}
        )


VALIDATORS = {
    **VALIDATOR_MAP,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": SafeJSONRequestBodyValidator}),
}
