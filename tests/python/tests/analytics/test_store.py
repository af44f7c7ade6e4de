"""The store on SQLite, the embedded default: upserts, the latest-time rule and reading back."""

from datetime import UTC, datetime
from pathlib import Path

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.adapters.store import SqlAnalyticsReader, SqlUnitOfWork
from pm.analytics.bootstrap import MIGRATIONS
from pm.analytics.service_layer.services import RawMessage, record_batch
from pm.common.db import Database, migrate
from tests.analytics.conftest import event_bytes


def test_batches_add_up_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'analytics.db'}"
    migrate(url, MIGRATIONS)
    database = Database(url)
    later = datetime(2024, 2, 1, 12, tzinfo=UTC)
    earlier = datetime(2024, 1, 1, 12, tzinfo=UTC)

    def batch(*values: bytes) -> None:
        messages = [RawMessage("patient", 0, i, None, v) for i, v in enumerate(values)]
        record_batch(SqlUnitOfWork(database), messages, decode_patient_event)

    batch(event_bytes("created", occurred_at=later, registered_date="2024-02-01"), b"junk")
    batch(
        event_bytes("created", occurred_at=earlier, registered_date="2024-02-10"),
        event_bytes("deleted", occurred_at=earlier),
    )
    summary = SqlAnalyticsReader(database).summary()
    assert (summary.patients_created, summary.patients_deleted, summary.current_patients) == (2, 1, 1)
    assert summary.registrations_per_month == [("2024-02", 2)]
    assert summary.last_event_at == later
    assert [e.occurred_at for e in SqlAnalyticsReader(database).recent_events(10)] == [
        later,
        earlier,
        earlier,
    ]
    database.dispose()
