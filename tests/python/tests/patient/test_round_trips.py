"""What a create costs the patient database, counted on the wire: every query psycopg2 sends is a round trip
(BEGIN, COMMIT, ROLLBACK and the pool's pings included), seen by a proxy in front of PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from pm.bench.pgwire import QueryLog
from pm.common.db import Database, migrate
from pm.patient.adapters import tables
from pm.patient.adapters.relay import OutboxRelay, pending_count
from pm.patient.adapters.repository import SqlUnitOfWork
from pm.patient.bootstrap import MIGRATIONS
from pm.patient.domain.audit import AuditEntry
from pm.patient.domain.model import DuplicateEmail, PatientDetails
from pm.patient.service_layer.audit import Access, current_access
from pm.patient.service_layer.services import PatientService
from tests.patient.conftest import relay_settings


class CountingBilling:
    def __init__(self) -> None:
        self.calls = 0

    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        self.calls += 1
        return f"acct-{patient_id}"

    def erase_patient_data(self, patient_id: uuid.UUID) -> None:
        return None


def details(email: str | None = None) -> PatientDetails:
    email = email or f"wire.{uuid.uuid4().hex[:8]}@example.com"
    return PatientDetails("Wire Patient", email, "1 Wire Road", date(1990, 1, 1), date(2024, 1, 1))


@pytest.fixture
def wire() -> Iterator[QueryLog]:
    with QueryLog() as log:
        yield log


@pytest.fixture
def wired(postgres_url: str, wire: QueryLog) -> Iterator[Database]:
    """The patient database, reached through the proxy."""
    migrate(postgres_url, MIGRATIONS)
    database = Database(wire.url(postgres_url))
    yield database
    database.dispose()


def service_over(database: Database, billing: CountingBilling) -> PatientService:
    return PatientService(lambda **options: SqlUnitOfWork(database, **options), billing)


def audited_create() -> Access:
    entry = AuditEntry(at=datetime.now(UTC), action="patient.create", status=0, actor="nurse", role="USER")
    return Access(entry, 201)


def test_a_create_is_one_lone_read_and_one_transaction_with_its_record(
    wired: Database, wire: QueryLog
) -> None:
    """Before: a ping per checkout (2), BEGIN + SELECT + ROLLBACK for the email check, three statements for
    the audit entry: 13 round trips. Now 7, each one needed; the audit entry is one call of the server's
    `audit_append` (migration 0008): one round trip under the chain head's lock before the commit."""
    billing = CountingBilling()
    service = service_over(wired, billing)
    service.register(details(), actor="nurse")  # the pool's first connection and the dialect's setup
    access = audited_create()
    token = current_access.set(access)
    try:
        mark = wire.mark()
        patient = service.register(details(), actor="nurse")
        sent = wire.since(mark)
    finally:
        current_access.reset(token)
    expected = [
        "SELECT patients.id FROM patients WHERE patients.email_key = ",  # no transaction around it
        "BEGIN",
        "INSERT INTO patients ",
        "INSERT INTO patient_versions ",
        "INSERT INTO outbox ",
        "SELECT entry_seq, entry_at, entry_prev_hash, entry_hash FROM audit_append(",
        "COMMIT",
    ]
    assert len(sent) == len(expected), sent
    for query, start in zip(sent, expected, strict=True):
        assert query.startswith(start), (query, start)
    assert access.recorded
    # Everything the create promises was stored, together.
    p, a = tables.patients, tables.audit_events
    with wired.engine.connect() as conn:
        assert conn.execute(sa.select(p.c.billing_account_id).where(p.c.id == patient.id)).scalar_one()
        for table in (tables.patient_versions, tables.outbox):
            assert conn.execute(sa.select(table).where(table.c.patient_id == patient.id)).one()
        recorded = conn.execute(
            sa.select(a.c.seq, a.c.hash, a.c.status).where(a.c.patient_id == patient.id)
        ).one()
        head = conn.execute(sa.select(tables.audit_chain.c.seq, tables.audit_chain.c.hash)).one()
    assert (recorded.seq, recorded.hash, recorded.status) == (head.seq, head.hash, 201)


def test_a_taken_email_costs_one_round_trip_and_no_billing_call(wired: Database, wire: QueryLog) -> None:
    billing = CountingBilling()
    service = service_over(wired, billing)
    taken = service.register(details(), actor="nurse").email
    mark = wire.mark()
    with pytest.raises(DuplicateEmail):
        service.register(details(email=taken.upper()), actor="nurse")
    assert [q.split()[0] for q in wire.since(mark)] == ["SELECT"]
    assert billing.calls == 1


def test_the_unique_index_still_refuses_an_email_taken_between_the_check_and_the_insert(
    wired: Database, wire: QueryLog
) -> None:
    """The lone read sees no transaction of the insert: a concurrent create may take the email in between."""
    taken = details()

    class RacingBilling(CountingBilling):
        def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
            if self.calls == 0:  # the other create commits while billing answers this one
                self.calls += 1
                service.register(taken, actor="other")
            return super().open_account(patient_id, name, email)

    service = service_over(wired, RacingBilling())
    with pytest.raises(DuplicateEmail):
        service.register(taken, actor="nurse")
    with wired.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(tables.patients)).scalar_one()
        events = conn.execute(sa.select(sa.func.count()).select_from(tables.outbox)).scalar_one()
    assert (stored, events) == (1, 1)


def test_the_relay_publishes_a_create_with_one_transaction_and_no_empty_poll(
    wired: Database, wire: QueryLog, kafka_bootstrap: str, topic: str
) -> None:
    service = service_over(wired, CountingBilling())
    relay = OutboxRelay(wired, relay_settings(kafka_bootstrap, topic))
    service.register(details(), actor="nurse")
    assert relay.publish_pending() == 1  # connects to the broker, adopts the topic
    service.register(details(), actor="nurse")
    mark = wire.mark()
    assert relay.publish_pending() == 1
    sent = [q.split()[0] for q in wire.since(mark)]
    assert sent == ["BEGIN", "SELECT", "UPDATE", "COMMIT"], wire.since(mark)


def test_a_patients_later_event_held_back_by_its_first_is_published_in_the_same_round(
    wired: Database, kafka_bootstrap: str, topic: str
) -> None:
    service = service_over(wired, CountingBilling())
    relay = OutboxRelay(wired, relay_settings(kafka_bootstrap, topic))
    patient = service.register(details(), actor="nurse")
    service.update(patient.id, details(), actor="nurse", if_match=None)
    other = service.register(details(), actor="nurse")
    service.delete(other.id, actor="nurse", if_match=None)
    # The query takes each patient's oldest pending row; the next ones follow once those are marked.
    assert relay.publish_pending() == 4
    assert pending_count(wired) == 0
