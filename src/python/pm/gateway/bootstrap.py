"""Composition root: the gateway assembled from Settings, with swappable key source.

`bootstrap(settings) -> Gateway` (a `pm.common.service.Service`) is the only place objects are built;
`main.py` hands it to the kit's `run()` with no database to prepare and `trace_exporter` for the spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pm.common import tracing
from pm.common.service import Service
from pm.common.tokens import JwksKeys, KeySource, RevocationList, TokenVerifier, http_revocation_feed
from pm.common.web import ASGIApp, Metrics, ServiceMiddleware
from pm.gateway.adapters.health import downstream_check
from pm.gateway.adapters.openapi import ApiDocs, DocsSource
from pm.gateway.adapters.traces import StoreExporter, TraceStore
from pm.gateway.adapters.upstream import ConnectionPools, Proxy, Timeouts
from pm.gateway.config import Settings
from pm.gateway.domain.clients import ClientAddresses
from pm.gateway.domain.cors import CorsPolicy
from pm.gateway.domain.ratelimit import RateLimiter
from pm.gateway.domain.routes import public_routes
from pm.gateway.entrypoints.app import create_app
from pm.gateway.entrypoints.pages import swagger_ui_folder
from pm.gateway.entrypoints.traces import TracesApi
from pm.gateway.service_layer.authentication import BearerAuthenticator

SERVICE = "gateway"
DASHBOARD_FOLDER = Path(__file__).parent / "dashboard"


@dataclass
class Gateway(Service):
    """The kit's Service (the app, the revocation poller as its worker) and the parts tests look at."""

    keys: KeySource | None = None
    proxy: Proxy | None = None
    revocations: RevocationList | None = None
    traces: TraceStore | None = None

    def start(self) -> None:
        self.load_keys()
        super().start()

    def load_keys(self) -> None:
        """Fetch the signing keys up front so that the first requests need no fetch (best effort)."""
        if isinstance(self.keys, JwksKeys):
            self.keys.refresh()


def trace_store(settings: Settings) -> TraceStore | None:
    """The embedded trace store, unless tracing is off or spans go to a collector."""
    if not tracing.enabled() or tracing.collector_endpoint() is not None:
        return None
    return TraceStore(max_traces=settings.traces_max, max_age_seconds=settings.traces_max_age_seconds)


def trace_exporter(settings: Settings) -> StoreExporter | None:
    """For `run(span_exporter=)`: the gateway's own spans into its embedded store (when it has one)."""
    store = trace_store(settings)
    return StoreExporter(store) if store is not None else None


def bootstrap(
    settings: Settings,
    *,
    keys: KeySource | None = None,
    revocations: RevocationList | None = None,
    traces: TraceStore | None = None,
) -> Gateway:
    """The gateway; `traces` defaults to the store this process's spans are exported to, if any."""
    if traces is None:
        exporter = tracing.configured_exporter()
        traces = exporter.store if isinstance(exporter, StoreExporter) else None
    upstreams = {
        "auth": settings.auth_url,
        "patient": settings.patient_url,
        "analytics": settings.analytics_url,
    }
    tls = settings.http_client_tls
    keys = (
        keys
        if keys is not None
        else JwksKeys(settings.jwks_url, timeout=settings.connect_timeout + 1, tls=tls)
    )
    # Ended sessions, polled from auth in the background (started by `serve`'s start hooks).
    revocations = revocations or RevocationList(
        http_revocation_feed(settings.revocations_url, timeout=settings.connect_timeout + 1, tls=tls),
        name="gateway",
    )
    timeouts = Timeouts(connect=settings.connect_timeout, read=settings.read_timeout)
    pools = ConnectionPools(timeouts, settings.max_connections, tls=tls)
    metrics = Metrics(SERVICE)
    proxy = Proxy(pools, upstreams, timeouts, metrics.registry)
    docs = ApiDocs(
        pools,
        {
            "patients": DocsSource("patient", settings.patient_url, "/api"),
            "auth": DocsSource("auth", settings.auth_url, "/auth"),
            "analytics": DocsSource("analytics", settings.analytics_url, "/api"),
        },
        timeouts,
        cache_seconds=settings.docs_cache_seconds,
    )
    authenticator = BearerAuthenticator(
        TokenVerifier(keys, issuer=settings.jwt_issuer, revocations=revocations)
    )
    gateway = create_app(
        routes=public_routes(),
        proxy=proxy,
        authenticator=authenticator,
        limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        clients=ClientAddresses(settings.edge_proxies),
        cors_policy=CorsPolicy(settings.cors_origins),
        docs=docs,
        swagger_ui=swagger_ui_folder(),
        dashboard=DASHBOARD_FOLDER,
        production=settings.is_production,
        registry=metrics.registry,
    )
    checks = {
        name: downstream_check(name, url, settings.health_timeout, tls=tls) for name, url in upstreams.items()
    }
    app = ServiceMiddleware(
        # pm.common.web spells the ASGI types with dict where Starlette says MutableMapping.
        TracesApi(cast(ASGIApp, gateway), traces, authenticator, tracing.collector_endpoint()),
        service=SERVICE,
        # Without auth or patient the gateway cannot serve its purpose; without analytics only the
        # dashboard's figures are missing: it is DEGRADED then, and stays in the load balancer.
        health_checks={name: checks[name] for name in ("auth", "patient")},
        informational_checks={"analytics": checks["analytics"]},
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        health_timeout=settings.health_timeout + 1.0,
        health_interval=settings.health_interval,
    )
    return Gateway(
        SERVICE, app, workers=[revocations], keys=keys, proxy=proxy, revocations=revocations, traces=traces
    )
