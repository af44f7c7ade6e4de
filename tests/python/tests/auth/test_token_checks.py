"""/validate refuses every forged, expired or foreign token; key rotation keeps older tokens valid."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.auth.conftest import AuthServer, bearer, token_for
from tests.support.tokens import SigningKey, claims, hand_made, tamper


def _key(path: Path, kid: str) -> SigningKey:
    return SigningKey.from_pem_file(kid, path)


INTRUDER: dict[str, Any] = {"sub": "intruder@test.com", "role": "ADMIN"}


def _assert_rejected(http: httpx.Client, base: str, token: str) -> None:
    response = http.get(f"{base}/validate", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.fixture
def real(http: httpx.Client, auth_url: str) -> tuple[str, str]:
    """(base URL, a genuine token of the demo admin)."""
    return auth_url, token_for(http, auth_url)


def test_missing_authorization_header_is_401_with_a_bearer_challenge(
    http: httpx.Client, auth_url: str
) -> None:
    response = http.get(f"{auth_url}/validate")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


def test_non_bearer_schemes_and_garbage_are_401(http: httpx.Client, auth_url: str) -> None:
    for value in ("Basic dGVzdDp0ZXN0", "Bearer", "Bearer not.a.jwt", "Bearer a b"):
        response = http.get(f"{auth_url}/validate", headers={"Authorization": value})
        assert response.status_code == 401, value


def test_tampered_payload_is_rejected(http: httpx.Client, real: tuple[str, str]) -> None:
    base, token = real
    _assert_rejected(http, base, tamper(token, sub="someone-else@test.com"))


def test_token_signed_by_another_key_with_the_real_kid_is_rejected(
    http: httpx.Client, real: tuple[str, str], key_dir: Path
) -> None:
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    forged = _key(key_dir / "new.pem", kid).mint(**INTRUDER)
    _assert_rejected(http, base, forged)


def test_alg_none_is_rejected(http: httpx.Client, real: tuple[str, str]) -> None:
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    unsigned = hand_made({"alg": "none", "typ": "JWT", "kid": kid}, claims(**INTRUDER))
    _assert_rejected(http, base, unsigned)


def test_hs256_signed_with_the_public_key_is_rejected(http: httpx.Client, real: tuple[str, str]) -> None:
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in http.get(f"{base}/.well-known/jwks.json").json()["keys"] if k["kid"] == kid)
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # PyJWT refuses to sign HS256 with a PEM key (the very attack), so sign by hand.
    forged = hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": kid}, claims(**INTRUDER), hs256_secret=public_pem
    )
    _assert_rejected(http, base, forged)


def test_expired_token_is_rejected(http: httpx.Client, real: tuple[str, str], key_dir: Path) -> None:
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    hour_ago = int(time.time()) - 3600
    expired = _key(key_dir / "old.pem", kid).mint(iat=hour_ago - 600, exp=hour_ago, **INTRUDER)
    _assert_rejected(http, base, expired)


def test_wrong_issuer_is_rejected(http: httpx.Client, real: tuple[str, str], key_dir: Path) -> None:
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    foreign = _key(key_dir / "old.pem", kid).mint(iss="someone-else", **INTRUDER)
    _assert_rejected(http, base, foreign)


def test_a_correctly_signed_token_made_here_is_accepted(
    http: httpx.Client, real: tuple[str, str], key_dir: Path
) -> None:
    """Control for the forgeries above: the same construction with the right key and claims passes."""
    base, token = real
    kid = jwt.get_unverified_header(token)["kid"]
    good = _key(key_dir / "old.pem", kid).mint(**INTRUDER)
    assert http.get(f"{base}/validate", headers=bearer(good)).status_code == 200


def test_rotation_lists_both_keys_signs_with_the_newest_and_accepts_older_tokens(
    http: httpx.Client, auth_server: AuthServer, key_dir: Path
) -> None:
    before = auth_server(PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "old.pem"))
    old_token = token_for(http, before)
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    after = auth_server(
        PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "new.pem"),
        PM_JWT_PREVIOUS_PUBLIC_KEY_FILES=str(key_dir / "old.pem"),
    )
    kids = [k["kid"] for k in http.get(f"{after}/.well-known/jwks.json").json()["keys"]]
    new_token = token_for(http, after)
    new_kid = jwt.get_unverified_header(new_token)["kid"]
    assert len(kids) == 2 and kids[0] == new_kid and kids[1] == old_kid
    assert http.get(f"{after}/validate", headers=bearer(old_token)).status_code == 200
    assert http.get(f"{after}/validate", headers=bearer(new_token)).status_code == 200

    retired = auth_server(PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "new.pem"))
    assert http.get(f"{retired}/validate", headers=bearer(old_token)).status_code == 401


def test_public_key_file_is_accepted_as_a_previous_key(
    http: httpx.Client, auth_server: AuthServer, key_dir: Path, tmp_path: Path
) -> None:
    public = tmp_path / "old.pub.pem"
    public.write_bytes(_key(key_dir / "old.pem", "old").public_pem())
    old_token = token_for(http, auth_server())
    after = auth_server(
        PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "new.pem"), PM_JWT_PREVIOUS_PUBLIC_KEY_FILES=str(public)
    )
    assert http.get(f"{after}/validate", headers=bearer(old_token)).status_code == 200


def test_ed25519_signing_key_issues_eddsa_tokens(
    http: httpx.Client, auth_server: AuthServer, key_dir: Path
) -> None:
    base = auth_server(PM_JWT_PRIVATE_KEY_FILE=str(key_dir / "ed25519.pem"))
    token = token_for(http, base)
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
    (key,) = http.get(f"{base}/.well-known/jwks.json").json()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["alg"] == "EdDSA"
    assert http.get(f"{base}/validate", headers=bearer(token)).status_code == 200
