"""Token checks never stall analytics: a slow key refetch waits off the event loop; every bad token is a 401."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pm.analytics.bootstrap import create_app
from pm.common.db import Database
from pm.common.tokens import JwksKeys, StaticKeys, TokenVerifier
from tests.common.hostile import SlowJwks, assert_refused_without_stall, send_while_probing
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey, jwks

JWKS_DELAY = 3.0


@pytest.fixture
def slow_jwks(signing_key: SigningKey) -> Iterator[tuple[SlowJwks, str]]:
    endpoint = SlowJwks(jwks(signing_key))
    with LiveServer(endpoint) as server:
        yield endpoint, f"{server.url}/.well-known/jwks.json"


def test_a_slow_key_refetch_does_not_stall_other_requests(
    database: Database,
    slow_jwks: tuple[SlowJwks, str],
    signing_key: SigningKey,
    token: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, url = slow_jwks
    # No refetch throttle: every unknown kid makes the service ask the JWKS endpoint again.
    verifier = TokenVerifier(JwksKeys(url, timeout=JWKS_DELAY * 2, min_refresh_interval=0.0), issuer=ISSUER)
    valid = {"Authorization": f"Bearer {token}"}
    with LiveServer(create_app(database, verifier, validate_responses=True)) as api:
        assert httpx.get(f"{api.url}/analytics/summary", headers=valid, timeout=10).status_code == 200
        endpoint.delay = JWKS_DELAY
        unknown_kid = SigningKey("rotated", "RS256").mint()
        outcome = send_while_probing(
            api.url,
            lambda c: c.get("/analytics/summary", headers={"Authorization": f"Bearer {unknown_kid}"}),
            probe_path="/analytics/summary",
            probe_headers=valid,
        )
    assert_refused_without_stall(outcome, "unknown kid")
    assert outcome.response is not None and outcome.response.status_code == 401
    # The refetch really was slow, and the probes ran while it was under way.
    assert outcome.hostile_seconds >= JWKS_DELAY * 0.8 and outcome.probes >= 3
    assert endpoint.fetches == 2
    with capsys.disabled():
        print(
            f"\nanalytics: unknown kid refused after {outcome.hostile_seconds:.2f} s (JWKS {JWKS_DELAY} s late);"
            f" {outcome.probes} concurrent requests, slowest {outcome.slowest_probe:.3f} s"
        )


def test_a_token_whose_alg_does_not_fit_its_key_is_a_401_problem(
    database: Database, signing_key: SigningKey
) -> None:
    ed_key = SigningKey("ed", "EdDSA")
    verifier = TokenVerifier(
        StaticKeys({signing_key.kid: signing_key.public, "ed": ed_key.public}), issuer=ISSUER
    )
    mismatched = {
        "RS256 on the Ed25519 kid": signing_key.mint(headers={"kid": "ed"}),
        "EdDSA on the RSA kid": ed_key.mint(headers={"kid": signing_key.kid}),
    }
    with LiveServer(create_app(database, verifier, validate_responses=True)) as api:
        for what, bad in mismatched.items():
            response = httpx.get(f"{api.url}/analytics/summary", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401, (what, response.text)
            assert response.headers["content-type"] == "application/problem+json", what
        good = httpx.get(
            f"{api.url}/analytics/summary", headers={"Authorization": f"Bearer {signing_key.mint()}"}
        )
        assert good.status_code == 200
