"""Billing settings: read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import field

from pm.common.config import PRODUCTION, ConfigError, Env
from pm.common.settings import ServiceSettings
from pm.common.tls import ServerTls, server_tls

MIN_SERVICE_TOKEN_CHARS = 32


class Settings(ServiceSettings, service="billing", port=4001):
    """`port` (PM_BILLING_PORT) is the HTTP side: health and metrics; the API is gRPC on `grpc_port`."""

    grpc_port: int
    grpc_max_workers: int
    grpc_max_message_bytes: int
    grace_seconds: int
    service_token: str | None = field(default=None, repr=False)
    grpc_tls: ServerTls | None = None
    reflection: bool = True

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        environment = env.environment()
        token = env.optional("PM_BILLING_SERVICE_TOKEN")
        if token is not None and len(token) < MIN_SERVICE_TOKEN_CHARS:
            raise ConfigError(
                f"PM_BILLING_SERVICE_TOKEN must be at least {MIN_SERVICE_TOKEN_CHARS} characters"
            )
        grpc_tls = server_tls(env, "PM_BILLING_GRPC_TLS")
        if environment == PRODUCTION and token is None and not (grpc_tls and grpc_tls.mutual):
            raise ConfigError(
                "PM_BILLING_SERVICE_TOKEN (or mutual TLS: PM_BILLING_GRPC_TLS_CLIENT_CA_FILE) "
                "is required when PM_ENV=production"
            )
        reflection = env.flag("PM_BILLING_GRPC_REFLECTION", environment != PRODUCTION)
        if reflection and environment == PRODUCTION:
            raise ConfigError("PM_BILLING_GRPC_REFLECTION must be off when PM_ENV=production")
        return cls(
            **cls.shared(env),
            grpc_port=env.port("PM_BILLING_GRPC_PORT", 9001),
            grpc_max_workers=env.integer("PM_BILLING_GRPC_WORKERS", 8, minimum=1, maximum=256),
            grpc_max_message_bytes=env.integer(
                "PM_BILLING_GRPC_MAX_MESSAGE_BYTES", 1_048_576, minimum=1024, maximum=64 * 1_048_576
            ),
            grace_seconds=env.integer("PM_BILLING_GRACE_SECONDS", 4, minimum=0, maximum=8),
            service_token=token,
            grpc_tls=grpc_tls,
            # Reflection describes the API to anyone who asks: a development aid, never in production.
            reflection=reflection,
        )
