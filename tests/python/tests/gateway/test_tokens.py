"""The gateway checks bearer tokens itself: 401 problem+json with a Bearer challenge otherwise."""

from __future__ import annotations

import time

import pytest

from tests.gateway.conftest import Gateway, JwksServer, SigningKey
from tests.support.tokens import claims, hand_made, tamper


def assert_unauthorized(response, upstreams: dict) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401
    assert "service" not in response.json()


def test_a_valid_token_passes(gateway: Gateway, signing_key: SigningKey) -> None:
    response = gateway().get("/api/patients", headers={"Authorization": f"Bearer {signing_key.token()}"})
    assert response.status_code == 200


def test_missing_token_is_challenged_without_an_error_code(gateway: Gateway, upstreams: dict) -> None:
    response = gateway().get("/api/patients")
    assert_unauthorized(response, upstreams)
    assert response.headers["www-authenticate"] == 'Bearer realm="pm"'


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Basic dGVzdDp0ZXN0",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer  {token}",
        "Bearer\t{token}",
        "bearer bearer {token}",
        "Bearer Bearer {token}",
        "{token}",
    ],
)
def test_malformed_authorization_headers(
    gateway: Gateway, signing_key: SigningKey, upstreams: dict, authorization: str
) -> None:
    header = authorization.format(token=signing_key.token())
    assert_unauthorized(gateway().get("/api/analytics/summary", headers={"Authorization": header}), upstreams)


def test_bad_tokens_are_refused(
    gateway: Gateway, signing_key: SigningKey, foreign_key: SigningKey, upstreams: dict
) -> None:
    bad = {
        "alg none": hand_made({"alg": "none", "typ": "JWT", "kid": signing_key.kid}, claims()),
        "HS256 keyed with the public key": hand_made(
            {"alg": "HS256", "typ": "JWT", "kid": signing_key.kid},
            claims(),
            hs256_secret=signing_key.public_pem(),
        ),
        "signed by a foreign key": foreign_key.token(),
        "expired": signing_key.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "wrong issuer": signing_key.token(iss="someone-else"),
        "no role": signing_key.token(drop=("role",)),
        "tampered claims": tamper(signing_key.token(role="USER"), role="ADMIN"),
    }
    client = gateway()
    for name, token in bad.items():
        response = client.get("/api/patients", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, name
        assert response.headers["www-authenticate"] == 'Bearer realm="pm", error="invalid_token"', name
        assert_unauthorized(response, upstreams)


def test_an_unknown_key_id_refetches_the_keys_then_refuses(
    gateway: Gateway, jwks: tuple[JwksServer, str], signing_key: SigningKey, upstreams: dict
) -> None:
    server, _url = jwks
    client = gateway()
    fetched_at_start = server.fetches
    assert fetched_at_start >= 1
    response = client.get(
        "/api/patients", headers={"Authorization": f"Bearer {signing_key.token(kid='key-9')}"}
    )
    assert_unauthorized(response, upstreams)
    assert server.fetches > fetched_at_start


def test_a_rotated_key_is_picked_up_without_a_restart(
    gateway: Gateway, jwks: tuple[JwksServer, str], signing_key: SigningKey
) -> None:
    server, _url = jwks
    client = gateway()
    new_key = SigningKey("key-2")
    server.keys = [signing_key, new_key]
    response = client.get("/api/patients", headers={"Authorization": f"Bearer {new_key.token()}"})
    assert response.status_code == 200


def test_valid_tokens_need_no_call_to_auth_per_request(
    gateway: Gateway, jwks: tuple[JwksServer, str], signing_key: SigningKey, upstreams: dict
) -> None:
    server, _url = jwks
    client = gateway()
    fetches = server.fetches
    headers = {"Authorization": f"Bearer {signing_key.token()}"}
    for _ in range(20):
        assert client.get("/api/patients", headers=headers).status_code == 200
    assert server.fetches == fetches
    assert upstreams["auth"][0].openapi_fetches == 0


def test_keys_are_fetched_on_demand_when_auth_was_down_at_start(
    gateway: Gateway, jwks: tuple[JwksServer, str], signing_key: SigningKey
) -> None:
    server, _url = jwks
    server.keys = []
    client = gateway()
    server.keys = [signing_key]
    response = client.get("/api/patients", headers={"Authorization": f"Bearer {signing_key.token()}"})
    assert response.status_code == 200
