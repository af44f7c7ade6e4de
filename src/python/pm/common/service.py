"""The one lifecycle of every service: command line, migration at start, serving, background workers.

Each service's `main.py` is a call to `run()` with its `Settings`, its `bootstrap(settings) -> Service`
and its `prepare_database(settings)` (migrations, and seed data where the service has any; None for the
gateway, which keeps no data). `bootstrap`
is the only place objects are built; it touches nothing outside the process (no database, broker or
network call), so a bad setting found there stops the service before anything happened.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from opentelemetry.sdk.trace.export import SpanExporter
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from pm.common.config import load_or_exit
from pm.common.logs import configure_logging, scrub
from pm.common.settings import HttpSettings, ServiceSettings
from pm.common.tracing import configure_tracing
from pm.common.web import ASGIApp, serve

log = logging.getLogger(__name__)

S = TypeVar("S", bound=HttpSettings)


class Worker(Protocol):
    """A background worker (outbox relay, event consumer, revocation poller, gRPC server...)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Service:
    """A wired service: the ASGI app to serve and what runs beside it.

    `workers` start in order once the HTTP port is bound (a port clash stops the service before they do
    anything) and stop in reverse order after the in-flight requests drained; `close` runs last
    (connection pools, channels)."""

    name: str
    app: ASGIApp
    workers: Sequence[Worker] = ()
    close: Sequence[Callable[[], None]] = ()
    graceful_seconds: int = 8

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self) -> None:
        try:
            for worker in reversed(self.workers):
                try:
                    worker.stop()
                except Exception:  # - keep stopping the rest
                    log.exception("stopping a worker failed")
        finally:
            for close in self.close:
                close()


def serve_service(service: Service, settings: HttpSettings) -> None:
    serve(
        service.app,
        host=settings.host,
        port=settings.port,
        service=service.name,
        graceful_seconds=service.graceful_seconds,
        on_start=[service.start],
        on_stop=[service.stop],
        trusted_proxies=settings.trusted_proxies,
        tls=settings.http_tls,
    )


def prepare_or_exit(settings: ServiceSettings, prepare: Callable[[], object]) -> None:
    """Migrate (and seed) at start; a database that cannot be prepared stops the service with one line
    naming where it is (password masked) and the variable to change, and status 1."""
    try:
        prepared = prepare()
    except SQLAlchemyError as exc:
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        reason = scrub(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])[:200]
        variable = f"PM_{settings.SERVICE.upper()}_DATABASE_URL"
        sys.stderr.write(
            f"{settings.SERVICE}: cannot prepare the database at {where} ({variable}): {reason}\n"
        )
        sys.exit(1)
    log.info("database ready", extra={"prepared": prepared})


def run(
    settings_type: type[S],
    bootstrap: Callable[[S], Service],
    prepare_database: Callable[[S], object] | None,
    argv: list[str] | None = None,
    *,
    commands: Mapping[str, Callable[[S], None]] | None = None,
    help: str = "serve (default; migrates first unless PM_MIGRATE_ON_START=false) or migrate, then exit",
    span_exporter: Callable[[S], SpanExporter | None] | None = None,
) -> None:
    """`python -m pm.<service>.main [serve|migrate|...]`: parse, bootstrap, migrate when asked, serve.

    `span_exporter(settings)`, when given, replaces the OTLP exporter (the gateway's embedded store)."""
    extra = dict(commands or {})
    name = settings_type.SERVICE
    parser = argparse.ArgumentParser(prog=f"pm.{name}.main", description=f"The {name} service.")
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve", "migrate", *extra], help=help
    )
    command = parser.parse_args(argv).command
    settings = load_or_exit(settings_type.from_env, name)  # type: ignore[attr-defined]
    configure_logging(name, settings.log_level)
    if command == "serve":  # one-off commands (migrate, rebuild) send no spans
        configure_tracing(name, exporter=span_exporter(settings) if span_exporter else None)
    # A bad setting found while building (e.g. an unreadable key) stops the service like one in Settings.
    service = load_or_exit(lambda: bootstrap(settings), name) if command == "serve" else None
    stored = settings if isinstance(settings, ServiceSettings) else None
    if prepare_database is None or stored is None:
        if command == "migrate":
            log.info("nothing to migrate: the service keeps no data")
    elif command == "migrate" or stored.migrate_on_start:
        prepare = prepare_database
        prepare_or_exit(stored, lambda: prepare(settings))
    if service is not None:
        serve_service(service, settings)
    elif command in extra:
        extra[command](settings)
