"""Gateway settings, read from the environment in one place."""

from __future__ import annotations

from dataclasses import dataclass

from pm.common.config import PRODUCTION, ConfigError, Env, revocations_url
from pm.common.tls import ClientTls, ServerTls, client_tls, server_tls


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    log_level: str
    auth_url: str
    patient_url: str
    analytics_url: str
    jwks_url: str
    revocations_url: str
    jwt_issuer: str
    connect_timeout: float
    read_timeout: float
    health_timeout: float
    max_connections: int
    max_body_bytes: int
    rate_limit_per_second: float
    rate_limit_burst: int
    cors_origins: tuple[str, ...]
    docs_cache_seconds: float
    trusted_proxies: tuple[str, ...] = ()
    health_interval: float = 3.0
    environment: str = "dev"
    http_tls: ServerTls | None = None
    http_client_tls: ClientTls | None = None
    # The embedded trace store (pm.gateway.adapters.traces), used when no OTLP collector is configured.
    traces_max: int = 1_000
    traces_max_age_seconds: float = 3_600.0

    @property
    def is_production(self) -> bool:
        return self.environment == PRODUCTION

    @classmethod
    def from_env(cls, env: Env) -> Settings:
        environment = env.environment()
        auth_url = env.url("PM_AUTH_URL", "http://127.0.0.1:4005")
        jwks_url = env.url("PM_JWKS_URL", f"{auth_url}/.well-known/jwks.json")
        # Generous per address: it stops a runaway client, not a busy one (0 turns it off).
        rate = env.number("PM_GATEWAY_RATE_LIMIT_PER_SECOND", 1000.0)
        burst = env.integer("PM_GATEWAY_RATE_LIMIT_BURST", max(1, int(rate * 2)), minimum=0)
        if rate > 0 and burst < 1:
            raise ConfigError("PM_GATEWAY_RATE_LIMIT_BURST must be at least 1 when rate limiting is on")
        return cls(
            host=env.text("PM_HOST", "127.0.0.1"),
            port=env.port("PM_GATEWAY_PORT", 4004),
            log_level=env.log_level(),
            health_interval=env.health_interval(),
            auth_url=auth_url,
            patient_url=env.url("PM_PATIENT_URL", "http://127.0.0.1:4000"),
            analytics_url=env.url("PM_ANALYTICS_URL", "http://127.0.0.1:4002"),
            jwks_url=jwks_url,
            revocations_url=env.url("PM_REVOCATIONS_URL", revocations_url(jwks_url)),
            jwt_issuer=env.text("PM_JWT_ISSUER", "pm-auth"),
            connect_timeout=_positive(env, "PM_GATEWAY_CONNECT_TIMEOUT", 2.0),
            read_timeout=_positive(env, "PM_GATEWAY_READ_TIMEOUT", 15.0),
            health_timeout=_positive(env, "PM_GATEWAY_HEALTH_TIMEOUT", 1.0),
            max_connections=env.integer("PM_GATEWAY_MAX_CONNECTIONS", 256, minimum=1, maximum=10_000),
            max_body_bytes=env.integer("PM_GATEWAY_MAX_BODY_BYTES", 1_048_576, minimum=1),
            rate_limit_per_second=rate,
            rate_limit_burst=burst,
            cors_origins=_origins(env.optional("PM_GATEWAY_CORS_ORIGINS"), environment),
            docs_cache_seconds=env.number("PM_GATEWAY_DOCS_CACHE_SECONDS", 30.0),
            environment=environment,
            http_tls=server_tls(env, "PM_HTTP_TLS"),
            http_client_tls=client_tls(env, "PM_HTTP_TLS"),
            # Load balancers in front of the gateway; nobody by default (the gateway is the edge).
            trusted_proxies=env.networks("PM_GATEWAY_TRUSTED_PROXIES"),
            traces_max=env.integer("PM_TRACES_MAX", 1_000, minimum=1, maximum=100_000),
            traces_max_age_seconds=env.duration("PM_TRACES_MAX_AGE", "1h", minimum=1.0),
        )


def _positive(env: Env, name: str, default: float) -> float:
    value = env.number(name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")
    return value


def _origins(raw: str | None, environment: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(
                f"PM_GATEWAY_CORS_ORIGINS must list http(s) origins separated by commas, got {origin!r}"
            )
        # Development CORS (any origin, plain-HTTP pages) would let any site script the API in a
        # signed-in browser: production names its HTTPS origins one by one.
        if environment == PRODUCTION and not origin.startswith("https://"):
            raise ConfigError(
                f"PM_GATEWAY_CORS_ORIGINS may list only https:// origins when PM_ENV=production, got {origin!r}"
            )
    return origins
