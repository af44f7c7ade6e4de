"""Composition root: the patient service built from Settings, with every dependency swappable."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from prometheus_client import Gauge

from pm.common import kafka
from pm.common.db import Database, migrate
from pm.common.handlers import handler_resolver
from pm.common.routing import SpecRouting
from pm.common.service import Service, Worker
from pm.common.specapp import spec_app
from pm.common.tokens import JwksKeys, RevocationList, TokenVerifier, http_revocation_feed
from pm.common.validation import VALIDATOR_MAP
from pm.common.web import Metrics, ServiceMiddleware
from pm.patient.adapters.billing import GrpcBilling
from pm.patient.adapters.outbox_backlog import register_backlog_metrics
from pm.patient.adapters.relay import OutboxRelay, RelaySettings, pending_count
from pm.patient.adapters.repository import SqlUnitOfWork
from pm.patient.adapters.seed import seed
from pm.patient.config import Settings
from pm.patient.entrypoints.audit import AUDIT_ERRORS, AuditHandlers, install_audit, verify_command
from pm.patient.entrypoints.fhir import FhirHandlers
from pm.patient.entrypoints.fhir_errors import FhirOutcomes
from pm.patient.entrypoints.patients import ERRORS, PatientHandlers
from pm.patient.service_layer.audit import AuditService
from pm.patient.service_layer.ports import Billing
from pm.patient.service_layer.services import PatientService

log = logging.getLogger(__name__)

SERVICE = "patient"
HERE = Path(__file__).parent
SPEC = HERE / "api" / "openapi.yaml"
FHIR_SPEC = HERE / "api" / "fhir.yaml"
MIGRATIONS = HERE / "migrations"


def prepare_database(settings: Settings) -> int:
    """Migrations, then the original patients on an empty table; how many were added."""
    migrate(settings.database_url, MIGRATIONS)
    database = Database(settings.database_url)
    try:
        return seed(database)
    finally:
        database.dispose()


def bootstrap(
    settings: Settings,
    *,
    database: Database | None = None,
    billing: Billing | None = None,
    verifier: TokenVerifier | None = None,
    relay_settings: RelaySettings | None = None,
    audit: bool = True,
) -> Service:
    """The HTTP API over the patient use cases; the outbox relay and the revocation poller beside it.

    `audit=False` leaves the audit trail out: only the benchmark that measures its cost does that."""
    owned = database is None
    database = database or Database(settings.database_url)
    billing = billing or GrpcBilling(
        settings.billing_target,
        deadline_seconds=settings.billing_deadline_seconds,
        attempts=settings.billing_attempts,
        tls=settings.billing_tls,
        service_token=settings.billing_service_token,
    )
    verifier = verifier or jwks_verifier(settings)
    relay = OutboxRelay(
        database,
        relay_settings
        or RelaySettings(
            settings.kafka_bootstrap_servers,
            settings.patient_topic,
            batch_size=settings.outbox_batch_size,
            max_backoff_seconds=settings.outbox_max_backoff_seconds,
            retention_seconds=settings.outbox_retention_seconds,
            tls=settings.kafka_tls,
        ),
    )

    def unit_of_work(*, autocommit: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(database, exact_count_limit=settings.exact_count_limit, autocommit=autocommit)

    service = PatientService(unit_of_work, billing, on_event=relay.wake)
    trail = AuditService(unit_of_work)

    app = spec_app(
        __name__,
        SPEC,
        resolver=handler_resolver(
            PatientHandlers(service, relay), AuditHandlers(trail), FhirHandlers(service)
        ),
        validate_responses=settings.validate_responses,
        validator_map=VALIDATOR_MAP,
        pythonic_params=True,
        errors={**ERRORS, **AUDIT_ERRORS},
        extra_specs=[FHIR_SPEC],
    )
    if audit:
        install_audit(app, trail)

    # Only the database makes the service DOWN. Billing down only stops creations (503, nothing stored)
    # and Kafka down only delays events (they wait in the outbox): either makes it DEGRADED, so that an
    # orchestrator does not take reads and updates away with them.
    informational = {"relay": relay.check}
    ping = getattr(billing, "ping", None)
    if ping is not None:
        informational["billing"] = ping
    metrics = Metrics(SERVICE)
    register_outbox_metrics(metrics, relay, database)
    register_backlog_metrics(metrics, database)
    asgi = ServiceMiddleware(
        FhirOutcomes(SpecRouting(SpecRouting(app, SPEC), FHIR_SPEC)),
        service=SERVICE,
        metrics=metrics,
        health_checks={"database": database.ping},
        informational_checks=informational,
        health_interval=settings.health_interval,
        state={"token_verifier": verifier},
    )
    workers: list[Worker] = [Topics(settings), relay]
    if verifier.revocations is not None:
        workers.append(verifier.revocations)
    close = getattr(billing, "close", None)
    return Service(
        SERVICE,
        asgi,
        workers=workers,
        close=[c for c in (close, database.dispose if owned else None) if c is not None],
    )


def audit_verify(settings: Settings) -> None:
    """`python -m pm.patient.main audit-verify`: check the audit trail's hash chain; status 1 if broken."""
    database = Database(settings.database_url)
    try:
        status = verify_command(AuditService(lambda: SqlUnitOfWork(database)))
    finally:
        database.dispose()
    if status:
        sys.exit(status)


def jwks_verifier(settings: Settings) -> TokenVerifier:
    """Tokens checked locally with auth's published keys; ended sessions polled from auth's feed."""
    return TokenVerifier(
        JwksKeys(settings.jwks_url, tls=settings.http_client_tls),
        issuer=settings.jwt_issuer,
        revocations=RevocationList(
            http_revocation_feed(settings.revocations_url, tls=settings.http_client_tls), name="patient"
        ),
    )


def register_outbox_metrics(metrics: Metrics, relay: OutboxRelay, database: Database) -> None:
    """The outbox backlog and the relay's progress, next to the HTTP metrics on /metrics."""

    def pending() -> float:
        try:
            return float(pending_count(database))
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is away
            return float("nan")

    Gauge(
        "pm_outbox_pending_events", "Outbox rows not yet acknowledged by Kafka", registry=metrics.registry
    ).set_function(pending)
    Gauge(
        "pm_outbox_published_events",
        "Outbox rows published by this process since it started",
        registry=metrics.registry,
    ).set_function(lambda: float(relay.published))


class Topics:
    """Creates the topic at start when the broker is reachable (the relay retries it otherwise)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self) -> None:
        settings = self.settings
        try:
            kafka.probe_broker(settings.kafka_bootstrap_servers)
            kafka.ensure_topics(
                settings.kafka_bootstrap_servers, [settings.patient_topic], tls=settings.kafka_tls
            )
        except Exception as exc:  # noqa: BLE001 - the relay keeps retrying; the service still serves
            log.warning(
                "cannot create the topic yet",
                extra={"topic": settings.patient_topic, "error": str(exc)[:200]},
            )

    def stop(self) -> None:
        """Nothing runs after start."""
