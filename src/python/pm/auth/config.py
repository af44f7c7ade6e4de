"""Auth settings: the only place the auth service reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pm.common.config import ConfigError, Env, sqlite_default

ENVIRONMENTS = ("dev", "production")


@dataclass(frozen=True)
class Settings:
    environment: str
    host: str
    port: int
    log_level: str
    data_dir: Path
    database_url: str = field(repr=False)
    migrate_on_start: bool
    issuer: str
    token_ttl_seconds: int
    refresh_ttl_seconds: int
    private_key_file: Path | None
    private_key_pem: str | None = field(repr=False)
    previous_public_key_files: tuple[Path, ...]
    bcrypt_rounds: int
    max_failures_per_email: int
    max_failures_per_client: int
    failure_window_seconds: int
    seed_demo_user: bool
    validate_responses: bool = False

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    health_interval: float = 3.0

    @classmethod
    def from_env(cls, env: Env) -> Settings:
        environment = env.text("PM_ENV", "dev").lower()
        if environment not in ENVIRONMENTS:
            raise ConfigError(f"PM_ENV must be dev or production, got {environment!r}")
        private_key_file = env.optional("PM_JWT_PRIVATE_KEY_FILE")
        private_key_pem = env.optional("PM_JWT_PRIVATE_KEY")
        if private_key_file and private_key_pem:
            raise ConfigError("PM_JWT_PRIVATE_KEY_FILE and PM_JWT_PRIVATE_KEY are both set; set only one")
        if environment == "production" and not (private_key_file or private_key_pem):
            raise ConfigError(
                "PM_JWT_PRIVATE_KEY_FILE (or PM_JWT_PRIVATE_KEY) is required when PM_ENV=production"
            )
        previous = env.optional("PM_JWT_PREVIOUS_PUBLIC_KEY_FILES") or ""
        return cls(
            environment=environment,
            host=env.text("PM_HOST", "127.0.0.1"),
            port=env.port("PM_AUTH_PORT", 4005),
            log_level=env.log_level(),
            health_interval=env.health_interval(),
            data_dir=env.data_dir(),
            database_url=env.database_url("PM_AUTH_DATABASE_URL", sqlite_default(env, "auth")),
            migrate_on_start=env.flag("PM_MIGRATE_ON_START", True),
            issuer=env.text("PM_JWT_ISSUER", "pm-auth"),
            # Short-lived access tokens (RFC 9700 4.14): a session continues through its refresh token.
            token_ttl_seconds=env.integer("PM_JWT_TTL_SECONDS", 900, minimum=60, maximum=30 * 86400),
            refresh_ttl_seconds=env.integer(
                "PM_AUTH_REFRESH_TTL_SECONDS", 43200, minimum=60, maximum=90 * 86400
            ),
            private_key_file=Path(private_key_file) if private_key_file else None,
            private_key_pem=private_key_pem,
            previous_public_key_files=tuple(Path(p.strip()) for p in previous.split(",") if p.strip()),
            # bcrypt accepts 4..31; below 10 is for tests and benchmarks only.
            bcrypt_rounds=env.integer("PM_AUTH_BCRYPT_ROUNDS", 12, minimum=4, maximum=31),
            max_failures_per_email=env.integer("PM_AUTH_MAX_FAILURES_PER_EMAIL", 5, minimum=1),
            max_failures_per_client=env.integer("PM_AUTH_MAX_FAILURES_PER_CLIENT", 20, minimum=1),
            failure_window_seconds=env.integer(
                "PM_AUTH_FAILURE_WINDOW_SECONDS", 300, minimum=1, maximum=86400
            ),
            seed_demo_user=env.flag("PM_AUTH_SEED_DEMO_USER", True),
            validate_responses=env.flag("PM_VALIDATE_RESPONSES", False),
        )
