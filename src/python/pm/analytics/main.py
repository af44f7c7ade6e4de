"""Run analytics: `python -m pm.analytics.main [serve|migrate]`."""

from __future__ import annotations

import argparse

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.analytics.bootstrap import MIGRATIONS, create_app, create_consumer, jwks_verifier
from pm.analytics.config import Settings
from pm.common.config import load_or_exit
from pm.common.db import Database, migrate_or_exit
from pm.common.logs import configure_logging
from pm.common.web import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.analytics.main", description="The analytics service.")
    parser.add_argument("command", nargs="?", choices=("serve", "migrate"), default="serve")
    args = parser.parse_args(argv)
    settings = load_or_exit(Settings.from_env, "analytics")
    configure_logging("analytics", settings.log_level)
    if args.command == "migrate" or settings.migrate_on_start:
        apply_migrations(settings)
    if args.command == "serve":
        run(settings)


def apply_migrations(settings: Settings) -> None:
    # Analytics has no seed data: everything it knows comes from the patient topic.
    migrate_or_exit("analytics", "PM_ANALYTICS_DATABASE_URL", settings.database_url, MIGRATIONS)


def run(settings: Settings) -> None:
    database = Database(settings.database_url)
    consumer = create_consumer(settings, database)
    verifier = jwks_verifier(settings)
    revocations = verifier.revocations
    assert revocations is not None
    serve(
        create_app(
            database,
            verifier,
            consumer_check=consumer.check,
            validate_responses=settings.validate_responses,
            health_interval=settings.health_interval,
        ),
        host=settings.host,
        port=settings.port,
        service="analytics",
        # Reads are short; with the consumer's stop budget this keeps a SIGTERM stop within 10 s.
        graceful_seconds=3,
        on_start=[consumer.start, revocations.start],
        on_stop=[revocations.stop, consumer.stop, database.dispose],
    )


if __name__ == "__main__":
    main()
