"""Request-body validation that never echoes what was sent.

Connexion's stock messages quote the offending value ("'hunter22' is too short") in the response and in
its log; for a login or user body that value is a password. These messages name the field and the rule.
"""

from __future__ import annotations

import logging
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.validators import VALIDATOR_MAP
from jsonschema import ValidationError  # pants: no-infer-dep (a dependency of connexion)

from pm.common.validation import (
    FORMAT_CHECKER,
    BoundedParameterValidator,
    BoundedRequestValidator,
    OffLoopJSONValidator,
    rule_broken,
)

log = logging.getLogger(__name__)


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
    # An email over its maxLength is not checked against the pattern (pm.common.validation) but is no
    # valid address either: one message for every way an email can be wrong.
    if field == "email" and error.validator in ("pattern", "format", "maxLength"):
        return field, "Email should be valid"
    return field, f"{field} {rule_broken(error)}"


class SafeJSONRequestBodyValidator(OffLoopJSONValidator):
    def check(self, body: Any) -> None:
        validator = BoundedRequestValidator(self.body_schema, format_checker=FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.path)))
        if not errors:
            return
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
    "parameter": BoundedParameterValidator,
    "body": MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": SafeJSONRequestBodyValidator}),
}
