"""Gateway settings, read from the environment in one place."""

from __future__ import annotations

from pm.common.config import PRODUCTION, ConfigError, Env
from pm.common.settings import TokenSettings, auth_url


class Settings(TokenSettings, service="gateway", port=4004):
    """The kit's shared variables (no database: the gateway keeps no data) and the gateway's own."""

    auth_url: str
    patient_url: str
    analytics_url: str
    connect_timeout: float
    read_timeout: float
    health_timeout: float
    max_connections: int
    max_body_bytes: int
    rate_limit_per_second: float
    rate_limit_burst: int
    cors_origins: tuple[str, ...]
    docs_cache_seconds: float
    # Load balancers in front of the gateway (PM_GATEWAY_TRUSTED_PROXIES), read by the gateway itself
    # (pm.gateway.domain.clients); nobody by default: the gateway is the edge.
    edge_proxies: tuple[str, ...] = ()
    # The embedded trace store (pm.gateway.adapters.traces), used when no OTLP collector is configured.
    traces_max: int = 1_000
    traces_max_age_seconds: float = 3_600.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        # Generous per address: it stops a runaway client, not a busy one (0 turns it off).
        rate = env.number("PM_GATEWAY_RATE_LIMIT_PER_SECOND", 1000.0)
        burst = env.integer("PM_GATEWAY_RATE_LIMIT_BURST", max(1, int(rate * 2)), minimum=0)
        if rate > 0 and burst < 1:
            raise ConfigError("PM_GATEWAY_RATE_LIMIT_BURST must be at least 1 when rate limiting is on")
        shared = cls.shared(env)
        return cls(
            **{
                **shared,
                # The server itself believes no forwarded header (see edge_proxies).
                "trusted_proxies": (),
            },
            auth_url=auth_url(env),
            patient_url=env.url("PM_PATIENT_URL", "http://127.0.0.1:4000"),
            analytics_url=env.url("PM_ANALYTICS_URL", "http://127.0.0.1:4002"),
            connect_timeout=_positive(env, "PM_GATEWAY_CONNECT_TIMEOUT", 2.0),
            read_timeout=_positive(env, "PM_GATEWAY_READ_TIMEOUT", 15.0),
            health_timeout=_positive(env, "PM_GATEWAY_HEALTH_TIMEOUT", 1.0),
            max_connections=env.integer("PM_GATEWAY_MAX_CONNECTIONS", 256, minimum=1, maximum=10_000),
            max_body_bytes=env.integer("PM_GATEWAY_MAX_BODY_BYTES", 1_048_576, minimum=1),
            rate_limit_per_second=rate,
            rate_limit_burst=burst,
            cors_origins=_origins(env.optional("PM_GATEWAY_CORS_ORIGINS"), shared["environment"]),
            docs_cache_seconds=env.number("PM_GATEWAY_DOCS_CACHE_SECONDS", 30.0),
            edge_proxies=env.networks("PM_GATEWAY_TRUSTED_PROXIES"),
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
