"""Retention: raw events (personal data) go after PM_ANALYTICS_EVENT_RETENTION, the aggregates stay, and an
event published again after its raw row was purged is still recognised as a duplicate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.adapters.store import SqlAnalyticsReader, SqlRetention, SqlUnitOfWork
from pm.analytics.service_layer.services import RawMessage, record_batch
from pm.common.db import Database
from tests.analytics.conftest import event_bytes

DAY = 86400.0


def record(database: Database, *values: bytes) -> int:
    messages = [RawMessage("patient", 0, i, None, v) for i, v in enumerate(values)]
    return record_batch(SqlUnitOfWork(database), messages, decode_patient_event).recorded


def rows(database: Database, table: str) -> int:
    with database.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_old_raw_events_are_purged_aggregates_kept_and_replays_still_dropped(database: Database) -> None:
    now = datetime.now(UTC)
    old = [event_bytes("created", occurred_at=now - timedelta(days=10)) for _ in range(3)]
    recent = event_bytes("created", occurred_at=now - timedelta(hours=1))
    assert record(database, *old, recent) == 4

    retention = SqlRetention(database, event_seconds=7 * DAY, id_seconds=14 * DAY, batch_size=2)
    purged = [retention.purge_batch() for _ in range(3)]
    assert purged == [2, 1, 0], "small batches, until nothing is left"
    assert rows(database, "patient_event") == 1
    assert rows(database, "processed_event") == 4
    summary = SqlAnalyticsReader(database).summary()
    assert summary.patients_created == 4, "the aggregates are kept forever"

    # The broker lost its log and the outbox (which keeps events 14 days here) publishes them again.
    assert record(database, *old, recent) == 0
    assert SqlAnalyticsReader(database).summary().patients_created == 4

    # Past the replay window the ids go too.
    SqlRetention(database, event_seconds=7 * DAY, id_seconds=7 * DAY).purge_batch()
    assert rows(database, "processed_event") == 1
