"""Readiness of the services behind the gateway, as ServiceMiddleware health checks.

These run in the gateway's background health rounds (pm.common.health), never once per `/health` call.
"""

from __future__ import annotations

import httpx

from pm.common.health import Degraded, HealthCheck
from pm.common.tls import ClientTls


def downstream_check(
    name: str, base_url: str, timeout: float, *, tls: ClientTls | None = None
) -> HealthCheck:
    """Passes when `<base_url>/health` answers 200 UP within `timeout` seconds; 200 DEGRADED raises
    `Degraded`; anything else raises. One keep-alive client serves every round."""
    # An https:// service URL is checked against PM_HTTP_TLS_CA_FILE's CA when set.
    verify = tls.ssl_context() if tls is not None else True
    client = httpx.Client(timeout=timeout, trust_env=False, verify=verify)

    def check() -> None:
        try:
            response = client.get(f"{base_url}/health")
        except httpx.TimeoutException:
            raise RuntimeError(f"{name} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise RuntimeError(f"{name} is unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise RuntimeError(f"{name} reports {response.status_code}")
        if _status(response) == "DEGRADED":
            raise Degraded(f"{name} reports DEGRADED")

    return check


def _status(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) else None
