"""Patient versions and tombstones over SQLAlchemy (tables of migration 0006)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pm.common.db import utc
from pm.patient.adapters import tables
from pm.patient.domain.model import ChangeType, Patient, PatientVersion, Tombstone

_v = tables.patient_versions
_d = tables.deleted_patients
# The personal data a purge erases from every version of the patient.
PERSONAL_COLUMNS = ("name", "email", "address", "date_of_birth")


def _version(row: Any) -> PatientVersion:
    patient = None
    if row.name is not None:
        patient = Patient(
            id=row.patient_id,
            name=row.name,
            email=row.email,
            address=row.address,
            date_of_birth=row.date_of_birth,
            registered_date=row.registered_date,
            billing_account_id=row.billing_account_id,
            version=row.version,
        )
    return PatientVersion(
        patient_id=row.patient_id,
        version=row.version,
        changed_at=utc(row.changed_at),
        actor=row.actor,
        change_type=ChangeType(row.change_type),
        patient=patient,
    )


class SqlVersionRepository:
    """`uow.versions`: the history of each patient, one immutable row per change (a purge nulls the
    personal columns of them all)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, version: PatientVersion) -> None:
        patient = version.patient
        self.session.execute(
            sa.insert(_v).values(
                patient_id=version.patient_id,
                version=version.version,
                changed_at=version.changed_at,
                actor=version.actor,
                change_type=version.change_type.value,
                name=patient.name if patient else None,
                email=patient.email if patient else None,
                address=patient.address if patient else None,
                date_of_birth=patient.date_of_birth if patient else None,
                registered_date=patient.registered_date if patient else None,
                billing_account_id=patient.billing_account_id if patient else None,
            )
        )

    def list(
        self, patient_id: uuid.UUID, *, size: int, after_version: int | None = None
    ) -> list[PatientVersion]:
        """Newest first, at most `size`; `after_version`: the versions older than that one (keyset, the
        primary key serves it)."""
        query = sa.select(_v).where(_v.c.patient_id == patient_id)
        if after_version is not None:
            query = query.where(_v.c.version < after_version)
        rows = self.session.execute(query.order_by(_v.c.version.desc()).limit(size))
        return [_version(row) for row in rows]

    def get(self, patient_id: uuid.UUID, version: int) -> PatientVersion | None:
        row = self.session.execute(
            sa.select(_v).where(_v.c.patient_id == patient_id, _v.c.version == version)
        ).first()
        return _version(row) if row else None

    def latest(self, patient_id: uuid.UUID) -> int | None:
        """The newest version number, None if the patient has no history."""
        return self.session.execute(
            sa.select(sa.func.max(_v.c.version)).where(_v.c.patient_id == patient_id)
        ).scalar_one()

    def erase(self, patient_id: uuid.UUID) -> int:
        """Null the personal data of every version of the patient; how many rows changed."""
        result = self.session.execute(
            sa.update(_v).where(_v.c.patient_id == patient_id).values(**dict.fromkeys(PERSONAL_COLUMNS))
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _tombstone(row: Any) -> Tombstone:
    return Tombstone(
        patient_id=row.id,
        deleted_at=utc(row.deleted_at),
        version=row.version,
        purged_at=utc(row.purged_at) if row.purged_at is not None else None,
    )


class SqlTombstoneRepository:
    """`uow.tombstones`: deleted patients, by id only (their data stays in their versions)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Tombstone | None:
        query = sa.select(_d).where(_d.c.id == patient_id)
        if for_update:
            query = query.with_for_update()
        row = self.session.execute(query).first()
        return _tombstone(row) if row else None

    def add(self, tombstone: Tombstone) -> None:
        self.session.execute(
            sa.insert(_d).values(
                id=tombstone.patient_id,
                deleted_at=tombstone.deleted_at,
                version=tombstone.version,
                purged_at=tombstone.purged_at,
            )
        )

    def mark_purged(self, patient_id: uuid.UUID, version: int, purged_at: datetime) -> None:
        self.session.execute(
            sa.update(_d).where(_d.c.id == patient_id).values(version=version, purged_at=purged_at)
        )
