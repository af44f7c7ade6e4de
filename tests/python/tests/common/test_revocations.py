"""RevocationList: reads the feed to its end, forgets what can no longer matter, keeps what it knows
when the feed is away, and makes TokenVerifier refuse ended sessions (and tokens without one)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from pm.common.tokens import (
    InvalidToken,
    RevocationList,
    StaticKeys,
    TokenVerifier,
    VerifiedTokens,
    http_revocation_feed,
)
from tests.support.clock import FakeClock
from tests.support.tokens import ISSUER, SigningKey


class Feed:
    """A feed of (cursor, sid, until) entries served in pages of `page` entries."""

    def __init__(self, page: int = 2) -> None:
        self.entries: list[tuple[int, str, float]] = []
        self.page = page
        self.down = False
        self.calls = 0

    def revoke(self, sid: str, until: float) -> None:
        self.entries.append((len(self.entries) + 1, sid, until))

    def __call__(self, after: int) -> Mapping[str, Any]:
        self.calls += 1
        if self.down:
            raise ConnectionError("auth is down")
        later = [e for e in self.entries if e[0] > after]
        page = later[: self.page]
        return {
            "cursor": page[-1][0] if page else after,
            "revoked": [{"sid": sid, "until": until} for _, sid, until in page],
            "more": len(later) > self.page,
        }


def test_poll_reads_every_page_and_then_only_what_is_new() -> None:
    feed, future = Feed(page=2), time.time() + 600
    for n in range(5):
        feed.revoke(f"s{n}", future)
    revocations = RevocationList(feed)
    assert revocations.poll()
    assert all(revocations.is_revoked(f"s{n}") for n in range(5))
    assert feed.calls == 3
    feed.revoke("s5", future)
    assert revocations.poll() and revocations.is_revoked("s5")
    assert feed.calls == 4
    assert not revocations.is_revoked("never")


def test_entries_are_forgotten_once_their_tokens_expired_past_the_leeway() -> None:
    feed, now = Feed(), time.time()
    feed.revoke("stale", now - 31)
    feed.revoke("within-leeway", now - 10)
    revocations = RevocationList(feed, leeway=30.0)
    revocations.poll()
    assert not revocations.is_revoked("stale")
    assert revocations.is_revoked("within-leeway")


def test_an_unreachable_feed_keeps_what_is_known_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed()
    feed.revoke("ended", time.time() + 600)
    revocations = RevocationList(feed)
    revocations.poll()
    feed.down = True
    with caplog.at_level(logging.INFO, logger="pm.common.tokens"):
        assert not revocations.poll()
        assert not revocations.poll()
        assert revocations.is_revoked("ended")
        feed.down = False
        feed.revoke("later", time.time() + 600)
        assert revocations.poll() and revocations.is_revoked("later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("revocation feed unreachable") == 1
    assert messages.count("revocation feed reachable again") == 1


def test_the_background_thread_picks_up_revocations_and_stops() -> None:
    feed = Feed()
    revocations = RevocationList(feed, interval=0.05)
    revocations.start()
    try:
        feed.revoke("ended", time.time() + 600)
        deadline = time.monotonic() + 5
        while not revocations.is_revoked("ended") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert revocations.is_revoked("ended")
    finally:
        revocations.stop()
    calls = feed.calls
    time.sleep(0.2)
    assert feed.calls == calls


def test_the_verifier_refuses_ended_sessions_and_tokens_without_a_session() -> None:
    key = SigningKey("k1", "RS256")
    feed = Feed()
    revocations = RevocationList(feed)
    verifier = TokenVerifier(StaticKeys({"k1": key.public}), issuer=ISSUER, revocations=revocations)
    ended, live = str(uuid.uuid4()), str(uuid.uuid4())
    feed.revoke(ended, time.time() + 600)
    revocations.poll()
    assert verifier.verify(key.mint(sid=live))["sid"] == live
    with pytest.raises(InvalidToken, match="session has ended"):
        verifier.verify(key.mint(sid=ended))
    with pytest.raises(InvalidToken, match="no session"):
        verifier.verify(key.mint(drop=("sid",)))
    # Without a revocation list (tests, tools) tokens need no session.
    assert TokenVerifier(StaticKeys({"k1": key.public}), issuer=ISSUER).verify(key.mint(drop=("sid",)))


def test_the_http_feed_keeps_one_connection_across_polls() -> None:
    """Polled every few seconds for the life of a process: each poll must not open (and TLS-load) anew."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    peers: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            peers.append(self.client_address)
            body = b'{"cursor": 0, "revoked": [], "more": false}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        fetch = http_revocation_feed(f"http://127.0.0.1:{server.server_address[1]}/revocations")
        for _ in range(3):
            assert fetch(0)["revoked"] == []
    finally:
        server.shutdown()
        server.server_close()
    assert len(peers) == 3
    assert len(set(peers)) == 1, f"each poll opened its own connection: {peers}"


class CountingKeys(StaticKeys):
    """StaticKeys that count the lookups: one per signature actually checked."""

    def __init__(self, keys: Mapping[str, Any]) -> None:
        super().__init__(keys)
        self.lookups = 0

    def key_for(self, kid: str, *, fetch: bool = True) -> Any | None:
        self.lookups += 1
        return super().key_for(kid, fetch=fetch)


def test_a_token_that_passed_is_checked_once_per_ttl_and_its_session_on_every_call() -> None:
    key = SigningKey("k1", "RS256")
    keys, clock, feed = CountingKeys({"k1": key.public}), FakeClock(time.time()), Feed()
    revocations = RevocationList(feed)
    verifier = TokenVerifier(
        keys, issuer=ISSUER, revocations=revocations, verified=VerifiedTokens(ttl=60.0, clock=clock)
    )
    session = str(uuid.uuid4())
    token = key.mint(sid=session)
    for _ in range(3):
        assert verifier.verify(token)["sid"] == session
    assert keys.lookups == 1
    clock.now += 61
    assert verifier.verify(token)["sid"] == session
    assert keys.lookups == 2
    # A session ended after its token was remembered: refused at once, remembered or not.
    feed.revoke(session, time.time() + 600)
    revocations.poll()
    with pytest.raises(InvalidToken, match="session has ended"):
        verifier.verify(token)
    # Another token (one byte differs) is verified afresh, and a forged one is not let through.
    with pytest.raises(InvalidToken):
        verifier.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_a_remembered_token_is_not_accepted_past_its_expiry() -> None:
    key = SigningKey("k1", "RS256")
    verifier = TokenVerifier(StaticKeys({"k1": key.public}), issuer=ISSUER, leeway=0.0)
    token = key.mint(exp=int(time.time()) + 1)
    assert verifier.verify(token)
    time.sleep(1.6)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)


def test_the_remembered_tokens_are_bounded() -> None:
    clock = FakeClock(time.time())
    verified = VerifiedTokens(ttl=60.0, max_entries=3, clock=clock)
    claims = {"exp": clock.now + 600}
    for n in range(3):
        verified.put(f"t{n}", claims)
    clock.now += 61  # all three stale: the next put drops them
    verified.put("t3", claims)
    assert [verified.get(f"t{n}") for n in range(4)] == [None, None, None, claims]
    for n in range(4, 7):  # full again of live entries: all are dropped to make room
        verified.put(f"t{n}", claims)
    assert verified.get("t6") == claims and verified.get("t3") is None
