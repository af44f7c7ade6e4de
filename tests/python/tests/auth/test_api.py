"""The auth HTTP API over a real loopback server on a real PostgreSQL database."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import sqlalchemy as sa

from pm.auth.bootstrap import prepare_database
from pm.common.db import Database
from pm.common.tokens import JwksKeys, TokenVerifier
from tests.auth.conftest import DEMO, AuthServer, bearer, login, make_settings, token_for

PROBLEM = "application/problem+json"


def test_demo_user_gets_a_token_with_the_contract_claims(http: httpx.Client, auth_url: str) -> None:
    response = login(http, auth_url, DEMO["email"], DEMO["password"])
    assert response.status_code == 200
    body = response.json()
    assert body["tokenType"] == "Bearer"
    # Sessions contract: 15-minute access tokens, a 12-hour session continued by the refresh token.
    assert body["expiresIn"] == 900
    assert body["refreshExpiresIn"] == 43200
    assert body["refreshToken"] and body["refreshToken"] not in body["token"]
    header = jwt.get_unverified_header(body["token"])
    jwks = http.get(f"{auth_url}/.well-known/jwks.json").json()
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(body["token"], jwt.PyJWK(key).key, algorithms=[header["alg"]], issuer="pm-auth")
    assert header["alg"] == "RS256"
    assert claims["sub"] == "testuser@test.com"
    assert claims["role"] == "ADMIN"
    assert claims["exp"] - claims["iat"] == 900
    uuid.UUID(claims["jti"])
    uuid.UUID(claims["sid"])


def test_validate_returns_the_callers_claims(http: httpx.Client, auth_url: str) -> None:
    token = token_for(http, auth_url)
    response = http.get(f"{auth_url}/validate", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == "testuser@test.com"
    assert body["role"] == "ADMIN"
    assert body["exp"] == jwt.decode(token, options={"verify_signature": False})["exp"]


def test_other_services_verify_tokens_through_the_published_jwks(http: httpx.Client, auth_url: str) -> None:
    verifier = TokenVerifier(JwksKeys(f"{auth_url}/.well-known/jwks.json"), issuer="pm-auth")
    claims = verifier.verify(token_for(http, auth_url))
    assert claims["role"] == "ADMIN"


def test_email_is_matched_case_insensitively_at_login(http: httpx.Client, auth_url: str) -> None:
    response = login(http, auth_url, "  TestUser@TEST.com ".strip(), DEMO["password"])
    assert response.status_code == 200


def test_unknown_email_and_wrong_password_get_the_same_answer(http: httpx.Client, auth_url: str) -> None:
    unknown = login(http, auth_url, "nobody@test.com", DEMO["password"])
    wrong = login(http, auth_url, DEMO["email"], "not-the-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.content == wrong.content
    assert unknown.headers["content-type"] == wrong.headers["content-type"] == PROBLEM
    assert "token" not in unknown.json()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "testuser@test.com"}, "password"),
        ({"password": "password123"}, "email"),
        ({"email": "not-an-email", "password": "password123"}, "email"),
        ({"email": "a b@test.com", "password": "password123"}, "email"),
        ({"email": "a\u0000b@test.com", "password": "password123"}, "email"),
        ({"email": "testuser@test.com", "password": "short12"}, "password"),
        ({"email": "testuser@test.com", "password": 12345678}, "password"),
        ({"email": "testuser@test.com", "password": "password123", "admin": True}, "body"),
    ],
)
def test_malformed_login_is_a_400_problem_naming_the_field(
    http: httpx.Client, auth_url: str, payload: dict[str, object], field: str
) -> None:
    response = http.post(f"{auth_url}/login", json=payload)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 400
    assert field in problem["errors"]
    # The rejected value (possibly a password) is never echoed back.
    assert "short12" not in response.text


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[]", b'{"email": "\xff\xfe"}'])
def test_login_body_that_is_not_a_json_object_is_a_400_problem(
    http: httpx.Client, auth_url: str, raw: bytes
) -> None:
    response = http.post(f"{auth_url}/login", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


def test_seed_is_idempotent(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, postgres_url)
    database = Database(postgres_url)
    try:
        assert prepare_database(settings, database=database) is True
        assert prepare_database(settings, database=database) is False
        with database.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT email, role FROM users")).all()
    finally:
        database.dispose()
    assert [tuple(row) for row in rows] == [("testuser@test.com", "ADMIN")]


def test_admin_creates_a_user_who_logs_in_with_role_user(http: httpx.Client, auth_url: str) -> None:
    admin = bearer(token_for(http, auth_url))
    created = http.post(
        f"{auth_url}/users", json={"email": "Nurse@Clinic.org", "password": "s3cret-pass"}, headers=admin
    )
    assert created.status_code == 201
    user = created.json()
    assert user["email"] == "nurse@clinic.org"
    assert user["role"] == "USER"
    assert set(user) == {"id", "email", "role", "createdAt", "disabled"}
    token = token_for(http, auth_url, "nurse@clinic.org", "s3cret-pass")
    assert http.get(f"{auth_url}/validate", headers=bearer(token)).json()["role"] == "USER"


def test_admin_can_create_another_admin(http: httpx.Client, auth_url: str) -> None:
    admin = bearer(token_for(http, auth_url))
    body = {"email": "boss@clinic.org", "password": "s3cret-pass", "role": "ADMIN"}
    assert http.post(f"{auth_url}/users", json=body, headers=admin).status_code == 201
    token = token_for(http, auth_url, "boss@clinic.org", "s3cret-pass")
    assert http.get(f"{auth_url}/users", headers=bearer(token)).status_code == 200


def test_duplicate_email_is_409_whatever_the_case(http: httpx.Client, auth_url: str) -> None:
    admin = bearer(token_for(http, auth_url))
    body = {"email": "TESTUSER@test.com", "password": "another-pass"}
    response = http.post(f"{auth_url}/users", json=body, headers=admin)
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "x@clinic.org", "password": "short"}, "password"),
        ({"email": "x@clinic.org", "password": "p" * 73}, "password"),
        # 24 characters but 96 bytes: bcrypt would silently ignore the tail.
        ({"email": "x@clinic.org", "password": "\U0001f511" * 24}, "password"),
        ({"email": "x@clinic.org", "password": "long-enough", "role": "ROOT"}, "role"),
        ({"email": "x.clinic.org", "password": "long-enough"}, "email"),
    ],
)
def test_invalid_new_user_is_a_400_problem(
    http: httpx.Client, auth_url: str, payload: dict[str, object], field: str
) -> None:
    admin = bearer(token_for(http, auth_url))
    response = http.post(f"{auth_url}/users", json=payload, headers=admin)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert field in response.json()["errors"]


def test_user_role_gets_403_on_user_admin(http: httpx.Client, auth_url: str) -> None:
    admin = bearer(token_for(http, auth_url))
    http.post(f"{auth_url}/users", json={"email": "u@clinic.org", "password": "user-pass"}, headers=admin)
    user = bearer(token_for(http, auth_url, "u@clinic.org", "user-pass"))
    listed = http.get(f"{auth_url}/users", headers=user)
    created = http.post(
        f"{auth_url}/users", json={"email": "v@clinic.org", "password": "user-pass"}, headers=user
    )
    assert listed.status_code == created.status_code == 403
    assert listed.headers["content-type"] == PROBLEM


def test_user_admin_without_a_token_is_401(http: httpx.Client, auth_url: str) -> None:
    response = http.get(f"{auth_url}/users")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_list_users_pages_and_never_shows_passwords(http: httpx.Client, auth_url: str) -> None:
    admin = bearer(token_for(http, auth_url))
    for n in range(3):
        body = {"email": f"user{n}@clinic.org", "password": f"password-{n}"}
        assert http.post(f"{auth_url}/users", json=body, headers=admin).status_code == 201
    everyone = http.get(f"{auth_url}/users", headers=admin)
    assert everyone.status_code == 200
    assert everyone.headers["x-total-count"] == "4"
    assert [u["email"] for u in everyone.json()] == [
        "testuser@test.com",
        "user0@clinic.org",
        "user1@clinic.org",
        "user2@clinic.org",
    ]
    assert "password" not in everyone.text and "$2b$" not in everyone.text
    page = http.get(f"{auth_url}/users", params={"limit": 2, "offset": 1}, headers=admin)
    assert [u["email"] for u in page.json()] == ["user0@clinic.org", "user1@clinic.org"]
    assert http.get(f"{auth_url}/users", params={"limit": 0}, headers=admin).status_code == 400
    assert http.get(f"{auth_url}/users", params={"page": 1}, headers=admin).status_code == 400


def test_health_and_openapi_document(http: httpx.Client, auth_url: str) -> None:
    health = http.get(f"{auth_url}/health")
    assert health.status_code == 200
    assert health.json()["components"]["database"]["status"] == "UP"
    spec = http.get(f"{auth_url}/openapi.json")
    assert spec.status_code == 200
    assert {"/login", "/validate", "/.well-known/jwks.json", "/users"} <= set(spec.json()["paths"])


def test_jwks_lists_only_public_material(http: httpx.Client, auth_url: str) -> None:
    response = http.get(f"{auth_url}/.well-known/jwks.json")
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
    assert "max-age" in response.headers["cache-control"]


def test_two_servers_on_one_database_accept_each_others_tokens(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    first, second = auth_server(), auth_server()
    token = token_for(http, first)
    assert http.get(f"{second}/validate", headers=bearer(token)).status_code == 200
