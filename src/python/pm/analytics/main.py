"""Run analytics: `python -m pm.analytics.main [serve|migrate|rebuild]`."""

from __future__ import annotations

import argparse
import logging
import sys

import pm.common  # noqa: F401 - first, so its warning filters are in place before Connexion loads
from pm.analytics.adapters.store import SqlRetention
from pm.analytics.bootstrap import MIGRATIONS, create_app, create_consumer, jwks_verifier
from pm.analytics.config import Settings
from pm.analytics.entrypoints.retention import RetentionLoop
from pm.common.config import load_or_exit
from pm.common.db import Database, migrate_or_exit
from pm.common.kafka import recreate_topic
from pm.common.logs import configure_logging
from pm.common.tracing import configure_tracing
from pm.common.web import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pm.analytics.main", description="The analytics service.")
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "migrate", "rebuild"),
        default="serve",
        help="serve (default), migrate, or rebuild: empty analytics and have the patient service's "
        "retained events published again",
    )
    args = parser.parse_args(argv)
    settings = load_or_exit(Settings.from_env, "analytics")
    configure_logging("analytics", settings.log_level)
    configure_tracing("analytics")
    if args.command == "migrate" or settings.migrate_on_start:
        apply_migrations(settings)
    if args.command == "serve":
        run(settings)
    if args.command == "rebuild":
        rebuild(settings)


def retention(settings: Settings, database: Database) -> SqlRetention:
    return SqlRetention(
        database,
        event_seconds=settings.event_retention_seconds,
        id_seconds=settings.outbox_retention_seconds,
    )


def rebuild(settings: Settings) -> None:
    """Empty analytics, then recreate the patient topic: the patient relay sees a new topic id and publishes
    every retained event again, and the running analytics consumer reads the new log from its beginning.
    Emptying first means nothing is lost in between: what is read meanwhile is counted, its copy dropped."""
    database = Database(settings.database_url)
    try:
        retention(settings, database).empty()
    finally:
        database.dispose()
    try:
        recreate_topic(settings.kafka_bootstrap_servers, settings.patient_topic, tls=settings.kafka_tls)
    except Exception as exc:  # noqa: BLE001 - said plainly; the tables are empty until it succeeds
        sys.exit(
            f"analytics: emptied, but the topic {settings.patient_topic} could not be recreated at "
            f"{settings.kafka_bootstrap_servers}: {str(exc)[:200]}; run rebuild again once the broker answers"
        )
    logging.getLogger(__name__).info(
        "analytics emptied; the patient service publishes its retained events again",
        extra={"topic": settings.patient_topic},
    )


def apply_migrations(settings: Settings) -> None:
    # Analytics has no seed data: everything it knows comes from the patient topic.
    migrate_or_exit("analytics", "PM_ANALYTICS_DATABASE_URL", settings.database_url, MIGRATIONS)


def run(settings: Settings) -> None:
    database = Database(settings.database_url)
    consumer = create_consumer(settings, database)
    verifier = jwks_verifier(settings)
    revocations = verifier.revocations
    assert revocations is not None
    purger = RetentionLoop(retention(settings, database))
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
        trusted_proxies=settings.trusted_proxies,
        service="analytics",
        # Reads are short; with the consumer's stop budget this keeps a SIGTERM stop within 10 s.
        graceful_seconds=3,
        on_start=[consumer.start, purger.start, revocations.start],
        on_stop=[revocations.stop, consumer.stop, purger.stop, database.dispose],
        tls=settings.http_tls,
    )


if __name__ == "__main__":
    main()
