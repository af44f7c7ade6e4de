"""Key pairs and token minting for tests: what the auth service does, in a few lines."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

ISSUER = "pm-auth"


class SigningKey:
    def __init__(self, kid: str, algorithm: str) -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "RS256":
            self.private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
        self.public = self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.algorithm == "RS256" else OKPAlgorithm
        entry = json.loads(codec.to_jwk(self.public))
        entry.update(kid=self.kid, use="sig", alg=self.algorithm)
        return entry

    def mint(
        self, *, headers: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **claims: Any
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": "user@example.com",
            "role": "USER",
            "iat": now,
            "exp": now + 600,
            "iss": ISSUER,
            "jti": uuid.uuid4().hex,
            "sid": str(uuid.uuid4()),
        }
        payload.update(claims)
        for name in drop:
            payload.pop(name)
        return jwt.encode(
            payload, self.private, algorithm=self.algorithm, headers={"kid": self.kid, **(headers or {})}
        )


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}
