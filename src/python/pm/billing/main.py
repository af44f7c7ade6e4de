"""Run billing: `python -m pm.billing.main [serve|migrate]`."""

from __future__ import annotations

import argparse
import logging
import sys

from pm.billing.bootstrap import MIGRATIONS, build_grpc_server, create_http_app
from pm.billing.config import Settings
from pm.common.config import load_or_exit
from pm.common.db import Database, migrate_or_exit
from pm.common.logs import configure_logging
from pm.common.tracing import configure_tracing
from pm.common.web import Metrics, serve

log = logging.getLogger("pm.billing")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.billing.main", description="The billing service.")
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    args = parser.parse_args(argv)
    settings = load_or_exit(Settings.from_env, "billing")
    configure_logging("billing", settings.log_level)
    configure_tracing("billing")
    if args.command == "migrate" or settings.migrate_on_start:
        apply_migrations(settings)
    if args.command == "serve":
        run(settings)


def apply_migrations(settings: Settings) -> None:
    # Billing has no seed data: accounts are opened by the patient service per patient.
    migrate_or_exit("billing", "PM_BILLING_DATABASE_URL", settings.database_url, MIGRATIONS)


def grpc_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(settings: Settings) -> None:
    database = Database(settings.database_url)
    metrics = Metrics("billing")
    if settings.service_token is None and not (settings.grpc_tls and settings.grpc_tls.mutual):
        log.warning("BillingService answers any caller: set PM_BILLING_SERVICE_TOKEN outside dev")
    address = grpc_address(settings.host, settings.grpc_port)
    try:
        grpc_server = build_grpc_server(
            database,
            address,
            max_workers=settings.grpc_max_workers,
            max_message_bytes=settings.grpc_max_message_bytes,
            metrics=metrics,
            tls=settings.grpc_tls,
            service_token=settings.service_token,
            reflection_on=settings.reflection,
        )
    except RuntimeError:
        sys.stderr.write(f"billing: cannot listen for gRPC on {address} (set PM_BILLING_GRPC_PORT)\n")
        sys.exit(1)
    serve(
        create_http_app(database, metrics, health_interval=settings.health_interval),
        host=settings.host,
        port=settings.http_port,
        service="billing",
        graceful_seconds=settings.grace_seconds,
        tls=settings.http_tls,
        on_start=[grpc_server.start],
        on_stop=[lambda: grpc_server.stop(settings.grace_seconds), database.dispose],
        trusted_proxies=settings.trusted_proxies,
    )


if __name__ == "__main__":
    main()
