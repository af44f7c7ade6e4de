"""`python -m pm.gateway.main [serve|migrate]`: run the API gateway."""

from __future__ import annotations

import argparse
import logging

from pm.common.config import Env, load_or_exit
from pm.common.logs import configure_logging
from pm.common.tracing import configure_tracing
from pm.common.web import serve
from pm.gateway.adapters.traces import StoreExporter
from pm.gateway.bootstrap import SERVICE, bootstrap, trace_store
from pm.gateway.config import Settings

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.gateway.main", description="The API gateway.")
    parser.add_argument("command", nargs="?", choices=["serve", "migrate"], default="serve")
    args = parser.parse_args(argv)
    settings = load_or_exit(lambda: Settings.from_env(Env()), SERVICE)
    configure_logging(SERVICE, settings.log_level)
    if args.command == "migrate":
        log.info("the gateway keeps no data: nothing to migrate")
        return
    traces = trace_store(settings)
    configure_tracing(SERVICE, exporter=StoreExporter(traces) if traces is not None else None)
    gateway = bootstrap(settings, traces=traces)
    serve(
        gateway.app,
        host=settings.host,
        port=settings.port,
        service=SERVICE,
        on_start=[gateway.load_keys, gateway.revocations.start],
        on_stop=[gateway.revocations.stop],
        tls=settings.http_tls,
    )


if __name__ == "__main__":
    main()
