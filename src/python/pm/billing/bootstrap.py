"""Composition root: billing's gRPC server and HTTP side, built from Settings; the only place objects are built."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pm.billing.adapters.repository import SqlUnitOfWork
from pm.billing.config import Settings
from pm.billing.entrypoints.grpc_auth import ServiceTokenInterceptor
from pm.billing.entrypoints.grpc_metrics import MetricsInterceptor
from pm.billing.entrypoints.grpc_service import SERVICE_NAME, BillingServicer, DatabaseHealth
from pm.billing.entrypoints.http_app import not_found_app
from pm.common import tracing
from pm.common.db import Database, migrate
from pm.common.health import DEFAULT_INTERVAL_SECONDS
from pm.common.service import Service
from pm.common.web import ASGIApp, Metrics, ServiceMiddleware
from pm.proto.billing.v1 import billing_pb2_grpc

log = logging.getLogger(__name__)

SERVICE = "billing"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class BillingGrpcServer:
    """A bound, not yet started gRPC server, with the health state that tracks the database."""

    server: grpc.Server
    port: int
    health: DatabaseHealth
    health_interval: float = 5.0
    grace: float = 4.0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> None:
        self.server.start()
        # Periodic refresh keeps Watch subscribers (e.g. load balancers) informed between Checks.
        self._watcher = threading.Thread(target=self._watch_database, name="billing-health", daemon=True)
        self._watcher.start()
        log.info("gRPC listening", extra={"port": self.port})

    def stop(self, grace: float | None = None) -> None:
        grace = self.grace if grace is None else grace
        self._stopping.set()
        self.health.shutting_down()
        self.server.stop(grace).wait(grace + 1)
        if self._watcher is not None:
            self._watcher.join(2)
        log.info("gRPC stopped")

    def _watch_database(self) -> None:
        while not self._stopping.wait(self.health_interval):
            self.health.refresh()


def create_server(
    settings: Settings, database: Database, *, metrics: Metrics | None = None, address: str | None = None
) -> tuple[BillingGrpcServer, int]:
    """The gRPC server with BillingService, health and (unless turned off) reflection, bound to `address`
    (by default `PM_HOST`:`PM_BILLING_GRPC_PORT`; tests pass `127.0.0.1:0`) but not started, and its
    port. With `grpc_tls` it listens over TLS only (mutual when the settings name a client CA); with a
    `service_token`, BillingService answers only calls that present it.

    Raises RuntimeError when the address cannot be bound.
    """
    address = address or grpc_address(settings.host, settings.grpc_port)
    health_state = DatabaseHealth(database.ping)
    servicer = BillingServicer(
        lambda: SqlUnitOfWork(database), on_store_unavailable=health_state.mark_unavailable
    )
    interceptors: list[grpc.ServerInterceptor] = tracing.grpc_server_interceptors()
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))  # first: it also counts refused calls
    if settings.service_token is not None:
        interceptors.append(ServiceTokenInterceptor(settings.service_token))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_max_workers, thread_name_prefix="billing-grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
            # Without this a second server could silently share a port already in use.
            ("grpc.so_reuseport", 0),
        ],
    )
    billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
    if settings.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
    tls = settings.grpc_tls
    if tls is not None:
        key, chain, client_ca = tls.pem()
        credentials = grpc.ssl_server_credentials(
            [(key, chain)], root_certificates=client_ca, require_client_auth=tls.mutual
        )
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC to {address}")
    health_state.refresh()
    built = BillingGrpcServer(server=server, port=port, health=health_state, grace=settings.grace_seconds)
    return built, port


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bootstrap(settings: Settings, *, database: Database | None = None) -> Service:
    """Billing: the gRPC server (a worker started once the HTTP port is bound) and the HTTP side for
    /health and /metrics."""
    owned = database is None
    database = database or Database(settings.database_url)
    metrics = Metrics(SERVICE)
    if settings.service_token is None and not (settings.grpc_tls and settings.grpc_tls.mutual):
        log.warning("BillingService answers any caller: set PM_BILLING_SERVICE_TOKEN outside dev")
    try:
        grpc_server, _port = create_server(settings, database, metrics=metrics)
    except RuntimeError:
        address = grpc_address(settings.host, settings.grpc_port)
        raise SystemExit(f"billing: cannot listen for gRPC on {address} (set PM_BILLING_GRPC_PORT)") from None
    return Service(
        SERVICE,
        http_app(database, metrics, health_interval=settings.health_interval),
        workers=[grpc_server],
        close=[database.dispose] if owned else [],
        graceful_seconds=settings.grace_seconds,
    )


def prepare_database(settings: Settings) -> None:
    """Migrations only: accounts are opened by the patient service per patient."""
    migrate(settings.database_url, MIGRATIONS)


def http_app(
    database: Database, metrics: Metrics, *, health_interval: float = DEFAULT_INTERVAL_SECONDS
) -> ASGIApp:
    """/health (database), /health/live and /metrics over HTTP; every other path is a 404 problem."""
    return ServiceMiddleware(
        not_found_app,
        service=SERVICE,
        metrics=metrics,
        health_checks={"database": database.ping},
        health_interval=health_interval,
    )
