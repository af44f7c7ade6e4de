"""Authenticating a caller at the edge: bearer tokens verified locally, never blocking the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pm.common.tokens import InvalidToken, TokenVerifier, bearer_token


class Unauthenticated(Exception):
    """No usable bearer token; the message is safe to show (it never contains the token)."""


@dataclass(eq=False)
class BearerAuthenticator:
    """Checks `Authorization: Bearer <jwt>` headers with a TokenVerifier (the header read by the system's
    one parser, `pm.common.tokens.bearer_token`). The verifier remembers tokens that passed (one signature
    check per token, not per request) and checks their session on every call; a check that must fetch the
    key set first runs in a worker thread (`verify_async`)."""

    verifier: TokenVerifier

    async def authenticate(self, authorization: str | None) -> dict[str, Any]:
        """The claims of the caller's valid token; raises Unauthenticated otherwise."""
        if not authorization:
            raise Unauthenticated("A bearer token is required.")
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("The Authorization header must be 'Bearer <token>'.")
        try:
            return await self.verifier.verify_async(token)
        except InvalidToken as exc:
            raise Unauthenticated(f"The bearer token is not valid: {exc}.") from None
