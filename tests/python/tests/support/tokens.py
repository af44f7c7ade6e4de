"""The one place tests make JWTs: genuine ones (what the auth service does, in a few lines) and forgeries.

- `SigningKey(kid, "RS256" | "EdDSA")` (or around a key loaded from a file: `SigningKey(kid, private=...)`):
  `mint(**claims)`, `jwk()`, `public_pem()`; `jwks(*keys)` is the document auth publishes.
- `claims(**overrides)`: the claim set auth issues, for tokens built by hand.
- `hand_made(header, claims, ...)`: what PyJWT refuses to produce (`alg: none`, HS256 keyed with a public
  key, a signature by a key of another type than the header says); `tamper(token, **claims)` changes the
  payload and keeps the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

ISSUER = "pm-auth"


def claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a token auth would issue now (a USER, ten minutes), with `overrides` applied."""
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
    payload.update(overrides)
    return payload


class SigningKey:
    def __init__(self, kid: str, algorithm: str = "RS256", *, private: Any = None) -> None:
        self.kid = kid
        self.algorithm = algorithm
        if private is not None:
            self.private: Any = private
        elif algorithm == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
        self.public = self.private.public_key()

    @classmethod
    def from_pem_file(cls, kid: str, path: Path) -> SigningKey:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        algorithm = "EdDSA" if isinstance(private, ed25519.Ed25519PrivateKey) else "RS256"
        return cls(kid, algorithm, private=private)

    def jwk(self) -> dict[str, Any]:
        codec = RSAAlgorithm if self.algorithm == "RS256" else OKPAlgorithm
        entry = json.loads(codec.to_jwk(self.public))
        entry.update(kid=self.kid, use="sig", alg=self.algorithm)
        return entry

    def public_pem(self) -> bytes:
        return bytes(
            self.public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def mint(
        self, *, headers: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **overrides: Any
    ) -> str:
        """A token signed by this key: `claims(**overrides)` without `drop`; `headers` replace the kid's."""
        payload = claims(**overrides)
        for name in drop:
            payload.pop(name)
        header = {"kid": self.kid, **(headers or {})}
        if header.get("kid") is None:
            del header["kid"]
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers=header)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(
    header: dict[str, Any],
    payload: dict[str, Any],
    *,
    hs256_secret: bytes | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> str:
    """A token assembled by hand: unsigned (empty signature), HMAC-SHA256 with `hs256_secret`, or signed
    by `sign` whatever the header claims."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if hs256_secret is not None:
        signature = _b64(hmac.new(hs256_secret, signing_input.encode(), hashlib.sha256).digest())
    elif sign is not None:
        signature = _b64(sign(signing_input.encode()))
    else:
        signature = ""
    return f"{signing_input}.{signature}"


def tamper(token: str, **changes: Any) -> str:
    """`token` with its payload changed and its header and signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"
