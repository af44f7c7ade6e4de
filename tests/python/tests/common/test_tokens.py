"""TokenVerifier + JwksKeys against a real JWKS endpoint: what is accepted, what is refused, caching."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pm.common.tokens import InvalidToken, JwksKeys, TokenVerifier
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey, claims, hand_made, jwks, tamper

RSA_KEY = SigningKey("rsa-1", "RS256")
ED_KEY = SigningKey("ed-1", "EdDSA")
OUTSIDER = SigningKey("rsa-1", "RS256")  # same kid as a published key, but not published


class JwksEndpoint:
    """A JWKS served over HTTP whose keys, availability and speed a test controls."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self.release = threading.Event()
        self.hanging = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.fetches += 1
        if self.hanging:
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 30)
        status, body = (500, b"{}") if self.failing else (200, json.dumps(jwks(*self.keys)).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def endpoint() -> Iterator[tuple[JwksEndpoint, str]]:
    jwks_endpoint = JwksEndpoint(RSA_KEY, ED_KEY)
    with LiveServer(jwks_endpoint) as server:
        yield jwks_endpoint, f"{server.url}/.well-known/jwks.json"
        jwks_endpoint.release.set()


@pytest.fixture(scope="module")
def published_url() -> Iterator[str]:
    """A JWKS that tests only read from (publishing RSA_KEY and ED_KEY)."""
    with LiveServer(JwksEndpoint(RSA_KEY, ED_KEY)) as server:
        yield f"{server.url}/.well-known/jwks.json"


def verifier_for(url: str, *, ttl: float = 300.0, min_refresh_interval: float = 5.0) -> TokenVerifier:
    return TokenVerifier(JwksKeys(url, ttl=ttl, min_refresh_interval=min_refresh_interval), issuer=ISSUER)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("key", [RSA_KEY, ED_KEY], ids=["RS256", "EdDSA"])
def test_a_valid_token_is_accepted_and_its_claims_returned(published_url: str, key: SigningKey) -> None:
    claims = verifier_for(published_url).verify(key.mint(sub="admin@example.com", role="ADMIN"))
    assert claims["sub"] == "admin@example.com"
    assert claims["role"] == "ADMIN"
    assert claims["iss"] == ISSUER


def forged_none() -> str:
    return hand_made({"alg": "none", "typ": "JWT", "kid": RSA_KEY.kid}, claims())


def forged_hs256_with_public_pem() -> str:
    return hand_made(
        {"alg": "HS256", "typ": "JWT", "kid": RSA_KEY.kid}, claims(), hs256_secret=RSA_KEY.public_pem()
    )


def forged_ed_header_on_rsa_kid() -> str:
    return hand_made({"alg": "EdDSA", "typ": "JWT", "kid": RSA_KEY.kid}, claims(), sign=ED_KEY.private.sign)


REJECTED = {
    "alg-none": (forged_none, "algorithm 'none' is not accepted"),
    "hs256-with-public-pem": (forged_hs256_with_public_pem, "algorithm 'HS256' is not accepted"),
    "eddsa-header-on-rsa-kid": (forged_ed_header_on_rsa_kid, "algorithm EdDSA does not match the key"),
    # An RS256 token naming the Ed25519 key: PyJWT would fail with a TypeError (a 500) on it.
    "rs256-header-on-ed-kid": (
        lambda: RSA_KEY.mint(headers={"kid": ED_KEY.kid}),
        "algorithm RS256 does not match the key",
    ),
    "key-not-in-jwks": (lambda: OUTSIDER.mint(), "invalid token: InvalidSignatureError"),
    "expired": (lambda: RSA_KEY.mint(exp=int(time.time()) - 120), "token has expired"),
    "wrong-issuer": (lambda: RSA_KEY.mint(iss="someone-else"), "wrong issuer"),
    "unknown-kid": (lambda: RSA_KEY.mint(headers={"kid": "nobody"}), "unknown key id"),
    "missing-kid": (lambda: RSA_KEY.mint(headers={"kid": None}), "no key id"),
    "missing-exp": (lambda: RSA_KEY.mint(drop=("exp",)), "MissingRequiredClaimError"),
    "missing-iat": (lambda: RSA_KEY.mint(drop=("iat",)), "MissingRequiredClaimError"),
    "missing-iss": (lambda: RSA_KEY.mint(drop=("iss",)), "MissingRequiredClaimError"),
    "missing-sub": (lambda: RSA_KEY.mint(drop=("sub",)), "MissingRequiredClaimError"),
    "missing-jti": (lambda: RSA_KEY.mint(drop=("jti",)), "MissingRequiredClaimError"),
    "missing-role": (lambda: RSA_KEY.mint(drop=("role",)), "no valid role"),
    "bad-role": (lambda: RSA_KEY.mint(role="ROOT"), "no valid role"),
    "lowercase-role": (lambda: ED_KEY.mint(role="admin"), "no valid role"),
    "tampered-claims": (lambda: tamper(RSA_KEY.mint(), role="ADMIN"), "InvalidSignatureError"),
    "empty": (lambda: "", "malformed"),
    "garbage": (lambda: "not a token", "malformed"),
    "three-dots": (lambda: "a.b.c", "malformed"),
    "header-only": (lambda: b64(b'{"alg":"RS256","kid":"rsa-1"}'), "malformed"),
}


@pytest.mark.parametrize("case", REJECTED, ids=list(REJECTED))
def test_an_untrustworthy_token_is_rejected_with_a_reason(published_url: str, case: str) -> None:
    make, reason = REJECTED[case]
    with pytest.raises(InvalidToken) as caught:
        verifier_for(published_url).verify(make())
    assert reason in str(caught.value)


def test_the_jwks_is_fetched_once_and_cached(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    verifier = verifier_for(url)
    for _ in range(5):
        verifier.verify(RSA_KEY.mint())
        verifier.verify(ED_KEY.mint())
    assert jwks_endpoint.fetches == 1


def test_a_rotated_key_is_accepted_without_restart(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    verifier = verifier_for(url, min_refresh_interval=0.2)
    verifier.verify(RSA_KEY.mint())
    rotated = SigningKey("rsa-2", "RS256")
    time.sleep(0.25)
    jwks_endpoint.keys.append(rotated)
    assert verifier.verify(rotated.mint(sub="new@example.com"))["sub"] == "new@example.com"
    assert jwks_endpoint.fetches == 2
    verifier.verify(RSA_KEY.mint())
    assert jwks_endpoint.fetches == 2


def test_refetching_for_unknown_kids_is_throttled(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    made_up = [RSA_KEY.mint(headers={"kid": f"made-up-{n}"}) for n in range(20)]
    verifier = verifier_for(url, min_refresh_interval=1.0)
    verifier.verify(RSA_KEY.mint())
    for token in made_up:
        with pytest.raises(InvalidToken, match="unknown key id"):
            verifier.verify(token)
    assert jwks_endpoint.fetches == 1
    time.sleep(1.05)
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(RSA_KEY.mint(headers={"kid": "made-up-again"}))
    assert jwks_endpoint.fetches == 2


def test_a_hanging_jwks_endpoint_costs_at_most_the_timeout(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    jwks_endpoint.hanging = True
    keys = JwksKeys(url, timeout=0.5)
    verifier = TokenVerifier(keys, issuer=ISSUER)
    started = time.monotonic()
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(RSA_KEY.mint())
    assert time.monotonic() - started < 2.5
    started = time.monotonic()
    with pytest.raises(Exception):
        keys.ping()
    assert time.monotonic() - started < 2.5


def test_the_last_good_keys_survive_a_jwks_outage(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    verifier = verifier_for(url, ttl=0.1, min_refresh_interval=0.0)
    verifier.verify(RSA_KEY.mint())
    jwks_endpoint.failing = True
    time.sleep(0.15)
    assert verifier.verify(RSA_KEY.mint())["iss"] == ISSUER
    assert jwks_endpoint.fetches == 2


def test_a_key_removed_from_the_jwks_stops_being_accepted_after_the_ttl(
    endpoint: tuple[JwksEndpoint, str],
) -> None:
    jwks_endpoint, url = endpoint
    verifier = verifier_for(url, ttl=0.1, min_refresh_interval=0.0)
    verifier.verify(ED_KEY.mint())
    jwks_endpoint.keys = [RSA_KEY]
    time.sleep(0.15)
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(ED_KEY.mint())
    verifier.verify(RSA_KEY.mint())


def test_ping_reports_a_reachable_jwks(endpoint: tuple[JwksEndpoint, str]) -> None:
    jwks_endpoint, url = endpoint
    JwksKeys(url).ping()
    jwks_endpoint.keys = []
    with pytest.raises(RuntimeError, match="no usable keys"):
        JwksKeys(url).ping()


def test_tokens_are_accepted_soon_after_the_jwks_comes_back(endpoint: tuple[JwksEndpoint, str]) -> None:
    """A service started before auth must not refuse every token for the whole throttle interval."""
    jwks_endpoint, url = endpoint
    jwks_endpoint.failing = True
    keys = JwksKeys(url, min_refresh_interval=30.0, retry_after_failure=0.2)
    keys.refresh()  # the first fetch, at start, fails: auth is not up yet
    verifier = TokenVerifier(keys, issuer=ISSUER)
    jwks_endpoint.failing = False
    with pytest.raises(InvalidToken, match="unknown key id"):
        verifier.verify(RSA_KEY.mint())  # within the short retry pause: still throttled
    time.sleep(0.25)
    assert verifier.verify(RSA_KEY.mint())["iss"] == ISSUER
    fetches_after_success = jwks_endpoint.fetches
    for n in range(5):
        with pytest.raises(InvalidToken, match="unknown key id"):
            verifier.verify(RSA_KEY.mint(headers={"kid": f"made-up-{n}"}))
    assert jwks_endpoint.fetches == fetches_after_success  # after a success, the long throttle holds
