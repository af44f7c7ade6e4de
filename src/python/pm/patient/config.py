"""The patient service's settings: the only place its environment is read."""

from __future__ import annotations

from dataclasses import dataclass, field

from pm.common.config import PRODUCTION, ConfigError, Env, revocations_url, sqlite_default
from pm.common.tls import ClientTls, ServerTls, client_tls, server_tls


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    log_level: str
    database_url: str
    migrate_on_start: bool
    kafka_bootstrap_servers: str
    patient_topic: str
    billing_target: str
    billing_deadline_seconds: float
    billing_attempts: int
    jwks_url: str
    revocations_url: str
    jwt_issuer: str
    outbox_batch_size: int
    outbox_max_backoff_seconds: float
    outbox_retention_seconds: float
    validate_responses: bool = False
    exact_count_limit: int = 1_000
    billing_tls: ClientTls | None = None
    billing_service_token: str | None = field(default=None, repr=False)
    kafka_tls: ClientTls | None = None
    http_tls: ServerTls | None = None
    http_client_tls: ClientTls | None = None
    trusted_proxies: tuple[str, ...] = ()
    health_interval: float = 3.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        auth_url = env.url("PM_AUTH_URL", "http://127.0.0.1:4005")
        billing_tls = client_tls(env, "PM_BILLING_GRPC_TLS")
        billing_token = env.optional("PM_BILLING_SERVICE_TOKEN")
        # Production billing answers only callers with its credential: without one, every create fails.
        if env.environment() == PRODUCTION and not (billing_token or (billing_tls and billing_tls.cert_file)):
            raise ConfigError(
                "PM_BILLING_SERVICE_TOKEN (or PM_BILLING_GRPC_TLS_CLIENT_CERT_FILE) is required "
                "when PM_ENV=production"
            )
        jwks_url = env.url("PM_JWKS_URL", f"{auth_url}/.well-known/jwks.json")
        return cls(
            host=env.text("PM_HOST", "127.0.0.1"),
            # Peers whose X-Forwarded-For is believed (the gateway); nobody by default.
            trusted_proxies=env.networks("PM_TRUSTED_PROXIES"),
            port=env.port("PM_PATIENT_PORT", 4000),
            log_level=env.log_level(),
            health_interval=env.health_interval(),
            database_url=env.database_url("PM_PATIENT_DATABASE_URL", sqlite_default(env, "patient")),
            migrate_on_start=env.flag("PM_MIGRATE_ON_START", True),
            kafka_bootstrap_servers=env.text("PM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            patient_topic=env.text("PM_PATIENT_TOPIC", "patient"),
            billing_target=env.host_port("PM_BILLING_GRPC_TARGET", "127.0.0.1:9001"),
            billing_deadline_seconds=env.number("PM_BILLING_DEADLINE_SECONDS", 2.0, minimum=0.1),
            billing_attempts=env.integer("PM_BILLING_ATTEMPTS", 3, minimum=1, maximum=10),
            jwks_url=jwks_url,
            revocations_url=env.url("PM_REVOCATIONS_URL", revocations_url(jwks_url)),
            jwt_issuer=env.text("PM_JWT_ISSUER", "pm-auth"),
            outbox_batch_size=env.integer("PM_OUTBOX_BATCH_SIZE", 100, minimum=1, maximum=10_000),
            outbox_max_backoff_seconds=env.number("PM_OUTBOX_MAX_BACKOFF_SECONDS", 30.0, minimum=0.1),
            outbox_retention_seconds=env.duration("PM_OUTBOX_RETENTION", "7d", minimum=1.0),
            validate_responses=env.flag("PM_VALIDATE_RESPONSES", False),
            # X-Total-Count is exact up to this many matches, an estimate (flagged) above.
            exact_count_limit=env.integer(
                "PM_PATIENT_EXACT_COUNT_LIMIT", 1_000, minimum=1, maximum=10_000_000
            ),
            billing_tls=billing_tls,
            billing_service_token=billing_token,
            kafka_tls=client_tls(env, "PM_KAFKA_TLS"),
            http_tls=server_tls(env, "PM_HTTP_TLS"),
            http_client_tls=client_tls(env, "PM_HTTP_TLS"),
        )
