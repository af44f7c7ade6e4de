"""The patient service's settings: the only place its environment is read."""

from __future__ import annotations

from dataclasses import dataclass

from pm.common.config import Env, revocations_url, sqlite_default


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
    validate_responses: bool = False
    bench_floor: bool = False
    health_interval: float = 3.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        auth_url = env.url("PM_AUTH_URL", "http://127.0.0.1:4005")
        jwks_url = env.url("PM_JWKS_URL", f"{auth_url}/.well-known/jwks.json")
        return cls(
            host=env.text("PM_HOST", "127.0.0.1"),
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
            validate_responses=env.flag("PM_VALIDATE_RESPONSES", False),
            # Diagnostic only (the benchmark's framework floor): never set it in production.
            bench_floor=env.flag("PM_PATIENT_BENCH_FLOOR", False),
        )
