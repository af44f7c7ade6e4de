"""The 15 demo patients of the original system, loaded once per database with their PATIENT_CREATED events.

Seeded patients have no billing account (`billingAccountId` null): they are demo data loaded without the
billing service. Their events go through the outbox like any other, so analytics counts them. The seed is
recorded in the `seeds` table, so a demo patient someone deleted is not brought back by a restart.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, date, datetime

import sqlalchemy as sa

from pm.common.db import Database
from pm.patient.adapters import tables
from pm.patient.adapters.history import SqlVersionRepository
from pm.patient.adapters.repository import SqlOutbox, SqlPatientRepository
from pm.patient.domain.model import ChangeType, Patient, PatientChanged, PatientVersion

log = logging.getLogger(__name__)

SEED_NAME = "demo-patients-v1"
SEED_ACTOR = "seed"
# Event ids derive from the patient id, so the same seed always produces the same events.
_EVENT_NAMESPACE = uuid.UUID("6f1c1b6e-3f55-4a55-9d1e-4c0e9a4d2b10")

DEMO_PATIENTS = [
    (
        "123e4567-e89b-12d3-a456-426614174000",
        "John Doe",
        "123 Main St, Springfield",
        "1985-06-15",
        "2024-01-10",
    ),
    (
        "123e4567-e89b-12d3-a456-426614174001",
        "Jane Smith",
        "456 Elm St, Shelbyville",
        "1990-09-23",
        "2023-12-01",
    ),
    (
        "123e4567-e89b-12d3-a456-426614174002",
        "Alice Johnson",
        "789 Oak St, Capital City",
        "1978-03-12",
        "2022-06-20",
    ),
    (
        "123e4567-e89b-12d3-a456-426614174003",
        "Bob Brown",
        "321 Pine St, Springfield",
        "1982-11-30",
        "2023-05-14",
    ),
    (
        "123e4567-e89b-12d3-a456-426614174004",
        "Emily Davis",
        "654 Maple St, Shelbyville",
        "1995-02-05",
        "2024-03-01",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174005",
        "Michael Green",
        "987 Cedar St, Springfield",
        "1988-07-25",
        "2024-02-15",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174006",
        "Sarah Taylor",
        "123 Birch St, Shelbyville",
        "1992-04-18",
        "2023-08-25",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174007",
        "David Wilson",
        "456 Ash St, Capital City",
        "1975-01-11",
        "2022-10-10",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174008",
        "Laura White",
        "789 Palm St, Springfield",
        "1989-09-02",
        "2024-04-20",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174009",
        "James Harris",
        "321 Cherry St, Shelbyville",
        "1993-11-15",
        "2023-06-30",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174010",
        "Emma Moore",
        "654 Spruce St, Capital City",
        "1980-08-09",
        "2023-01-22",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174011",
        "Ethan Martinez",
        "987 Redwood St, Springfield",
        "1984-05-03",
        "2024-05-12",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174012",
        "Sophia Clark",
        "123 Hickory St, Shelbyville",
        "1991-12-25",
        "2022-11-11",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174013",
        "Daniel Lewis",
        "456 Walnut St, Capital City",
        "1976-06-08",
        "2023-09-19",
    ),
    (
        "223e4567-e89b-12d3-a456-426614174014",
        "Isabella Walker",
        "789 Chestnut St, Springfield",
        "1987-10-17",
        "2024-07-15",
    ),
]


def demo_patients() -> list[Patient]:
    return [
        Patient(
            id=uuid.UUID(patient_id),
            name=name,
            email=f"{name.lower().replace(' ', '.')}@example.com",
            address=address,
            date_of_birth=date.fromisoformat(born),
            registered_date=date.fromisoformat(registered),
            billing_account_id=None,
        )
        for patient_id, name, address, born, registered in DEMO_PATIENTS
    ]


def seed(database: Database) -> int:
    """Load the demo patients unless this database was seeded before; returns how many were added.

    Safe to run concurrently: the seed marker is inserted first, so a second runner fails on its primary
    key and rolls back instead of loading the patients twice.
    """
    now = datetime.now(UTC)
    with database.transaction() as session:
        seeded = session.execute(
            sa.select(tables.seeds.c.name).where(tables.seeds.c.name == SEED_NAME)
        ).first()
        if seeded:
            return 0
        session.execute(sa.insert(tables.seeds).values(name=SEED_NAME, applied_at=now))
        patients = SqlPatientRepository(session)
        events = SqlOutbox(session)
        versions = SqlVersionRepository(session)
        added = 0
        for patient in demo_patients():
            if patients.get(patient.id) is not None or patients.email_taken(patient.email):
                continue
            patients.add(patient)
            versions.add(
                PatientVersion(patient.id, patient.version, now, SEED_ACTOR, ChangeType.CREATED, patient)
            )
            event_id = uuid.uuid5(_EVENT_NAMESPACE, str(patient.id))
            events.add(PatientChanged(event_id, ChangeType.CREATED, now, patient, SEED_ACTOR))
            added += 1
    log.info("seeded demo patients", extra={"added": added})
    return added
