"""Sessions on a real auth server and PostgreSQL: refresh rotation and reuse detection, logout, disabled
users, password changes, the revocation feed, and that only a hash of a refresh token is stored."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import jwt
import sqlalchemy as sa

from tests.auth.conftest import DEMO, AuthServer, bearer, login

NURSE = {"email": "nurse@clinic.org", "password": "nurse-password-1"}


def _session(http: httpx.Client, base: str, who: dict[str, str] = DEMO) -> dict[str, Any]:
    response = login(http, base, who["email"], who["password"])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refresh(http: httpx.Client, base: str, refresh_token: str) -> httpx.Response:
    return http.post(f"{base}/token/refresh", json={"refreshToken": refresh_token})


def _valid(http: httpx.Client, base: str, token: str) -> bool:
    status = http.get(f"{base}/validate", headers=bearer(token)).status_code
    assert status in (200, 401)
    return status == 200


def _create_nurse(http: httpx.Client, base: str, admin_token: str) -> str:
    created = http.post(f"{base}/users", json=NURSE, headers=bearer(admin_token))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_refresh_rotates_and_a_spent_token_presented_again_ends_the_session(
    http: httpx.Client, auth_url: str
) -> None:
    first = _session(http, auth_url)
    rotated = _refresh(http, auth_url, first["refreshToken"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refreshToken"] != first["refreshToken"]
    assert second["token"] != first["token"]
    assert 0 < second["refreshExpiresIn"] <= first["refreshExpiresIn"]
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in (first["token"], second["token"])]
    assert claims[0]["sid"] == claims[1]["sid"] and claims[0]["jti"] != claims[1]["jti"]
    assert _valid(http, auth_url, second["token"])

    # The first refresh token is spent: presenting it again is a theft signal and ends the session.
    reused = _refresh(http, auth_url, first["refreshToken"])
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    assert _refresh(http, auth_url, second["refreshToken"]).status_code == 401
    assert not _valid(http, auth_url, second["token"])
    assert not _valid(http, auth_url, first["token"])

    # Another session of the same user is untouched.
    other = _session(http, auth_url)
    assert _valid(http, auth_url, other["token"])
    assert _refresh(http, auth_url, other["refreshToken"]).status_code == 200


def test_unknown_and_malformed_refresh_tokens(http: httpx.Client, auth_url: str) -> None:
    assert _refresh(http, auth_url, "not-a-token").status_code == 401
    assert http.post(f"{auth_url}/token/refresh", json={}).status_code == 400
    assert http.post(f"{auth_url}/token/refresh", json={"refreshToken": "x", "more": 1}).status_code == 400


def test_only_a_hash_of_the_refresh_token_is_stored(
    http: httpx.Client, auth_url: str, postgres_url: str
) -> None:
    session = _session(http, auth_url)
    refreshed = _refresh(http, auth_url, session["refreshToken"]).json()
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            stored = " ".join(
                str(value)
                for table in ("sessions", "spent_refresh_tokens")
                for row in connection.execute(sa.text(f"SELECT * FROM {table}"))
                for value in row
            )
    finally:
        engine.dispose()
    for token in (session["refreshToken"], refreshed["refreshToken"]):
        assert token not in stored
        assert hashlib.sha256(token.encode()).hexdigest() in stored


def test_logout_ends_the_session_and_its_refresh_token(http: httpx.Client, auth_url: str) -> None:
    ending, staying = _session(http, auth_url), _session(http, auth_url)
    response = http.post(f"{auth_url}/logout", headers=bearer(ending["token"]))
    assert response.status_code == 204 and response.content == b""
    assert not _valid(http, auth_url, ending["token"])
    assert _refresh(http, auth_url, ending["refreshToken"]).status_code == 401
    assert http.post(f"{auth_url}/logout", headers=bearer(ending["token"])).status_code == 401
    assert _valid(http, auth_url, staying["token"])
    assert http.post(f"{auth_url}/logout").status_code == 401


def test_revocation_feed_pages_with_a_cursor(http: httpx.Client, auth_url: str) -> None:
    start = http.get(f"{auth_url}/revocations").json()
    session = _session(http, auth_url)
    sid = jwt.decode(session["token"], options={"verify_signature": False})["sid"]
    assert http.post(f"{auth_url}/logout", headers=bearer(session["token"])).status_code == 204
    page = http.get(f"{auth_url}/revocations", params={"since": start["cursor"]}).json()
    assert [entry["sid"] for entry in page["revoked"]] == [sid]
    assert page["revoked"][0]["until"] >= int(time.time()) and page["more"] is False
    assert page["cursor"] > start["cursor"]
    assert http.get(f"{auth_url}/revocations", params={"since": page["cursor"]}).json()["revoked"] == []
    assert http.get(f"{auth_url}/revocations", params={"since": -1}).status_code == 400


def test_disabled_user_is_refused_like_a_wrong_password_until_enabled(
    http: httpx.Client, auth_url: str
) -> None:
    admin = _session(http, auth_url)["token"]
    user_id = _create_nurse(http, auth_url, admin)
    nurse = _session(http, auth_url, NURSE)
    wrong = login(http, auth_url, NURSE["email"], "wrong-password-1")

    changed = http.patch(f"{auth_url}/users/{user_id}", json={"disabled": True}, headers=bearer(admin))
    assert changed.status_code == 200, changed.text
    assert changed.json()["disabled"] is True
    assert not _valid(http, auth_url, nurse["token"])
    assert _refresh(http, auth_url, nurse["refreshToken"]).status_code == 401
    refused = login(http, auth_url, NURSE["email"], NURSE["password"])
    assert (refused.status_code, refused.json()) == (wrong.status_code, wrong.json()) == (401, wrong.json())
    listed = http.get(f"{auth_url}/users", headers=bearer(admin)).json()
    assert next(u for u in listed if u["id"] == user_id)["disabled"] is True

    assert (
        http.patch(f"{auth_url}/users/{user_id}", json={"disabled": False}, headers=bearer(admin)).status_code
        == 200
    )
    assert _valid(http, auth_url, _session(http, auth_url, NURSE)["token"])


def test_role_change_ends_the_users_sessions_and_applies_at_next_login(
    http: httpx.Client, auth_url: str
) -> None:
    admin = _session(http, auth_url)["token"]
    user_id = _create_nurse(http, auth_url, admin)
    nurse = _session(http, auth_url, NURSE)
    changed = http.patch(f"{auth_url}/users/{user_id}", json={"role": "ADMIN"}, headers=bearer(admin))
    assert changed.status_code == 200 and changed.json()["role"] == "ADMIN"
    assert not _valid(http, auth_url, nurse["token"])
    claims = http.get(f"{auth_url}/validate", headers=bearer(_session(http, auth_url, NURSE)["token"])).json()
    assert claims["role"] == "ADMIN"


def test_user_administration_rules(http: httpx.Client, auth_url: str) -> None:
    admin_session = _session(http, auth_url)
    admin = admin_session["token"]
    user_id = _create_nurse(http, auth_url, admin)
    nurse = _session(http, auth_url, NURSE)["token"]
    me = next(
        u["id"]
        for u in http.get(f"{auth_url}/users", headers=bearer(admin)).json()
        if u["email"] == DEMO["email"]
    )
    url = f"{auth_url}/users/{user_id}"
    assert http.patch(url, json={"disabled": True}, headers=bearer(nurse)).status_code == 403
    assert http.patch(url, json={"disabled": True}).status_code == 401
    assert http.patch(url, json={}, headers=bearer(admin)).status_code == 400
    assert http.patch(url, json={"disabled": "yes"}, headers=bearer(admin)).status_code == 400
    assert http.patch(url, json={"role": "ROOT"}, headers=bearer(admin)).status_code == 400
    missing = f"{auth_url}/users/00000000-0000-4000-8000-000000000000"
    assert http.patch(missing, json={"disabled": True}, headers=bearer(admin)).status_code == 404
    assert (
        http.patch(f"{auth_url}/users/not-a-uuid", json={"disabled": True}, headers=bearer(admin)).status_code
        == 400
    )
    own = http.patch(f"{auth_url}/users/{me}", json={"disabled": True}, headers=bearer(admin))
    assert own.status_code == 409
    assert _valid(http, auth_url, admin)


def test_password_change_ends_the_other_sessions_only(http: httpx.Client, auth_url: str) -> None:
    admin = _session(http, auth_url)["token"]
    _create_nurse(http, auth_url, admin)
    here, elsewhere = _session(http, auth_url, NURSE), _session(http, auth_url, NURSE)
    url = f"{auth_url}/users/me/password"

    wrong = http.post(
        url,
        json={"currentPassword": "not-it-at-all", "newPassword": "brand-new-pass"},
        headers=bearer(here["token"]),
    )
    assert wrong.status_code == 400 and "currentPassword" in wrong.json()["errors"]
    weak = http.post(
        url,
        json={"currentPassword": NURSE["password"], "newPassword": "short"},
        headers=bearer(here["token"]),
    )
    assert weak.status_code == 400
    assert _valid(http, auth_url, elsewhere["token"])

    changed = http.post(
        url,
        json={"currentPassword": NURSE["password"], "newPassword": "brand-new-pass"},
        headers=bearer(here["token"]),
    )
    assert changed.status_code == 204, changed.text
    assert not _valid(http, auth_url, elsewhere["token"])
    assert _refresh(http, auth_url, elsewhere["refreshToken"]).status_code == 401
    assert _valid(http, auth_url, here["token"])
    assert _refresh(http, auth_url, here["refreshToken"]).status_code == 200
    assert login(http, auth_url, NURSE["email"], NURSE["password"]).status_code == 401
    assert login(http, auth_url, NURSE["email"], "brand-new-pass").status_code == 200


def test_access_tokens_never_outlive_their_session(http: httpx.Client, auth_server: AuthServer) -> None:
    base = auth_server(PM_JWT_TTL_SECONDS="900", PM_AUTH_REFRESH_TTL_SECONDS="120")
    session = _session(http, base)
    assert session["refreshExpiresIn"] == 120
    assert session["expiresIn"] == 120
    claims = jwt.decode(session["token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 120
