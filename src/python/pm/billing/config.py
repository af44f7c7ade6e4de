"""Billing settings: read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from pm.common.config import Env, sqlite_default


@dataclass(frozen=True)
class Settings:
    host: str
    http_port: int
    grpc_port: int
    database_url: str
    log_level: str
    migrate_on_start: bool
    grpc_max_workers: int
    grpc_max_message_bytes: int
    grace_seconds: int
    trusted_proxies: tuple[str, ...] = ()
    health_interval: float = 3.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        return cls(
            host=env.text("PM_HOST", "127.0.0.1"),
            # Peers whose X-Forwarded-For is believed (the gateway); nobody by default.
            trusted_proxies=env.networks("PM_TRUSTED_PROXIES"),
            http_port=env.port("PM_BILLING_PORT", 4001),
            grpc_port=env.port("PM_BILLING_GRPC_PORT", 9001),
            database_url=env.database_url("PM_BILLING_DATABASE_URL", sqlite_default(env, "billing")),
            log_level=env.log_level(),
            health_interval=env.health_interval(),
            migrate_on_start=env.flag("PM_MIGRATE_ON_START", True),
            grpc_max_workers=env.integer("PM_BILLING_GRPC_WORKERS", 8, minimum=1, maximum=256),
            grpc_max_message_bytes=env.integer(
                "PM_BILLING_GRPC_MAX_MESSAGE_BYTES", 1_048_576, minimum=1024, maximum=64 * 1_048_576
            ),
            grace_seconds=env.integer("PM_BILLING_GRACE_SECONDS", 4, minimum=0, maximum=8),
        )
