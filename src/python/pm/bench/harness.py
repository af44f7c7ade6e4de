"""What the benchmarks that start services of their own share: waiting until a service answers, and the
tokens of a run (signed with a key made for the run, checked by the services with its public half)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterable
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def wait_healthy(
    url: str, *, timeout: float, interval: float = 0.1, processes: Iterable[subprocess.Popen[Any]] = ()
) -> bool:
    """Poll `url` until it answers 200 (True) or `timeout` seconds have passed (False). Raises RuntimeError
    as soon as one of `processes` (the service's) has exited: it will never answer."""
    processes = list(processes)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"the process of {url} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    return False


def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The public half of `key`, as the services read it from a PEM file."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def admin_token(
    key: rsa.RSAPrivateKey, *, kid: str, issuer: str, subject: str, lifetime: int, **claims: str
) -> str:
    """An access token of the ADMIN role, valid for `lifetime` seconds, as the auth service signs them."""
    now = int(time.time())
    return jwt.encode(
        {
            "sub": subject,
            "role": "ADMIN",
            "iss": issuer,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            **claims,
        },
        key,
        algorithm="RS256",
        headers={"kid": kid},
    )
