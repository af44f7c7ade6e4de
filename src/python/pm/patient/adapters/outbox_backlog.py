"""The outbox backlog: rows the broker has not acknowledged yet, and how long the oldest has waited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client import Gauge

from pm.common.db import Database
from pm.common.web import Metrics
from pm.patient.adapters.tables import outbox


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_created_at: datetime | None

    def oldest_age_seconds(self, now: datetime | None = None) -> float:
        if self.oldest_created_at is None:
            return 0.0
        return max(0.0, ((now or datetime.now(UTC)) - self.oldest_created_at).total_seconds())


def outbox_backlog(database: Database) -> Backlog:
    """One statement over the unpublished rows (the relay's own query uses the same partial index)."""
    query = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    with database.engine.connect() as conn:
        pending, oldest = conn.execute(query).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite hands timestamps back without a zone
        oldest = oldest.replace(tzinfo=UTC)
    return Backlog(int(pending), oldest)


def register_backlog_metrics(metrics: Metrics, database: Database) -> None:
    """`pm_outbox_pending` and `pm_outbox_oldest_pending_seconds`: the two figures an alert on stuck
    events is written on (NaN while the database cannot be read: a scrape never fails for it)."""

    def read(figure: str) -> float:
        try:
            backlog = outbox_backlog(database)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is away
            return float("nan")
        return float(backlog.pending) if figure == "pending" else backlog.oldest_age_seconds()

    Gauge(
        "pm_outbox_pending", "Outbox rows not yet acknowledged by Kafka", registry=metrics.registry
    ).set_function(lambda: read("pending"))
    Gauge(
        "pm_outbox_oldest_pending_seconds",
        "Age of the oldest outbox row not yet acknowledged by Kafka (0 when there is none)",
        registry=metrics.registry,
    ).set_function(lambda: read("oldest"))
