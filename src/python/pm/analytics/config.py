"""Analytics settings: read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from pm.common.config import ConfigError, Env, revocations_url, sqlite_default
from pm.common.tls import ClientTls, ServerTls, client_tls, server_tls

CONSUMER_GROUP = "analytics-service"


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    database_url: str
    kafka_bootstrap_servers: str
    patient_topic: str
    dead_letter_topic: str
    consumer_group: str
    jwks_url: str
    revocations_url: str
    jwt_issuer: str
    log_level: str
    migrate_on_start: bool
    event_retention_seconds: float = 7 * 86400.0
    outbox_retention_seconds: float = 7 * 86400.0
    validate_responses: bool = False
    kafka_tls: ClientTls | None = None
    http_tls: ServerTls | None = None
    http_client_tls: ClientTls | None = None
    trusted_proxies: tuple[str, ...] = ()
    health_interval: float = 3.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        auth_url = env.url("PM_AUTH_URL", "http://127.0.0.1:4005")
        jwks_url = env.url("PM_JWKS_URL", f"{auth_url}/.well-known/jwks.json")
        return cls(
            host=env.text("PM_HOST", "127.0.0.1"),
            # Peers whose X-Forwarded-For is believed (the gateway); nobody by default.
            trusted_proxies=env.networks("PM_TRUSTED_PROXIES"),
            port=env.port("PM_ANALYTICS_PORT", 4002),
            database_url=env.database_url("PM_ANALYTICS_DATABASE_URL", sqlite_default(env, "analytics")),
            kafka_bootstrap_servers=bootstrap_servers(env),
            patient_topic=env.text("PM_PATIENT_TOPIC", "patient"),
            dead_letter_topic=env.text("PM_PATIENT_DLQ_TOPIC", "patient.dlq"),
            consumer_group=env.text("PM_ANALYTICS_CONSUMER_GROUP", CONSUMER_GROUP),
            jwks_url=jwks_url,
            revocations_url=env.url("PM_REVOCATIONS_URL", revocations_url(jwks_url)),
            jwt_issuer=env.text("PM_JWT_ISSUER", "pm-auth"),
            log_level=env.log_level(),
            health_interval=env.health_interval(),
            migrate_on_start=env.flag("PM_MIGRATE_ON_START", True),
            event_retention_seconds=env.duration("PM_ANALYTICS_EVENT_RETENTION", "7d", minimum=1.0),
            # Event ids are kept as long as the patient outbox may publish the event again.
            outbox_retention_seconds=env.duration("PM_OUTBOX_RETENTION", "7d", minimum=1.0),
            validate_responses=env.flag("PM_VALIDATE_RESPONSES", False),
            kafka_tls=client_tls(env, "PM_KAFKA_TLS"),
            http_tls=server_tls(env, "PM_HTTP_TLS"),
            http_client_tls=client_tls(env, "PM_HTTP_TLS"),
        )


def bootstrap_servers(env: Env) -> str:
    """`host:port[,host:port...]`, checked entry by entry."""
    value = env.text("PM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    for entry in value.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"PM_KAFKA_BOOTSTRAP_SERVERS must be host:port[,host:port...], got {value!r}")
    return value
