"""Issuing access tokens with the current signing key, through flask-jwt-extended.

flask-jwt-extended signs with the key `encode_key_loader` returns, so the key set (and its `kid`) stays
ours. It adds two claims of its own, `type: "access"` and `fresh: false`, which verifiers ignore;
`nbf` and its cookie CSRF claim are switched off. It runs in a Flask app of its own, so that tokens can
be issued from any thread (request handlers, the benchmark, tests).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask_jwt_extended import JWTManager, create_access_token

from pm.auth.adapters.keys import SigningKey
from pm.auth.domain.model import Role
from pm.auth.service_layer.ports import IssuedToken


class JwtIssuer:
    def __init__(
        self, key: SigningKey, *, issuer: str, ttl_seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self.key = key
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._app = Flask(__name__)
        self._app.config.update(
            JWT_ALGORITHM=key.algorithm,
            JWT_ENCODE_ISSUER=issuer,
            JWT_ENCODE_NBF=False,
            JWT_COOKIE_CSRF_PROTECT=False,
            JWT_TOKEN_LOCATION=["headers"],
        )
        manager = JWTManager(self._app)

        @manager.encode_key_loader
        def _signing_key(_identity: Any) -> Any:
            return key.private_key

    def issue(self, subject: str, role: Role, session_id: uuid.UUID, not_after: datetime) -> IssuedToken:
        issued_at = int(self.clock().timestamp())
        expires = min(issued_at + self.ttl_seconds, int(not_after.timestamp()))
        with self._app.app_context():
            token = create_access_token(
                identity=subject,
                # iat and exp from our clock (its own would be the wall clock); exp never past the session.
                expires_delta=False,
                additional_claims={
                    "role": role.value,
                    "iat": issued_at,
                    "exp": expires,
                    # The session the token belongs to: verifiers refuse it once the session has ended.
                    "sid": str(session_id),
                },
                additional_headers={"kid": self.key.kid},
            )
        return IssuedToken(
            token=token,
            expires_in=expires - issued_at,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )
