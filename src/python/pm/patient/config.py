"""The patient service's settings: the only place its environment is read."""

from __future__ import annotations

from dataclasses import field

from pm.common.config import PRODUCTION, ConfigError, Env
from pm.common.settings import TokenCheckingSettings, kafka_bootstrap_servers
from pm.common.tls import ClientTls, client_tls


class Settings(TokenCheckingSettings, service="patient", port=4000):
    kafka_bootstrap_servers: str
    patient_topic: str
    billing_target: str
    billing_deadline_seconds: float
    billing_attempts: int
    outbox_batch_size: int
    outbox_max_backoff_seconds: float
    outbox_retention_seconds: float
    exact_count_limit: int = 1_000
    billing_tls: ClientTls | None = None
    billing_service_token: str | None = field(default=None, repr=False)
    kafka_tls: ClientTls | None = None

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        billing_tls = client_tls(env, "PM_BILLING_GRPC_TLS")
        billing_token = env.optional("PM_BILLING_SERVICE_TOKEN")
        # Production billing answers only callers with its credential: without one, every create fails.
        if env.environment() == PRODUCTION and not (billing_token or (billing_tls and billing_tls.cert_file)):
            raise ConfigError(
                "PM_BILLING_SERVICE_TOKEN (or PM_BILLING_GRPC_TLS_CLIENT_CERT_FILE) is required "
                "when PM_ENV=production"
            )
        return cls(
            **cls.shared(env),
            kafka_bootstrap_servers=kafka_bootstrap_servers(env),
            patient_topic=env.text("PM_PATIENT_TOPIC", "patient"),
            billing_target=env.host_port("PM_BILLING_GRPC_TARGET", "127.0.0.1:9001"),
            billing_deadline_seconds=env.number("PM_BILLING_DEADLINE_SECONDS", 2.0, minimum=0.1),
            billing_attempts=env.integer("PM_BILLING_ATTEMPTS", 3, minimum=1, maximum=10),
            outbox_batch_size=env.integer("PM_OUTBOX_BATCH_SIZE", 100, minimum=1, maximum=10_000),
            outbox_max_backoff_seconds=env.number("PM_OUTBOX_MAX_BACKOFF_SECONDS", 30.0, minimum=0.1),
            outbox_retention_seconds=env.duration("PM_OUTBOX_RETENTION", "7d", minimum=1.0),
            # With a search, X-Total-Count is exact up to this many matches, an estimate (flagged) above.
            exact_count_limit=env.integer(
                "PM_PATIENT_EXACT_COUNT_LIMIT", 1_000, minimum=1, maximum=10_000_000
            ),
            billing_tls=billing_tls,
            billing_service_token=billing_token,
            kafka_tls=client_tls(env, "PM_KAFKA_TLS"),
        )
