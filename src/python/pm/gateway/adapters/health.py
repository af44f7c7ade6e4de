"""Readiness of the services behind the gateway, as ServiceMiddleware health checks."""

from __future__ import annotations

import httpx

from pm.common.tls import ClientTls
from pm.common.web import HealthCheck


def downstream_check(
    name: str, base_url: str, timeout: float, *, tls: ClientTls | None = None
) -> HealthCheck:
    """A check that passes when `<base_url>/health` answers 200 within `timeout` seconds."""
    verify = tls.ssl_context() if tls is not None else True

    def check() -> None:
        try:
            response = httpx.get(f"{base_url}/health", timeout=timeout, trust_env=False, verify=verify)
        except httpx.TimeoutException:
            raise RuntimeError(f"{name} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{name} is unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RuntimeError(f"{name} reports {response.status_code}")

    return check
