"""Composition root: analytics' HTTP app and event consumer, built from Settings and a Database."""

from __future__ import annotations

from pathlib import Path

from connexion.resolver import RelativeResolver

from pm.analytics.adapters.broker_view import KafkaBrokerView
from pm.analytics.adapters.dead_letter_store import SqlDeadLetterReader, SqlDeadLetterUnitOfWork
from pm.analytics.adapters.store import SqlAnalyticsReader, SqlUnitOfWork
from pm.analytics.config import Settings
from pm.analytics.entrypoints.broker import BrokerDesk
from pm.analytics.entrypoints.broker_metrics import LagSampler, register_broker_metrics
from pm.analytics.entrypoints.consumer import PatientEventConsumer
from pm.common.db import Database
from pm.common.health import DEFAULT_INTERVAL_SECONDS
from pm.common.specapp import spec_app
from pm.common.tokens import JwksKeys, RevocationList, TokenVerifier, http_revocation_feed
from pm.common.validation import VALIDATOR_MAP
from pm.common.web import HealthCheck, Metrics, ServiceMiddleware

SERVICE = "analytics"
PACKAGE = Path(__file__).parent
MIGRATIONS = PACKAGE / "migrations"
API = PACKAGE / "api"


def create_consumer(settings: Settings, database: Database) -> PatientEventConsumer:
    return PatientEventConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic=settings.patient_topic,
        dead_letter_topic=settings.dead_letter_topic,
        group_id=settings.consumer_group,
        unit_of_work=lambda: SqlUnitOfWork(database),
        tls=settings.kafka_tls,
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
        resolver=RelativeResolver("pm.analytics.entrypoints"),
        validate_responses=validate_responses,
        validator_map=VALIDATOR_MAP,
    )
    return ServiceMiddleware(
        app,
        service=SERVICE,
        metrics=metrics,
        health_checks={"database": database.ping},
        informational_checks={"kafka": consumer_check} if consumer_check is not None else None,
        health_interval=health_interval,
        state={"token_verifier": verifier, "analytics": SqlAnalyticsReader(database), "broker": broker},
    )


def jwks_verifier(settings: Settings) -> TokenVerifier:
    """Tokens checked locally with auth's published keys; ended sessions polled from auth's feed."""
    return TokenVerifier(
        JwksKeys(settings.jwks_url, tls=settings.http_client_tls),
        issuer=settings.jwt_issuer,
        revocations=RevocationList(
            http_revocation_feed(settings.revocations_url, tls=settings.http_client_tls), name="analytics"
        ),
    )


def broker_metrics(desk: BrokerDesk, interval: float = 15.0) -> tuple[Metrics, LagSampler]:
    """The service's metrics with the broker figures; start and stop the sampler with the service."""
    metrics = Metrics(SERVICE)
    return metrics, register_broker_metrics(metrics, desk, interval)
