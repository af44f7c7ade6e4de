"""Authenticating a caller at the edge: bearer tokens verified locally, never blocking the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from pm.common.tokens import InvalidToken, TokenVerifier, bearer_token


class Unauthenticated(Exception):
    """No usable bearer token; the message is safe to show (it never contains the token)."""


@dataclass(eq=False)
class BearerAuthenticator:
    """Checks `Authorization: Bearer <jwt>` headers with a TokenVerifier (the header read by the system's
    one parser, `pm.common.tokens.bearer_token`).

    Verification can fetch keys (an unknown `kid`, an expired key cache), so it runs in a worker thread.
    Tokens that passed are remembered for at most `cache_seconds` (and never past their `exp`): a
    client's repeated calls cost one signature check, not one per request. Whether the token's session
    has ended is checked on every request, remembered or not (a lookup in the verifier's revocations).
    """

    verifier: TokenVerifier
    _: KW_ONLY
    cache_seconds: float = 60.0
    max_cached: int = 10_000
    clock: Callable[[], float] = time.time
    _valid: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict, init=False, repr=False)

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The claims of the caller's valid token; raises Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("A bearer token is required.")
        token = bearer_token(authorization)
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
