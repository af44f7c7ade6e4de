"""Validation runs in linear time: every spec pattern is bounded by a maxLength and cannot backtrack."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import pm.analytics.bootstrap
import pm.auth.bootstrap
import pm.patient.bootstrap
from pm.common.validation import FORMAT_CHECKER, BoundedRequestValidator, field_errors
from tests.common.hostile import HOSTILE_VALUES

SPECS = {
    "auth": Path(pm.auth.bootstrap.API) / "openapi.yaml",
    "patient": Path(pm.patient.bootstrap.SPEC),
    "analytics": Path(pm.analytics.bootstrap.API) / "openapi.yaml",
}


def schemas_with_patterns(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield where, node
        for key, child in node.items():
            if key.startswith("x-"):  # extensions (x-error-messages) hold no schemas
                continue
            yield from schemas_with_patterns(child, f"{where}/{key}")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from schemas_with_patterns(child, f"{where}/{index}")


PATTERNS = [
    (f"{service}:{where}", schema)
    for service, spec in SPECS.items()
    for where, schema in schemas_with_patterns(yaml.safe_load(spec.read_text()), "")
    # Response schemas describe what the service itself writes; requests are what clients control.
    if "/responses/" not in where and not where.startswith("/components/schemas/Summary")
]


@pytest.mark.parametrize(("where", "schema"), PATTERNS, ids=[where for where, _ in PATTERNS])
def test_every_request_pattern_is_bounded_and_linear(where: str, schema: dict[str, Any]) -> None:
    assert isinstance(schema.get("maxLength"), int), f"{where}: a pattern without maxLength"
    pattern = re.compile(schema["pattern"])
    for shape, value in HOSTILE_VALUES.items():
        started = time.perf_counter()
        pattern.search(value)
        elapsed = time.perf_counter() - started
        # Linear patterns take milliseconds on 100 KB; the old, backtracking ones took minutes.
        assert elapsed < 0.5, f"{where}: {elapsed:.2f} s on {shape}"


def test_a_pattern_never_runs_on_a_string_longer_than_its_max_length() -> None:
    # A pattern that backtracks exponentially: checked on these 27 characters it takes seconds.
    schema = {
        "type": "object",
        "properties": {
            "code": {
                "type": "string",
                "maxLength": 10,
                "pattern": "^(a+)+$",
                "x-error-messages": {"pattern": "Code is invalid", "maxLength": "Code is too long"},
            }
        },
    }
    started = time.perf_counter()
    assert field_errors(schema, {"code": "a" * 26 + "b"}) == {"code": "Code is too long"}
    assert time.perf_counter() - started < 1.0
    # Within the bound, the pattern is checked as before.
    assert field_errors(schema, {"code": "aab"}) == {"code": "Code is invalid"}
    validator = BoundedRequestValidator(schema, format_checker=FORMAT_CHECKER)
    assert validator.is_valid({"code": "aaaa"})
