"""TLS between the services, off by default (the devstack speaks plaintext on loopback).

Each link is switched on by its own `PM_*_TLS_*` settings and turned into what its library wants: an
`ssl.SSLContext` (httpx, kafka-python), certificate files (uvicorn) or PEM bytes (gRPC credentials, built
where gRPC is used so that services without gRPC do not ship it).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from pm.common.config import ConfigError, Env


@dataclass(frozen=True)
class ServerTls:
    """A listener's certificate chain and key; with `client_ca_file`, clients must present a certificate
    that CA signed (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def pem(self) -> tuple[bytes, bytes, bytes | None]:
        """(private key, certificate chain, client CA or None) as PEM bytes."""
        client_ca = self.client_ca_file.read_bytes() if self.client_ca_file else None
        return self.key_file.read_bytes(), self.cert_file.read_bytes(), client_ca


@dataclass(frozen=True)
class ClientTls:
    """How a client checks its server (`ca_file`, else the system's trust store) and, optionally, the
    certificate it presents itself for mutual TLS."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA or None for the system's, private key, certificate chain) as PEM bytes."""

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path is not None else None

        return read(self.ca_file), read(self.key_file), read(self.cert_file)


def _file(env: Env, name: str) -> Path | None:
    value = env.optional(name)
    if value is None:
        return None
    path = Path(value)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None
    return path


def _pair(env: Env, cert_name: str, key_name: str) -> tuple[Path, Path] | None:
    cert, key = _file(env, cert_name), _file(env, key_name)
    if (cert is None) != (key is None):
        raise ConfigError(f"{cert_name} and {key_name} must be set together")
    return (cert, key) if cert is not None and key is not None else None


def server_tls(env: Env, prefix: str) -> ServerTls | None:
    """`<prefix>_CERT_FILE` + `<prefix>_KEY_FILE` switch TLS on; `<prefix>_CLIENT_CA_FILE` makes it
    mutual. None (plaintext) when no certificate is configured."""
    pair = _pair(env, f"{prefix}_CERT_FILE", f"{prefix}_KEY_FILE")
    client_ca = _file(env, f"{prefix}_CLIENT_CA_FILE")
    if pair is None:
        if client_ca is not None:
            raise ConfigError(f"{prefix}_CLIENT_CA_FILE needs {prefix}_CERT_FILE and {prefix}_KEY_FILE")
        return None
    return ServerTls(pair[0], pair[1], client_ca)


def client_tls(env: Env, prefix: str, *, client_certificate: bool = True) -> ClientTls | None:
    """`<prefix>` (true/false; default: true when `<prefix>_CA_FILE` is set) switches TLS on;
    `<prefix>_CA_FILE` is the CA to trust (default: the system's); `<prefix>_CLIENT_CERT_FILE` +
    `<prefix>_CLIENT_KEY_FILE` are presented to servers that require mutual TLS."""
    ca = _file(env, f"{prefix}_CA_FILE")
    pair = (
        _pair(env, f"{prefix}_CLIENT_CERT_FILE", f"{prefix}_CLIENT_KEY_FILE") if client_certificate else None
    )
    if not env.flag(prefix, ca is not None or pair is not None):
        return None
    return ClientTls(ca, *(pair or (None, None)))
