"""Composition root: analytics' HTTP app, event consumer and retention, built from Settings; the only
place objects are built."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pm.analytics.adapters.broker_view import KafkaBrokerView
from pm.analytics.adapters.dead_letter_store import SqlDeadLetterReader, SqlDeadLetterUnitOfWork
from pm.analytics.adapters.store import SqlAnalyticsReader, SqlRetention, SqlUnitOfWork
from pm.analytics.config import Settings
from pm.analytics.entrypoints.broker import BrokerDesk, BrokerHandlers
from pm.analytics.entrypoints.broker_metrics import LagSampler, register_broker_metrics
from pm.analytics.entrypoints.consumer import PatientEventConsumer
from pm.analytics.entrypoints.handlers import ERRORS, AnalyticsHandlers
from pm.analytics.entrypoints.retention import RetentionLoop
from pm.common.db import Database, migrate
from pm.common.handlers import handler_resolver
from pm.common.health import DEFAULT_INTERVAL_SECONDS
from pm.common.kafka import recreate_topic
from pm.common.routing import SpecRouting
from pm.common.service import Service, Worker
from pm.common.specapp import spec_app
from pm.common.tokens import JwksKeys, RevocationList, TokenVerifier, http_revocation_feed
from pm.common.validation import VALIDATOR_MAP
from pm.common.web import HealthCheck, Metrics, ServiceMiddleware

log = logging.getLogger(__name__)

SERVICE = "analytics"
PACKAGE = Path(__file__).parent
MIGRATIONS = PACKAGE / "migrations"
API = PACKAGE / "api"


def bootstrap(
    settings: Settings,
    *,
    database: Database | None = None,
    verifier: TokenVerifier | None = None,
) -> Service:
    """The HTTP API, the consumer of the patient topic, the retention loop and the revocation poller."""
    owned = database is None
    database = database or Database(settings.database_url)
    consumer = PatientEventConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.patient_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group_id=settings.consumer_group,
        unit_of_work=lambda: SqlUnitOfWork(database),
        tls=settings.kafka_tls,
    )
    verifier = verifier or jwks_verifier(settings)
    desk = broker_desk(settings, database)
    metrics, sampler = broker_metrics(desk)
    app = create_app(
        database,
        verifier,
        broker=desk,
        metrics=metrics,
        consumer_check=consumer.check,
        validate_responses=settings.validate_responses,
        health_interval=settings.health_interval,
    )
    workers: list[Worker] = [consumer, RetentionLoop(retention(settings, database)), sampler]
    if verifier.revocations is not None:
        workers.append(verifier.revocations)
    return Service(
        SERVICE,
        app,
        workers=workers,
        close=[database.dispose] if owned else [],
        # Reads are short; with the consumer's stop budget this keeps a SIGTERM stop within 10 s.
        graceful_seconds=3,
    )


def broker_desk(settings: Settings, database: Database) -> BrokerDesk:
    """The broker view: the broker as analytics sees it, and analytics' own dead letters."""
    return BrokerDesk(
        view=KafkaBrokerView(settings.kafka_bootstrap_servers, tls=settings.kafka_tls),
        dead_letters=SqlDeadLetterReader(database),
        unit_of_work=lambda: SqlDeadLetterUnitOfWork(database),
        topic=settings.patient_topic,
        group=settings.consumer_group,
    )


def create_app(
    database: Database,
    verifier: TokenVerifier,
    *,
    broker: BrokerDesk | None = None,
    metrics: Metrics | None = None,
    consumer_check: HealthCheck | None = None,
    validate_responses: bool = False,
    health_interval: float = DEFAULT_INTERVAL_SECONDS,
) -> ServiceMiddleware:
    """The HTTP API; /health: the database is essential; the consumer (Kafka), when given, is not: a
    broker outage only delays events, so it makes analytics DEGRADED, never DOWN."""
    app = spec_app(
        __name__,
        API / "openapi.yaml",
        resolver=handler_resolver(AnalyticsHandlers(SqlAnalyticsReader(database)), BrokerHandlers(broker)),
        validate_responses=validate_responses,
        validator_map=VALIDATOR_MAP,
        errors=ERRORS,
    )
    return ServiceMiddleware(
        # A control character in a path is a 404 here, not a handler without its operation failing.
        SpecRouting(app, API / "openapi.yaml"),
        service=SERVICE,
        metrics=metrics,
        health_checks={"database": database.ping},
        informational_checks={"kafka": consumer_check} if consumer_check is not None else None,
        health_interval=health_interval,
        state={"token_verifier": verifier},
    )


def jwks_verifier(settings: Settings) -> TokenVerifier:
    """Tokens checked locally with auth's published keys; ended sessions polled from auth's feed."""
    return TokenVerifier(
        JwksKeys(settings.jwks_url, tls=settings.http_client_tls),
        issuer=settings.jwt_issuer,
        revocations=RevocationList(
            http_revocation_feed(settings.revocations_url, tls=settings.http_client_tls), name=SERVICE
        ),
    )


def retention(settings: Settings, database: Database) -> SqlRetention:
    return SqlRetention(
        database,
        event_seconds=settings.event_retention_seconds,
        id_seconds=settings.outbox_retention_seconds,
    )


def prepare_database(settings: Settings) -> None:
    """Migrations only: everything analytics knows comes from the patient topic."""
    migrate(settings.database_url, MIGRATIONS)


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
    log.info(
        "analytics emptied; the patient service publishes its retained events again",
        extra={"topic": settings.patient_topic},
    )


def broker_metrics(desk: BrokerDesk, interval: float = 15.0) -> tuple[Metrics, LagSampler]:
    """The service's metrics with the broker figures; the sampler is one of the service's workers."""
    metrics = Metrics(SERVICE)
    return metrics, register_broker_metrics(metrics, desk, interval)
