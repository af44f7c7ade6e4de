"""The settings every service shares, read from the same `PM_*` variables with the same defaults.

A service's `config.py` subclasses `ServiceSettings` (or `TokenCheckingSettings` when it checks tokens
issued by auth; the gateway, which keeps no data, `TokenSettings`), names itself and its default port,
and adds only its own variables; every subclass is a frozen, keyword-only dataclass without saying so:

    class Settings(ServiceSettings, service="billing", port=4001):
        grpc_port: int

        @classmethod
        def from_env(cls, env: Env | None = None) -> Settings:
            env = env or Env()
            return cls(**cls.shared(env), grpc_port=env.port("PM_BILLING_GRPC_PORT", 9001))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, dataclass_transform

from pm.common.config import PRODUCTION, ConfigError, Env, revocations_url, sqlite_default
from pm.common.tls import ClientTls, ServerTls, client_tls, server_tls

DEFAULT_AUTH_URL = "http://127.0.0.1:4005"


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class _SettingsBase:
    SERVICE: ClassVar[str]
    DEFAULT_PORT: ClassVar[int]

    def __init_subclass__(cls, *, service: str = "", port: int = 0, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if service:
            cls.SERVICE, cls.DEFAULT_PORT = service, port
        dataclass(frozen=True, kw_only=True)(cls)


class HttpSettings(_SettingsBase):
    """What every process that serves HTTP reads, the gateway included: `PM_HOST`, `PM_<SERVICE>_PORT`,
    `PM_LOG_LEVEL`, `PM_ENV`, `PM_HEALTH_INTERVAL_SECONDS`, `PM_TRUSTED_PROXIES`, `PM_HTTP_TLS_*`."""

    host: str = "127.0.0.1"
    port: int
    log_level: str = "INFO"
    environment: str = "dev"
    health_interval: float = 3.0
    # Peers whose X-Forwarded-For is believed (the gateway); nobody by default.
    trusted_proxies: tuple[str, ...] = ()
    http_tls: ServerTls | None = None

    @property
    def is_production(self) -> bool:
        return self.environment == PRODUCTION

    @classmethod
    def shared(cls, env: Env) -> dict[str, Any]:
        name = cls.SERVICE.upper()
        return {
            "host": env.text("PM_HOST", "127.0.0.1"),
            "port": env.port(f"PM_{name}_PORT", cls.DEFAULT_PORT),
            "log_level": env.log_level(),
            "environment": env.environment(),
            "health_interval": env.health_interval(),
            "trusted_proxies": env.networks("PM_TRUSTED_PROXIES"),
            "http_tls": server_tls(env, "PM_HTTP_TLS"),
        }


class TokenSettings(HttpSettings):
    """A process that checks auth's tokens itself: auth's keys (JWKS), its revocation feed, the issuer:
    also `PM_AUTH_URL`, `PM_JWKS_URL`, `PM_REVOCATIONS_URL`, `PM_JWT_ISSUER`, `PM_HTTP_TLS` (client side)."""

    jwks_url: str
    revocations_url: str
    jwt_issuer: str = "pm-auth"
    http_client_tls: ClientTls | None = None

    @classmethod
    def shared(cls, env: Env) -> dict[str, Any]:
        jwks_url = env.url("PM_JWKS_URL", f"{auth_url(env)}/.well-known/jwks.json")
        return {
            **super().shared(env),
            "jwks_url": jwks_url,
            "revocations_url": env.url("PM_REVOCATIONS_URL", revocations_url(jwks_url)),
            "jwt_issuer": env.text("PM_JWT_ISSUER", "pm-auth"),
            "http_client_tls": client_tls(env, "PM_HTTP_TLS"),
        }


class ServiceSettings(HttpSettings):
    """A service with a database: also `PM_<SERVICE>_DATABASE_URL` (a SQLite file in `PM_DATA_DIR` by
    default), `PM_MIGRATE_ON_START`, `PM_VALIDATE_RESPONSES`."""

    database_url: str = field(repr=False)
    migrate_on_start: bool = True
    validate_responses: bool = False

    @classmethod
    def shared(cls, env: Env) -> dict[str, Any]:
        name = cls.SERVICE.upper()
        return {
            **super().shared(env),
            "database_url": env.database_url(f"PM_{name}_DATABASE_URL", sqlite_default(env, cls.SERVICE)),
            "migrate_on_start": env.flag("PM_MIGRATE_ON_START", True),
            "validate_responses": env.flag("PM_VALIDATE_RESPONSES", False),
        }


class TokenCheckingSettings(ServiceSettings, TokenSettings):
    """A service with a database that checks auth's tokens itself (patient, analytics)."""


def auth_url(env: Env) -> str:
    """`PM_AUTH_URL`: where the auth service answers."""
    return env.url("PM_AUTH_URL", DEFAULT_AUTH_URL)


def kafka_bootstrap_servers(env: Env) -> str:
    """`PM_KAFKA_BOOTSTRAP_SERVERS`: `host:port[,host:port...]`, checked entry by entry."""
    value = env.text("PM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    for entry in value.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"PM_KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...], got {value!r}")
    return value
