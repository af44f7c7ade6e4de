"""Token checks never stall patient: a slow key refetch waits off the event loop; every bad token is a 401."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from pm.common.db import Database
from pm.common.tokens import JwksKeys, StaticKeys, TokenVerifier
from tests.common.hostile import SlowJwks, assert_refused_without_stall, send_while_probing
from tests.patient.conftest import KID, BillingServer, Running, start_service
from tests.support import tokens
from tests.support.servers import LiveServer
from tests.support.tokens import ISSUER, SigningKey

JWKS_DELAY = 3.0


@pytest.fixture
def jwks(signing_key: SigningKey) -> Iterator[tuple[SlowJwks, str]]:
    endpoint = SlowJwks(tokens.jwks(signing_key))
    with LiveServer(endpoint) as server:
        yield endpoint, f"{server.url}/.well-known/jwks.json"


@pytest.fixture
def jwks_service(
    jwks: tuple[SlowJwks, str],
    patient_db: Database,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
) -> Iterator[Running]:
    # No refetch throttle: every unknown kid makes the service ask the JWKS endpoint again.
    verifier = TokenVerifier(
        JwksKeys(jwks[1], timeout=JWKS_DELAY * 2, min_refresh_interval=0.0), issuer=ISSUER
    )
    yield from start_service(patient_db, verifier, billing_server.target, kafka_bootstrap, topic)


def test_a_slow_key_refetch_does_not_stall_other_requests(
    jwks: tuple[SlowJwks, str],
    jwks_service: Running,
    mint: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    valid = {"Authorization": f"Bearer {mint()}"}
    assert httpx.get(f"{jwks_service.url}/patients", headers=valid, timeout=10).status_code == 200
    endpoint, _ = jwks
    endpoint.delay = JWKS_DELAY
    fetches = endpoint.fetches
    unknown_kid = SigningKey("new").mint(sub="x@example.com", role="ADMIN")
    for probe in ("/health", "/patients"):
        outcome = send_while_probing(
            jwks_service.url,
            lambda c: c.get("/patients", headers={"Authorization": f"Bearer {unknown_kid}"}),
            probe_path=probe,
            probe_headers=valid,
        )
        assert_refused_without_stall(outcome, f"unknown kid, probing {probe}")
        assert outcome.response is not None and outcome.response.status_code == 401
        # The refetch really was slow, and the probes ran while it was under way.
        assert outcome.hostile_seconds >= JWKS_DELAY * 0.8 and outcome.probes >= 3
        with capsys.disabled():
            print(
                f"\npatient: unknown kid refused after {outcome.hostile_seconds:.2f} s (JWKS {JWKS_DELAY} s late);"
                f" {outcome.probes} concurrent {probe}, slowest {outcome.slowest_probe:.3f} s"
            )
    assert endpoint.fetches == fetches + 2


def test_an_rs256_token_naming_an_ed25519_key_is_a_401_problem(
    patient_db: Database,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
    signing_key: SigningKey,
    mint: Callable[..., str],
) -> None:
    ed_key = SigningKey("ed", "EdDSA")
    keys = StaticKeys({KID: signing_key.public, "ed": ed_key.public})
    verifier = TokenVerifier(keys, issuer=ISSUER)
    mismatched = {
        "RS256 on the Ed25519 kid": signing_key.mint(headers={"kid": "ed"}, role="ADMIN"),
        "EdDSA on the RSA kid": ed_key.mint(headers={"kid": KID}, role="ADMIN"),
    }
    for running in start_service(patient_db, verifier, billing_server.target, kafka_bootstrap, topic):
        with httpx.Client(base_url=running.url, timeout=10) as client:
            for what, token in mismatched.items():
                response = client.get("/patients", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 401, (what, response.text)
                assert response.headers["content-type"] == "application/problem+json", what
                assert response.headers["www-authenticate"].startswith("Bearer"), what
            assert client.get("/patients", headers={"Authorization": f"Bearer {mint()}"}).status_code == 200
