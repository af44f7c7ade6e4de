"""Composition root: billing's gRPC server and HTTP side, built from a Database and plain settings."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pm.billing.adapters.repository import SqlAccountRepository
from pm.billing.entrypoints.grpc_auth import ServiceTokenInterceptor
from pm.billing.entrypoints.grpc_metrics import MetricsInterceptor
from pm.billing.entrypoints.grpc_service import SERVICE_NAME, BillingServicer, DatabaseHealth
from pm.billing.entrypoints.http_app import not_found_app
from pm.common import tracing
from pm.common.db import Database
from pm.common.health import DEFAULT_INTERVAL_SECONDS
from pm.common.tls import ServerTls
from pm.common.web import ASGIApp, Metrics, ServiceMiddleware
from pm.proto.billing.v1 import billing_pb2_grpc

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MAX_MESSAGE_BYTES = 1_048_576


@dataclass
class BillingGrpcServer:
    """A bound, not yet started gRPC server, with the health state that tracks the database."""

    server: grpc.Server
    port: int
    health: DatabaseHealth
    health_interval: float = 5.0
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> None:
        self.server.start()
        # Periodic refresh keeps Watch subscribers (e.g. load balancers) informed between Checks.
        self._watcher = threading.Thread(target=self._watch_database, name="billing-health", daemon=True)
        self._watcher.start()
        log.info("gRPC listening", extra={"port": self.port})

    def stop(self, grace: float = 4.0) -> None:
        self._stopping.set()
        self.health.shutting_down()
        self.server.stop(grace).wait(grace + 1)
        if self._watcher is not None:
            self._watcher.join(2)
        log.info("gRPC stopped")

    def _watch_database(self) -> None:
        while not self._stopping.wait(self.health_interval):
            self.health.refresh()


def build_grpc_server(
    database: Database,
    address: str = "127.0.0.1:0",
    *,
    max_workers: int = 8,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    metrics: Metrics | None = None,
    tls: ServerTls | None = None,
    service_token: str | None = None,
    reflection_on: bool = True,
) -> BillingGrpcServer:
    """The gRPC server with BillingService, health and (unless turned off) reflection, bound to
    `address` but not started. With `tls` it listens over TLS only (mutual when the settings name a
    client CA); with `service_token`, BillingService answers only calls that present it.

    Raises RuntimeError when the address cannot be bound.
    """
    health_state = DatabaseHealth(database.ping)
    servicer = BillingServicer(
        SqlAccountRepository(database), on_store_unavailable=health_state.mark_unavailable
    )
    interceptors: list[grpc.ServerInterceptor] = tracing.grpc_server_interceptors()
    if metrics is not None:
        interceptors.append(MetricsInterceptor(metrics))  # first: it also counts refused calls
    if service_token is not None:
        interceptors.append(ServiceTokenInterceptor(service_token))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="billing-grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Without this a second server could silently share a port already in use.
            ("grpc.so_reuseport", 0),
        ],
    )
    billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_state.servicer, server)
    if reflection_on:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
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
    return BillingGrpcServer(server=server, port=port, health=health_state)


def create_grpc_server(
    database: Database, address: str = "127.0.0.1:0", *, max_workers: int = 8
) -> tuple[grpc.Server, int]:
    """The billing gRPC server bound to `address`, NOT yet started, and its bound port."""
    built = build_grpc_server(database, address, max_workers=max_workers)
    return built.server, built.port


def create_http_app(
    database: Database, metrics: Metrics, *, health_interval: float = DEFAULT_INTERVAL_SECONDS
) -> ASGIApp:
    """/health (database), /health/live and /metrics over HTTP; every other path is a 404 problem."""
    return ServiceMiddleware(
        not_found_app,
        service="billing",
        metrics=metrics,
        health_checks={"database": database.ping},
        health_interval=health_interval,
    )
