"""The one parser of `Authorization: Bearer <token>` headers (`pm.common.tokens.bearer_token`), used by the
gateway and by every service: its rules, case by case."""

from __future__ import annotations

import pytest

from pm.common.tokens import bearer_token

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive(scheme: str) -> None:
    assert bearer_token(f"{scheme} {JWT}") == JWT


@pytest.mark.parametrize(
    "token", [JWT, "abc-._~+/", "abc==", "a", "mF_9.B5f-4.1JqM", "0123456789ABCDEFabcdef"]
)
def test_any_rfc_6750_b64token_is_accepted(token: str) -> None:
    assert bearer_token(f"Bearer {token}") == token


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Bearer", id="no token"),
        pytest.param("Bearer ", id="empty token"),
        pytest.param("Bearer  ", id="only spaces"),
        pytest.param(f"Bearer  {JWT}", id="two spaces"),
        pytest.param(f"Bearer\t{JWT}", id="a tab"),
        pytest.param(f" Bearer {JWT}", id="leading space"),
        pytest.param(f"Bearer {JWT} ", id="trailing space"),
        pytest.param(f"Bearer {JWT}\n", id="trailing newline"),
        pytest.param("Bearer abc def", id="two tokens"),
        pytest.param(f"Bearer Bearer {JWT}", id="doubled scheme"),
        pytest.param("Bearer bearer", id="the scheme as the token"),
        pytest.param("Bearer =abc", id="padding first"),
        pytest.param("Bearer abc=def", id="padding inside"),
        pytest.param('Bearer "abc"', id="quoted"),
        pytest.param("Bearer abc,def", id="a comma"),
        pytest.param("Bearer ab\u00e9", id="not ASCII"),
        pytest.param(f"Bearer{JWT}", id="no space"),
        pytest.param("Basic dXNlcjpwYXNz", id="another scheme"),
        pytest.param(f"Token {JWT}", id="an unknown scheme"),
        pytest.param(JWT, id="no scheme"),
        pytest.param("", id="empty header"),
        pytest.param(None, id="no header"),
    ],
)
def test_anything_else_is_no_token(header: str | None) -> None:
    assert bearer_token(header) is None
