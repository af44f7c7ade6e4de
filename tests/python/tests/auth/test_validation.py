"""Validation messages are built from the schema, never from the submitted value."""

from __future__ import annotations

import pytest
from jsonschema import Draft4Validator  # pants: no-infer-dep (a dependency of connexion)

from pm.auth.entrypoints.validation import describe

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email", "password"],
    "properties": {
        "email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"},
        "password": {"type": "string", "minLength": 8, "maxLength": 72},
        "role": {"enum": ["ADMIN", "USER"]},
    },
}


def _errors(body: object) -> dict[str, str]:
    return dict(describe(error) for error in Draft4Validator(SCHEMA).iter_errors(body))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"email": "a@b.co"}, {"password": "password is required"}),
        ({"email": "nope", "password": "Secret-Pass1"}, {"email": "Email should be valid"}),
        ({"email": "a@b.co", "password": "Sec-1"}, {"password": "password must be at least 8 characters"}),
        ({"email": "a@b.co", "password": 12345678}, {"password": "password must be of type string"}),
        (
            {"email": "a@b.co", "password": "Secret-Pass1", "role": "ROOT"},
            {"role": "role must be one of ADMIN, USER"},
        ),
    ],
)
def test_messages_name_the_field_and_rule(body: object, expected: dict[str, str]) -> None:
    assert _errors(body) == expected


def test_no_message_contains_the_submitted_values() -> None:
    body = {"email": "Secret-Mail", "password": "Sec-1", "role": "Secret-Role", "Secret-Key": 1}
    text = repr(_errors(body))
    assert "Sec-1" not in text and "Secret-Mail" not in text and "Secret-Role" not in text
