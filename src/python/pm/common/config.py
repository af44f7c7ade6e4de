"""Configuration from the environment, read once per service, with one clear error per bad setting."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit

from pm.common.logs import mask_url, scrub

T = TypeVar("T")
N = TypeVar("N", int, float)

ENVIRONMENTS = ("dev", "production")
PRODUCTION = "production"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""


class Env:
    """Typed access to `PM_*` variables; every error names the variable it is about."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        return value.strip() if value is not None and value.strip() else None

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw(name)
        if value is not None:
            return value
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int = 2**31) -> int:
        number = self._parsed(name, int, "an integer")
        if number is None:
            return default
        if not minimum <= number <= maximum:
            raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {number}")
        return number

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        number = self._parsed(name, float, "a number")
        if number is None:
            return default
        if number < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {number}")
        return number

    def _parsed(self, name: str, parse: Callable[[str], N], kind: str) -> N | None:
        """The variable read by `parse`; None when it is not set; a ConfigError naming `kind` otherwise."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            raise ConfigError(f"{name} must be {kind}, got {value!r}") from None

    def duration(self, name: str, default: str, *, minimum: float = 0.0) -> float:
        """Seconds, from `90` (seconds) or a number with one unit: `30s`, `15m`, `12h`, `7d`."""
        value = self.raw(name) or default
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        scale = units.get(value[-1].lower(), 1) if value else 1
        digits = value[:-1] if value and value[-1].lower() in units else value
        try:
            seconds = float(digits) * scale
        except ValueError:
            raise ConfigError(
                f"{name} must be seconds or a number with a unit (s, m, h, d), e.g. 7d; got {value!r}"
            ) from None
        if not seconds >= minimum or seconds == float("inf"):
            raise ConfigError(f"{name} must be at least {minimum:g} seconds, got {value!r}")
        return seconds

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=0, maximum=65535)

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def database_url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not value.startswith(("postgresql", "sqlite")):
            raise ConfigError(
                f"{name} must be a SQLAlchemy URL (postgresql+psycopg2://... or sqlite:///...), "
                f"got {mask_url(value)!r}"
            )
        try:
            urlsplit(value).port  # noqa: B018 - reading the port is what validates it
        except ValueError:
            raise ConfigError(f"{name} has an invalid host or port: {mask_url(value)!r}") from None
        return value

    def host_port(self, name: str, default: str) -> str:
        value = self.text(name, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{name} must be host:port, got {value!r}")
        return value

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated addresses or CIDRs (e.g. `10.0.0.0/16, 127.0.0.1`), empty by default."""
        value = self.raw(name)
        if value is None:
            return ()
        networks = []
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            try:
                networks.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise ConfigError(
                    f"{name} must list IP addresses or CIDRs separated by commas, got {part!r}"
                ) from None
        return tuple(networks)

    def log_level(self) -> str:
        level = self.text("PM_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"PM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        return level

    def environment(self) -> str:
        """`PM_ENV`: `dev` (the default) or `production`, which turns the development conveniences off."""
        value = self.text("PM_ENV", "dev").lower()
        if value not in ENVIRONMENTS:
            raise ConfigError(f"PM_ENV must be dev or production, got {value!r}")
        return value

    def health_interval(self) -> float:
        """PM_HEALTH_INTERVAL_SECONDS: how often the dependency checks behind /health run."""
        value = self.number("PM_HEALTH_INTERVAL_SECONDS", 3.0)
        if value <= 0:
            raise ConfigError(f"PM_HEALTH_INTERVAL_SECONDS must be greater than 0, got {value}")
        return value

    def data_dir(self) -> Path:
        return Path(self.text("PM_DATA_DIR", ".pm-data")).resolve()


def revocations_url(jwks_url: str) -> str:
    """Auth's revocation feed, next to its JWKS (both are served by the auth service)."""
    suffix = "/.well-known/jwks.json"
    base = jwks_url[: -len(suffix)] if jwks_url.endswith(suffix) else jwks_url.rsplit("/", 1)[0]
    return f"{base}/revocations"


def sqlite_default(env: Env, service: str) -> str:
    """The embedded default database of a service: a SQLite file in the data folder."""
    return f"sqlite:///{env.data_dir() / f'{service}.db'}"


def load_or_exit(load: Callable[[], T], service: str) -> T:
    """Load settings; on a bad setting print one line naming the variable and exit with status 2."""
    try:
        return load()
    except ConfigError as err:
        exit_config_error(service, str(err))


def exit_config_error(service: str, message: str) -> NoReturn:
    sys.stderr.write(f"{service}: configuration error: {scrub(message)}\n")
    sys.exit(2)
