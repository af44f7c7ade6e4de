"""Auth settings: the only place the auth service reads the environment."""

from __future__ import annotations

from dataclasses import field
from pathlib import Path

from pm.common.config import PRODUCTION, ConfigError, Env
from pm.common.settings import ServiceSettings


class Settings(ServiceSettings, service="auth", port=4005):
    data_dir: Path
    jwt_issuer: str
    token_ttl_seconds: int
    refresh_ttl_seconds: int
    private_key_file: Path | None
    private_key_pem: str | None = field(repr=False)
    previous_public_key_files: tuple[Path, ...]
    bcrypt_rounds: int
    max_failures_per_email: int
    max_failures_per_client: int
    failure_window_seconds: int
    throttle_base_seconds: float
    throttle_max_seconds: float
    seed_demo_user: bool

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        environment = env.environment()
        private_key_file = env.optional("PM_JWT_PRIVATE_KEY_FILE")
        private_key_pem = env.optional("PM_JWT_PRIVATE_KEY")
        if private_key_file and private_key_pem:
            raise ConfigError("PM_JWT_PRIVATE_KEY_FILE and PM_JWT_PRIVATE_KEY are both set; set only one")
        if environment == PRODUCTION and not (private_key_file or private_key_pem):
            raise ConfigError(
                "PM_JWT_PRIVATE_KEY_FILE (or PM_JWT_PRIVATE_KEY) is required when PM_ENV=production"
            )
        # The demo user is a published ADMIN password: production never creates it, and saying it should
        # is a mistake worth stopping for rather than a setting to ignore.
        seed_demo_user = env.flag("PM_AUTH_SEED_DEMO_USER", environment != PRODUCTION)
        if seed_demo_user and environment == PRODUCTION:
            raise ConfigError(
                "PM_AUTH_SEED_DEMO_USER must be off when PM_ENV=production (it creates a known ADMIN)"
            )
        previous = env.optional("PM_JWT_PREVIOUS_PUBLIC_KEY_FILES") or ""
        base_delay = env.number("PM_AUTH_THROTTLE_BASE_SECONDS", 1.0, minimum=0.001)
        max_delay = env.number("PM_AUTH_THROTTLE_MAX_SECONDS", 900.0, minimum=0.001)
        if max_delay < base_delay:
            raise ConfigError(
                f"PM_AUTH_THROTTLE_MAX_SECONDS ({max_delay:g}) must be at least "
                f"PM_AUTH_THROTTLE_BASE_SECONDS ({base_delay:g})"
            )
        return cls(
            **cls.shared(env),
            data_dir=env.data_dir(),
            jwt_issuer=env.text("PM_JWT_ISSUER", "pm-auth"),
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
            # A day: a window shorter than the longest delay would forget an attacker while it waits.
            failure_window_seconds=env.integer(
                "PM_AUTH_FAILURE_WINDOW_SECONDS", 86400, minimum=1, maximum=7 * 86400
            ),
            throttle_base_seconds=base_delay,
            throttle_max_seconds=max_delay,
            seed_demo_user=seed_demo_user,
        )
