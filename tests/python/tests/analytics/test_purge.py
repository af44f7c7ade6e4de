"""PATIENT_PURGED on real PostgreSQL: the patient's stored events lose their name and email, parked
messages keyed by the patient lose their payload, the aggregates stay."""

import uuid

import sqlalchemy as sa

from pm.analytics.adapters.codec import decode_patient_event
from pm.analytics.adapters.store import SqlAnalyticsReader, SqlUnitOfWork
from pm.analytics.adapters.tables import dead_letter, patient_event
from pm.analytics.bootstrap import MIGRATIONS
from pm.analytics.service_layer.services import RawMessage, record_batch
from pm.common.db import Database, migrate
from tests.analytics.conftest import event_bytes


def test_a_purge_erases_the_patients_events_and_keeps_the_counts(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS)
    database = Database(postgres_url)
    purged, kept = str(uuid.uuid4()), str(uuid.uuid4())
    offsets = iter(range(1000))

    def batch(*values: tuple[str, bytes]) -> None:
        messages = [RawMessage("patient", 0, next(offsets), k.encode(), v) for k, v in values]
        record_batch(SqlUnitOfWork(database), messages, decode_patient_event)

    try:
        batch(
            (
                purged,
                event_bytes("created", patient_id=purged, name="Erase Me", email="erase.me@example.com"),
            ),
            (kept, event_bytes("created", patient_id=kept, name="Keep Me", email="keep.me@example.com")),
            (purged, b"\x00not a patient event Erase Me"),
        )
        # The update and the purge in one batch: the purge also erases what came just before it.
        batch(
            (purged, event_bytes("updated", patient_id=purged, name="Erase Me Too", email="too@example.com")),
            (purged, event_bytes("purged", patient_id=purged, name="", email="")),
        )
        with database.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    patient_event.c.patient_id,
                    patient_event.c.event_type,
                    patient_event.c.name,
                    patient_event.c.email,
                ).order_by(patient_event.c.seq)
            ).all()
            letters = conn.execute(
                sa.select(dead_letter.c.key, dead_letter.c.payload, dead_letter.c.error)
            ).all()
        assert [(r.patient_id, r.event_type, r.name, r.email) for r in rows] == [
            (purged, "PATIENT_CREATED", "", ""),
            (kept, "PATIENT_CREATED", "Keep Me", "keep.me@example.com"),
            (purged, "PATIENT_UPDATED", "", ""),
            (purged, "PATIENT_PURGED", "", ""),
        ]
        assert [(bytes(k), p) for k, p, _ in letters] == [(purged.encode(), None)]
        assert "purged" in letters[0].error
        summary = SqlAnalyticsReader(database).summary()
        assert (summary.patients_created, summary.patients_updated, summary.patients_deleted) == (2, 1, 0)
        recent = SqlAnalyticsReader(database).recent_events(10)
        assert "PATIENT_PURGED" in {e.event_type.value for e in recent}
    finally:
        database.dispose()
