"""Bearer token checks at the edge: verified locally, never blocking the event loop."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

from pm.common.tokens import InvalidToken, TokenVerifier


class Unauthenticated(Exception):
    """No usable bearer token; the message is safe to show (it never contains the token)."""


# RFC 6750 b64token: what a JWT is made of; whitespace, a second scheme or other junk never matches.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def edge_bearer_token(authorization: str) -> str | None:
    """The token of exactly `Bearer <token>` (scheme in any case, one space), None for anything else.

    The public edge accepts one form only: extra or odd whitespace and doubled `Bearer` prefixes are
    refused here rather than guessed at, so every service behind sees the same, well-formed header.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token) or token.lower() == "bearer":
        return None
    return token


class BearerAuthenticator:
    """Checks `Authorization: Bearer <jwt>` headers with a TokenVerifier.

    Verification can fetch keys (an unknown `kid`, an expired key cache), so it runs in a worker thread.
    Tokens that passed are remembered for at most `cache_seconds` (and never past their `exp`): a
    client's repeated calls cost one signature check, not one per request. Whether the token's session
    has ended is checked on every request, remembered or not (a lookup in the verifier's revocations).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        cache_seconds: float = 60.0,
        max_cached: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.cache_seconds = cache_seconds
        self.max_cached = max_cached
        self.clock = clock
        self._valid: dict[str, tuple[dict[str, Any], float]] = {}

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The claims of the caller's valid token; raises Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("A bearer token is required.")
        token = edge_bearer_token(authorization)
        if token is None:
            raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
        now = self.clock()
        cached = self._valid.get(token)
        if cached is not None and now < cached[1]:
            try:
                self.verifier.check_session(cached[0])
            except InvalidToken as exc:
                raise Unauthenticated(f"The bearer token is not valid: {exc}.") from None
            return cached[0]
        try:
            claims = await asyncio.to_thread(self.verifier.verify, token)
        except InvalidToken as exc:
            raise Unauthenticated(f"The bearer token is not valid: {exc}.") from None
        if len(self._valid) >= self.max_cached:
            self._valid = {key: entry for key, entry in self._valid.items() if now < entry[1]}
            if len(self._valid) >= self.max_cached:
                self._valid.clear()
        self._valid[token] = (claims, min(float(claims["exp"]), now + self.cache_seconds))
        return claims
