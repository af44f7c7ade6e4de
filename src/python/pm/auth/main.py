"""`python -m pm.auth.main [serve|migrate]`: run the auth service, or migrate and seed its database."""

from __future__ import annotations

import argparse
import logging
import sys

from sqlalchemy.exc import OperationalError

from pm.auth.adapters.keys import load_key_set
from pm.auth.bootstrap import SERVICE, create_app, migrate_and_seed
from pm.auth.config import Settings
from pm.common.config import Env, load_or_exit
from pm.common.db import Database
from pm.common.logs import configure_logging
from pm.common.tracing import configure_tracing
from pm.common.web import serve

log = logging.getLogger("pm.auth")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.auth.main", description="The auth service.")
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve (default): migrate and seed unless PM_MIGRATE_ON_START=false, then serve; "
        "migrate: migrate and seed, then exit",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit(lambda: Settings.from_env(Env()), SERVICE)
    configure_logging(SERVICE, settings.log_level)
    configure_tracing(SERVICE)
    # Keys first: a bad key setting stops the service before it touches the database.
    keys = load_or_exit(lambda: load_key_set(settings), SERVICE) if args.command == "serve" else None
    database = Database(settings.database_url)
    try:
        if args.command == "migrate" or settings.migrate_on_start:
            try:
                created = migrate_and_seed(settings, database)
            except OperationalError as exc:
                log.error("database unavailable", extra={"error": str(exc.orig).strip()[:200]})
                sys.exit(1)
            log.info("database ready", extra={"demo_user_created": created})
        if keys is None:
            return
        app = create_app(settings, keys, database)
        revocations = app.state["revocations"]
        serve(
            app,
            host=settings.host,
            port=settings.port,
            service=SERVICE,
            tls=settings.http_tls,
            trusted_proxies=settings.trusted_proxies,
            on_start=[revocations.start],
            on_stop=[revocations.stop],
        )
    finally:
        database.dispose()


if __name__ == "__main__":
    main()
