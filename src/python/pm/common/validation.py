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

No input may stall a service (docs/reliability.md, "Hostile clients"):
- a `pattern` is not run on a string longer than its `maxLength` (jsonschema checks every keyword, so a
  100 KB value would meet the pattern too); the length error is reported instead. The specs' patterns are
  written so that a backtracking engine matches them in linear time;
- bodies over INLINE_BODY_BYTES are parsed and validated in a worker thread, not on the event loop;
- parameter errors name the parameter and the rule, never the value or the schema.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem, ProblemException
from connexion.json_schema import Draft4RequestValidator
from connexion.utils import is_nullable
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
)
from jsonschema import FormatChecker, ValidationError  # pants: no-infer-dep (comes with connexion)
from jsonschema.exceptions import best_match  # pants: no-infer-dep (comes with connexion)
from jsonschema.validators import extend  # pants: no-infer-dep (comes with connexion)
from starlette.types import Scope

log = logging.getLogger(__name__)

MESSAGES_KEY = "x-error-messages"
# Every format jsonschema knows (Draft 4's own checker lacks `date`, `uuid`, ...).
FORMAT_CHECKER = FormatChecker()

INLINE_BODY_BYTES = 16_384
"""Bodies up to this size are validated on the event loop (well under a millisecond); larger ones in
`VALIDATION_EXECUTOR`, so that a 1 MiB body never holds up other requests."""
# Its own small pool: hostile bodies must not take the threads health checks and handlers run in.
VALIDATION_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="validate")

_PATTERN = Draft4RequestValidator.VALIDATORS["pattern"]


def _pattern_within_max_length(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    max_length = schema.get("maxLength")
    if isinstance(instance, str) and isinstance(max_length, int) and len(instance) > max_length:
        return  # `maxLength` reports this string; the pattern never sees more than maxLength characters
    yield from _PATTERN(validator, pattern, instance, schema)


BoundedRequestValidator = extend(Draft4RequestValidator, {"pattern": _pattern_within_max_length})
"""Connexion's request validator, with patterns checked only on strings within their `maxLength`."""

_RULES = {
    "minLength": "must be at least {} characters",
    "maxLength": "must be at most {} characters",
    "minProperties": "must have at least {} field(s)",
    "pattern": "has an invalid format",
    "format": "must be a valid {}",
    "enum": "must be one of {}",
    "type": "must be of type {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
}


def rule_broken(error: ValidationError) -> str:
    """What `error` says about its value, built from the schema only (never quotes the value)."""
    template = _RULES.get(str(error.validator), "is invalid")
    value = error.validator_value
    shown = ", ".join(map(str, value)) if isinstance(value, list) else value
    return template.format(shown)


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
    validator = BoundedRequestValidator(schema, format_checker=FORMAT_CHECKER)
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


# What `_parse` gives for a body it had validated in a worker: Connexion passes it to `_validate` (and
# nowhere else: the handler reads the original bytes).
CHECKED_IN_WORKER = object()


class OffLoopJSONValidator(JSONRequestBodyValidator):
    """A JSON body validator that parses and checks bodies over INLINE_BODY_BYTES in a worker thread.

    Subclasses implement `check(body)`: raise a problem for an invalid body. `_parse` and `_validate` are
    the hooks Connexion documents for custom validators ("Custom validators"); the schema, nullability
    and encoding are kept here from the constructor's documented keywords, not read back from the base
    class's attributes.
    """

    def __init__(
        self,
        *,
        schema: dict[str, Any],
        required: bool = False,
        nullable: bool = False,
        encoding: str,
        strict_validation: bool,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            schema=schema,
            required=required,
            nullable=nullable,
            encoding=encoding,
            strict_validation=strict_validation,
            **kwargs,
        )
        self.body_schema = schema
        self.nullable = nullable
        self.encoding = encoding

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if len(raw) <= INLINE_BODY_BYTES:
            return self._decode(raw)
        run = contextvars.copy_context().run  # the request id reaches the worker's log lines
        await asyncio.get_running_loop().run_in_executor(
            VALIDATION_EXECUTOR, run, self._decode_and_check, raw
        )
        return CHECKED_IN_WORKER

    def _decode(self, raw: bytes) -> Any:
        try:
            text = raw.decode(self.encoding)
            if not text:
                return None
            body = json.loads(text)
            # JSON may escape lone UTF-16 surrogates ("\ud800"), which no database, protobuf or UTF-8
            # consumer accepts: refuse them here rather than fail deep inside the service.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeError:
            # Connexion lets undecodable bytes escape as a 500; they are the client's error.
            raise BadRequestProblem(detail="The request body is not valid UTF-8 text.") from None
        except json.JSONDecodeError as exc:
            raise BadRequestProblem(detail=str(exc)) from None
        return body

    def _decode_and_check(self, raw: bytes) -> None:
        self._validate(self._decode(raw))

    def _validate(self, body: Any) -> dict | None:
        if body is CHECKED_IN_WORKER:
            return None
        if not self.nullable and body is None:
            raise BadRequestProblem("Request body must not be empty")
        if body is not None:
            self.check(body)
        return None

    def check(self, body: Any) -> None:
        raise NotImplementedError


class FieldErrorsJSONValidator(OffLoopJSONValidator):
    """Connexion JSON body validator that collects ALL errors and maps them to declared messages."""

    def check(self, body: Any) -> None:
        errors = field_errors(self.body_schema, body)
        if errors:
            log.info("request body rejected", extra={"fields": sorted(errors)})
            raise ValidationProblem(errors)


class BoundedParameterValidator(ParameterValidator):
    """Connexion's parameter validator with bounded patterns and messages that quote no value or schema."""

    @staticmethod
    def validate_parameter(
        parameter_type: str, value: Any, param: dict, param_name: str | None = None
    ) -> str | None:
        if value is None or is_nullable(param):
            return ParameterValidator.validate_parameter(parameter_type, value, param, param_name)
        schema = param.get("schema", param)
        error = best_match(BoundedRequestValidator(schema, format_checker=FORMAT_CHECKER).iter_errors(value))
        if error is None:
            return None
        return f"{parameter_type.capitalize()} parameter '{param['name']}' {rule_broken(error)}."


VALIDATOR_MAP = {
    "parameter": BoundedParameterValidator,
    "body": MediaTypeDict(
        {
            "*/*json": FieldErrorsJSONValidator,
            "application/x-www-form-urlencoded": FormDataValidator,
            "multipart/form-data": MultiPartFormDataValidator,
        }
    ),
}
