"""Patient versions and tombstones over SQLAlchemy (tables of migration 0006)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pm.common.db import from_row, row_by_id
from pm.patient.adapters import tables
from pm.patient.adapters.records import patient_of, record_values
from pm.patient.domain.model import ChangeType, PatientVersion, Tombstone

_v = tables.patient_versions
_d = tables.deleted_patients
_INSERT_VERSION = sa.insert(_v)  # built once, the row as parameters (see repository.py)
# The personal data a purge erases from every version of the patient.
PERSONAL_COLUMNS = ("name", "email", "address", "date_of_birth")


def _version(row: Any) -> PatientVersion:
    return from_row(
        PatientVersion,
        row,
        change_type=ChangeType(row.change_type),
        patient=patient_of(row, row.patient_id) if row.name is not None else None,
    )


class SqlVersionRepository:
    """`uow.versions`: the history of each patient, one immutable row per change (a purge nulls the
    personal columns of them all)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, version: PatientVersion) -> None:
        self.session.execute(
            _INSERT_VERSION,
            {
                "patient_id": version.patient_id,
                "version": version.version,
                "changed_at": version.changed_at,
                "actor": version.actor,
                "change_type": version.change_type.value,
                **record_values(version.patient),
            },
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
    return from_row(Tombstone, row, patient_id=row.id)


class SqlTombstoneRepository:
    """`uow.tombstones`: deleted patients, by id only (their data stays in their versions)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Tombstone | None:
        row = row_by_id(self.session, _d, patient_id, for_update=for_update)
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
