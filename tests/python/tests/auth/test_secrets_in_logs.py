"""Passwords and tokens never reach the logs, whatever the outcome of a request."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from pm.common.logs import JsonFormatter
from tests.auth.conftest import DEMO, AuthServer, bearer, login


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged at any level, formatted as the service formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("auth"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_full_flow_logs_neither_passwords_nor_tokens(
    http: httpx.Client, auth_server: AuthServer, captured_logs: io.StringIO
) -> None:
    new_password = "Nurse-Secret-4711"
    wrong_password = "Wrong-Guess-0815"
    short_password = "Sh0rt!"
    base = auth_server(PM_AUTH_MAX_FAILURES_PER_EMAIL="2")

    token = login(http, base, DEMO["email"], DEMO["password"]).json()["token"]
    assert http.get(f"{base}/validate", headers=bearer(token)).status_code == 200
    created = http.post(
        f"{base}/users", json={"email": "nurse@clinic.org", "password": new_password}, headers=bearer(token)
    )
    assert created.status_code == 201
    user_token = login(http, base, "nurse@clinic.org", new_password).json()["token"]
    assert http.get(f"{base}/users", headers=bearer(user_token)).status_code == 403
    assert http.get(f"{base}/validate", headers=bearer(user_token + "x")).status_code == 401
    assert login(http, base, "nurse@clinic.org", wrong_password).status_code == 401
    assert login(http, base, "nurse@clinic.org", wrong_password).status_code == 401
    assert login(http, base, "nurse@clinic.org", wrong_password).status_code == 429
    assert login(http, base, "nurse@clinic.org", short_password).status_code == 400
    bad_user = http.post(
        f"{base}/users", json={"email": "x@clinic.org", "password": short_password}, headers=bearer(token)
    )
    assert bad_user.status_code == 400

    logged = captured_logs.getvalue()
    assert "login succeeded" in logged and "user created" in logged, "the flow was not logged at all"
    for secret in (DEMO["password"], new_password, wrong_password, short_password, token, user_token):
        assert secret not in logged
    # Not even a fragment of a token (its signature part is the secret-bearing bit).
    assert token.split(".")[2][:16] not in logged
