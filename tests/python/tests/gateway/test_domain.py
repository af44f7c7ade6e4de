"""Unit tests of the gateway's rules (no servers): routes, header policy, rate limiting, CORS."""

from __future__ import annotations

import pytest

from pm.common.config import ConfigError, Env
from pm.gateway.config import Settings
from pm.gateway.domain.clients import ClientAddresses
from pm.gateway.domain.cors import CorsPolicy
from pm.gateway.domain.headers import client_response_headers, upstream_request_headers
from pm.gateway.domain.ratelimit import RateLimiter, retry_after_seconds
from tests.support.clock import FakeClock


def test_bucket_allows_a_burst_then_the_steady_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == pytest.approx(0.5)
    assert retry_after_seconds(wait) == 1
    assert limiter.acquire("b") == 0.0
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_idle_clients_are_forgotten_so_memory_stays_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=10.0, burst=10, clock=clock, max_keys=100)
    for n in range(100):
        limiter.acquire(f"client-{n}")
    clock.now += 5
    for n in range(100, 150):
        limiter.acquire(f"client-{n}")
    assert len(limiter._buckets) <= 100


def test_a_disabled_limiter_never_refuses() -> None:
    limiter = RateLimiter(rate=0.0, burst=0)
    assert all(limiter.acquire("a") == 0.0 for _ in range(1000))


def test_upstream_headers_drop_hop_by_hop_and_forwarding_claims() -> None:
    headers = upstream_request_headers(
        [
            (b"host", b"gw.example"),
            (b"connection", b"keep-alive, x-secret-hop"),
            (b"x-secret-hop", b"1"),
            (b"proxy-connection", b"keep-alive"),
            (b"authorization", b"Bearer t"),
            (b"accept", b"application/json"),
            (b"x-forwarded-for", b"10.9.9.9"),
            (b"forwarded", b"for=10.9.9.9"),
        ],
        client="192.0.2.1",
        scheme="https",
    )
    assert headers == [
        (b"authorization", b"Bearer t"),
        (b"accept", b"application/json"),
        (b"x-forwarded-for", b"192.0.2.1"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"gw.example"),
    ]


BALANCERS = ClientAddresses(["10.0.0.0/24", "2001:db8::/64"])


def _xff(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value.encode())]


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    assert BALANCERS.client("198.51.100.7", _xff("203.0.113.1")) == "198.51.100.7"
    assert BALANCERS.client("198.51.100.7", [(b"forwarded", b"for=203.0.113.1")]) == "198.51.100.7"
    assert ClientAddresses([]).client("127.0.0.1", _xff("203.0.113.1")) == "127.0.0.1"
    assert BALANCERS.client(None, []) == "unknown"


def test_a_trusted_peer_names_the_right_most_untrusted_hop() -> None:
    # The client wrote "1.1.1.1, 2.2.2.2"; the balancer appended the address it saw.
    assert BALANCERS.client("10.0.0.5", _xff("1.1.1.1, 2.2.2.2, 198.51.100.7")) == "198.51.100.7"
    # Two balancers in a row are skipped; header lines are read in order.
    assert BALANCERS.client("10.0.0.5", _xff("1.1.1.1") + _xff("198.51.100.7, 10.0.0.9")) == "198.51.100.7"
    assert BALANCERS.client("2001:db8::1", _xff("2001:db8:1::7")) == "2001:db8:1::7"
    # No header: the balancer's own request (e.g. a health check); garbage: stop at the last trusted hop.
    assert BALANCERS.client("10.0.0.5", []) == "10.0.0.5"
    assert BALANCERS.client("10.0.0.5", _xff("nonsense, 10.0.0.9")) == "10.0.0.9"


def test_client_response_headers_drop_hop_by_hop() -> None:
    kept, length = client_response_headers(
        [
            (b"Content-Type", b"application/json"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"close, X-Hop"),
            (b"X-Hop", b"1"),
            (b"ETag", b'"v1"'),
            (b"Date", b"x"),
        ]
    )
    assert kept == [(b"content-type", b"application/json"), (b"etag", b'"v1"')]
    assert length == b""


def test_client_response_headers_keep_the_first_content_length() -> None:
    kept, length = client_response_headers(
        [(b"Content-Length", b"12"), (b"content-length", b"12"), (b"Content-Type", b"text/plain")]
    )
    assert kept == [(b"content-length", b"12"), (b"content-type", b"text/plain")]
    assert length == b"12"


def test_cors_allows_listed_origins_only() -> None:
    policy = CorsPolicy(("https://app.example",))
    assert policy.allows("https://app.example")
    assert not policy.allows("https://app.example.evil")
    assert not CorsPolicy(()).allows("https://app.example")
    assert CorsPolicy(("*",)).allows("https://any.example")


def test_cors_preflights_ask_for_listed_methods_and_headers_only() -> None:
    policy = CorsPolicy(("https://app.example",))
    assert policy.allows_preflight("https://app.example", "PATCH", "Authorization, content-type,accept")
    assert policy.allows_preflight("https://app.example", "GET", None)
    assert not policy.allows_preflight("https://app.example", "TRACE", None)
    assert not policy.allows_preflight("https://app.example", "GET", "authorization, x-debug")
    assert not policy.allows_preflight("https://evil.example", "GET", None)


@pytest.mark.parametrize(
    "origins", ["*", "http://localhost:5173", "https://app.example,http://127.0.0.1:3000"]
)
def test_production_refuses_development_cors_origins(origins: str) -> None:
    assert Settings.from_env(Env({"PM_GATEWAY_CORS_ORIGINS": origins})).cors_origins
    with pytest.raises(ConfigError, match="PM_GATEWAY_CORS_ORIGINS may list only https:// origins"):
        Settings.from_env(Env({"PM_ENV": "production", "PM_GATEWAY_CORS_ORIGINS": origins}))


def test_production_allows_named_https_origins_and_no_cors_by_default() -> None:
    production = Settings.from_env(Env({"PM_ENV": "production"}))
    assert production.is_production and production.cors_origins == ()
    named = Settings.from_env(Env({"PM_ENV": "production", "PM_GATEWAY_CORS_ORIGINS": "https://app.example"}))
    assert named.cors_origins == ("https://app.example",)
