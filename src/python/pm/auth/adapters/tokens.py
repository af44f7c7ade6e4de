"""Issuing JWTs with the current signing key (PyJWT)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

import jwt

from pm.auth.adapters.keys import SigningKey
from pm.auth.domain.model import Role
from pm.auth.service_layer.ports import IssuedToken


class JwtIssuer:
    def __init__(
        self, key: SigningKey, *, issuer: str, ttl_seconds: int, clock: Callable[[], datetime]
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    def issue(self, subject: str, role: Role) -> IssuedToken:
        issued_at = int(self.clock().timestamp())
        claims = {
            "sub": subject,
            "role": role.value,
            "iat": issued_at,
            "exp": issued_at + self.ttl_seconds,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
        }
        token = jwt.encode(
            claims, self.key.private_key, algorithm=self.key.algorithm, headers={"kid": self.key.kid}
        )
        return IssuedToken(token=token, expires_in=self.ttl_seconds)
