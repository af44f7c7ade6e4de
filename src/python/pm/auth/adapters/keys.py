"""Signing keys: loaded from configuration, generated in dev, published as a JWKS.

The newest key signs; older public keys stay listed (and accepted) so that tokens issued before a
rotation remain valid until they expire. Key ids are RFC 7638 thumbprints, so the same key always has the
same `kid` wherever it is loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from pm.auth.config import Settings
from pm.common.config import ConfigError

log = logging.getLogger(__name__)

DEV_KEY_NAME = "auth-jwt-signing-key.pem"
MIN_RSA_BITS = 2048

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    algorithm: str
    public_key: PublicKey

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.public_key, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(self.public_key, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(self.public_key, as_dict=True)
        # RFC 7517 advises against `key_ops` next to `use`; `use` is what JWKS consumers read.
        jwk.pop("key_ops", None)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: PrivateKey = field(repr=False)

    @property
    def verification(self) -> VerificationKey:
        return VerificationKey(self.kid, self.algorithm, self.private_key.public_key())


@dataclass(frozen=True)
class KeySet:
    signing: SigningKey
    previous: tuple[VerificationKey, ...] = ()

    @property
    def verification_keys(self) -> list[VerificationKey]:
        """Every accepted key, the signing one first, without duplicates."""
        keys: dict[str, VerificationKey] = {self.signing.kid: self.signing.verification}
        for key in self.previous:
            keys.setdefault(key.kid, key)
        return list(keys.values())

    def public_keys(self) -> dict[str, PublicKey]:
        return {key.kid: key.public_key for key in self.verification_keys}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk() for key in self.verification_keys]}


def algorithm_for(key: PrivateKey | PublicKey, source: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{source}: RSA keys must have at least {MIN_RSA_BITS} bits, got {key.key_size}"
            )
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ConfigError(f"{source}: only RSA and Ed25519 keys are supported, got {type(key).__name__}")


def thumbprint(public_key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
        members = {"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def signing_key_from_pem(pem: bytes, source: str) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{source} is not an unencrypted PEM private key") from None
    algorithm = algorithm_for(key, source)  # type: ignore[arg-type]
    assert isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return SigningKey(thumbprint(key.public_key()), algorithm, key)


def verification_key_from_pem(pem: bytes, source: str) -> VerificationKey:
    """A previous key: a PEM public key, or the old private key (only its public half is kept)."""
    public: Any
    try:
        public = serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            public = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError):
            raise ConfigError(f"{source} is not a PEM public or private key") from None
    algorithm = algorithm_for(public, source)
    return VerificationKey(thumbprint(public), algorithm, public)


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None


def generate_rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _dev_key(data_dir: Path) -> SigningKey:
    path = data_dir / DEV_KEY_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once agree on one key instead of overwriting each other.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        log.warning("using the development JWT signing key", extra={"path": str(path)})
        return signing_key_from_pem(_read(path, "PM_DATA_DIR"), f"development key {path}")
    except OSError as exc:
        raise ConfigError(f"PM_DATA_DIR: cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(generate_rsa_pem())
    log.warning(
        "generated a development JWT signing key (set PM_JWT_PRIVATE_KEY_FILE outside dev)",
        extra={"path": str(path)},
    )
    return signing_key_from_pem(path.read_bytes(), f"development key {path}")


def load_key_set(settings: Settings) -> KeySet:
    """The configured keys; in dev without configuration, a generated key kept in PM_DATA_DIR."""
    if settings.private_key_pem is not None:
        signing = signing_key_from_pem(settings.private_key_pem.encode(), "PM_JWT_PRIVATE_KEY")
    elif settings.private_key_file is not None:
        signing = signing_key_from_pem(
            _read(settings.private_key_file, "PM_JWT_PRIVATE_KEY_FILE"),
            f"PM_JWT_PRIVATE_KEY_FILE ({settings.private_key_file})",
        )
    elif settings.is_production:
        raise ConfigError(
            "PM_JWT_PRIVATE_KEY_FILE (or PM_JWT_PRIVATE_KEY) is required when PM_ENV=production"
        )
    else:
        signing = _dev_key(settings.data_dir)
    previous = tuple(
        verification_key_from_pem(
            _read(path, "PM_JWT_PREVIOUS_PUBLIC_KEY_FILES"), f"PM_JWT_PREVIOUS_PUBLIC_KEY_FILES ({path})"
        )
        for path in settings.previous_public_key_files
    )
    keys = KeySet(signing, previous)
    log.info(
        "signing keys loaded",
        extra={
            "signing_kid": signing.kid,
            "algorithm": signing.algorithm,
            "accepted": len(keys.public_keys()),
        },
    )
    return keys
