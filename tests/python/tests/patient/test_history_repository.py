"""Migration 0006 and the version / tombstone repositories on real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import sqlalchemy as sa

from pm.common.db import Database, downgrade, migrate
from pm.patient.adapters import tables
from pm.patient.adapters.repository import SqlUnitOfWork
from pm.patient.adapters.seed import demo_patients, seed
from pm.patient.bootstrap import MIGRATIONS
from pm.patient.domain.model import ChangeType, Patient, PatientVersion, Tombstone

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _patient(version: int = 1, name: str = "Ada Lovelace") -> Patient:
    return Patient(
        id=uuid.UUID("9b0c7d52-3a7e-4f4e-9a51-3c1f0e2b8d11"),
        name=name,
        email="ada@example.com",
        address="1 Analytical Row",
        date_of_birth=date(1815, 12, 10),
        registered_date=date(2024, 1, 2),
        billing_account_id="acc-1",
        version=version,
    )


def test_0006_backfills_a_created_version_for_the_patients_already_stored(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS, "0005")
    database = Database(postgres_url)
    try:
        # The seed as it ran before 0006: patients without versions (written through the table itself).
        with database.transaction() as session:
            for patient in demo_patients():
                session.execute(
                    sa.insert(tables.patients).values(
                        id=patient.id,
                        name=patient.name,
                        email=patient.email,
                        email_key=patient.email.lower(),
                        address=patient.address,
                        date_of_birth=patient.date_of_birth,
                        registered_date=patient.registered_date,
                        version=1,
                        created_at=NOW,
                        updated_at=NOW,
                    )
                )
        migrate(postgres_url, MIGRATIONS)
        with SqlUnitOfWork(database) as uow:
            for patient in demo_patients():
                versions = uow.versions.list(patient.id, size=10)
                assert [(v.version, v.change_type, v.actor) for v in versions] == [
                    (1, ChangeType.CREATED, "migration")
                ]
                assert versions[0].patient == patient
        downgrade(postgres_url, MIGRATIONS, "0005")
        with database.transaction() as session:
            assert "patient_versions" not in sa.inspect(session.connection()).get_table_names()
    finally:
        database.dispose()


def test_the_seed_records_a_created_version_per_demo_patient(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS)
    database = Database(postgres_url)
    try:
        assert seed(database) == 15
        with SqlUnitOfWork(database) as uow:
            john = uow.versions.get(demo_patients()[0].id, 1)
        assert john is not None
        assert john.change_type is ChangeType.CREATED and john.actor == "seed"
        assert john.patient is not None and john.patient.name == "John Doe"
    finally:
        database.dispose()


def test_versions_page_newest_first_and_erase_keeps_ids_and_times(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS)
    database = Database(postgres_url)
    try:
        first = _patient()
        with SqlUnitOfWork(database) as uow:
            for n in range(1, 6):
                change = ChangeType.CREATED if n == 1 else ChangeType.UPDATED
                patient = _patient(n, name=f"Ada {n}")
                uow.versions.add(PatientVersion(first.id, n, NOW, "admin@example.com", change, patient))
            uow.tombstones.add(Tombstone(first.id, NOW, 5))
            uow.commit()
        with SqlUnitOfWork(database) as uow:
            page1 = uow.versions.list(first.id, size=2)
            page2 = uow.versions.list(first.id, size=2, after_version=page1[-1].version)
            page3 = uow.versions.list(first.id, size=2, after_version=page2[-1].version)
            assert [v.version for v in page1 + page2 + page3] == [5, 4, 3, 2, 1]
            assert page1[0].patient is not None and page1[0].patient.name == "Ada 5"
            assert page1[0].changed_at == NOW
            assert uow.versions.get(first.id, 9) is None
            assert uow.versions.latest(first.id) == 5
            assert uow.versions.latest(uuid.uuid4()) is None
            tombstone = uow.tombstones.get(first.id)
            assert tombstone is not None and tombstone.version == 5 and tombstone.purged_at is None
        with SqlUnitOfWork(database) as uow:
            assert uow.versions.erase(first.id) == 5
            uow.tombstones.mark_purged(first.id, 6, NOW)
            uow.commit()
        with SqlUnitOfWork(database) as uow:
            erased = uow.versions.list(first.id, size=10)
            assert [v.patient for v in erased] == [None] * 5
            assert [v.version for v in erased] == [5, 4, 3, 2, 1]
            tombstone = uow.tombstones.get(first.id)
            assert tombstone is not None and tombstone.purged_at == NOW and tombstone.version == 6
    finally:
        database.dispose()
