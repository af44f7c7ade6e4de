"""The patient use cases: each is a few lines over the ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import NoReturn

from pm.patient.domain.model import (
    BillingUnavailable,
    ChangeType,
    DuplicateEmail,
    ErasureUnavailable,
    Patient,
    PatientChanged,
    PatientDetails,
    PatientGone,
    PatientNotFound,
    PatientPage,
    PatientQuery,
    PatientVersion,
    StalePatient,
    Tombstone,
    VersionNotFound,
)
from pm.patient.service_layer.ports import Billing, UnitOfWork, UnitOfWorkFactory


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class HistoryPage:
    """Versions newest first; `next_after`: pass it as `after_version` for the older ones (None: no more)."""

    items: list[PatientVersion]
    next_after: int | None


class PatientService:
    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        billing: Billing,
        *,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
        on_event: Callable[[], None] = lambda: None,
    ) -> None:
        self._uow = unit_of_work
        self._billing = billing
        self._clock = clock
        self._new_id = new_id
        # Called after a commit that recorded events, so that the relay need not wait for its next poll.
        self._on_event = on_event

    def register(self, details: PatientDetails, actor: str) -> Patient:
        """Open the billing account first (outside any transaction: it is a network call), then store
        the patient and its event together. If billing fails nothing is stored.

        A taken email is refused before billing is called (no account for a patient that will not
        exist), by a lone read outside any transaction; the unique index has the last word at the
        insert (a concurrent create of the same email)."""
        details.check(self._today())
        assert details.registered_date is not None, "the create schema requires registeredDate"
        with self._uow(autocommit=True) as uow:
            if uow.patients.email_taken(details.email):
                raise DuplicateEmail(details.email)
        patient_id = self._new_id()
        account_id = self._billing.open_account(patient_id, details.name, details.email)
        patient = Patient(id=patient_id, billing_account_id=account_id, **asdict(details))
        with self._uow() as uow:
            uow.patients.add(patient)
            self._record(uow, ChangeType.CREATED, patient, actor)
            uow.commit()
        self._on_event()
        return patient

    def update(
        self, patient_id: uuid.UUID, details: PatientDetails, actor: str, if_match: str | None
    ) -> Patient:
        details.check(self._today())
        with self._uow() as uow:
            current = self._current(uow, patient_id, if_match)
            if uow.patients.email_taken(details.email, other_than=patient_id):
                raise DuplicateEmail(details.email)
            patient = current.changed(details)
            uow.patients.save(patient)
            self._record(uow, ChangeType.UPDATED, patient, actor)
            uow.commit()
        self._on_event()
        return patient

    def delete(self, patient_id: uuid.UUID, actor: str, if_match: str | None) -> None:
        """Soft delete: the patient leaves the list (its email is free again) for a tombstone; its history
        stays. A deleted patient answers PatientGone."""
        with self._uow() as uow:
            self._soft_delete(uow, self._current(uow, patient_id, if_match), actor)
            uow.commit()
        self._on_event()

    def purge(self, patient_id: uuid.UUID, actor: str, if_match: str | None) -> None:
        """Delete (if not yet deleted) and erase the personal data everywhere it was copied: billing's
        copy first (a network call, outside any transaction: if billing cannot be reached nothing is
        erased and the caller may retry, billing's erasure being idempotent), then in one transaction
        the patient's versions and stored events, with a PATIENT_PURGED event for the other services."""
        with self._uow() as uow:
            patient = uow.patients.get(patient_id)
            if patient is None:
                tombstone = uow.tombstones.get(patient_id)
                if tombstone is None:
                    raise PatientNotFound(patient_id)
                if tombstone.purged_at is not None:
                    raise PatientGone(patient_id, purged=True)
            elif not patient.precondition_holds(if_match):
                raise StalePatient(patient_id)
        try:
            self._billing.erase_patient_data(patient_id)
        except BillingUnavailable as exc:
            raise ErasureUnavailable(str(exc)) from None
        with self._uow() as uow:
            live = uow.patients.get(patient_id, for_update=True)
            if live is not None:
                if not live.precondition_holds(if_match):
                    raise StalePatient(patient_id)
                last = self._soft_delete(uow, live, actor)
            else:
                tombstone = uow.tombstones.get(patient_id, for_update=True)
                if tombstone is None:
                    raise PatientNotFound(patient_id)
                if tombstone.purged_at is not None:
                    raise PatientGone(patient_id, purged=True)
                version = uow.versions.get(patient_id, tombstone.version)
                assert version is not None and version.patient is not None, "a deletion records the patient"
                last = version.patient
            uow.versions.erase(patient_id)
            uow.outbox.erase(patient_id)
            now = self._clock()
            purged = last.version + 1
            uow.versions.add(PatientVersion(patient_id, purged, now, actor, ChangeType.PURGED, None))
            uow.tombstones.mark_purged(patient_id, purged, now)
            # The serializer leaves the personal data out of a PATIENT_PURGED event.
            uow.outbox.add(PatientChanged(uuid.uuid4(), ChangeType.PURGED, now, last, actor))
            uow.commit()
        self._on_event()

    def get(self, patient_id: uuid.UUID) -> Patient:
        with self._uow() as uow:
            patient = uow.patients.get(patient_id)
            if patient is None:
                self._missing(uow, patient_id)
        return patient

    def history(self, patient_id: uuid.UUID, *, size: int, after_version: int | None = None) -> HistoryPage:
        """A patient's versions newest first (a deleted or purged patient's too); PatientNotFound if it
        never existed."""
        with self._uow() as uow:
            items = uow.versions.list(patient_id, size=size + 1, after_version=after_version)
            if not items and (after_version is None or uow.versions.latest(patient_id) is None):
                raise PatientNotFound(patient_id)
        more = len(items) > size
        items = items[:size]
        return HistoryPage(items, items[-1].version if more else None)

    def version(self, patient_id: uuid.UUID, version: int) -> PatientVersion:
        with self._uow() as uow:
            found = uow.versions.get(patient_id, version)
            if found is None:
                if uow.versions.latest(patient_id) is None:
                    raise PatientNotFound(patient_id)
                raise VersionNotFound(patient_id, version)
        return found

    def find(self, query: PatientQuery) -> PatientPage:
        with self._uow() as uow:
            return uow.patients.find(query)

    def _current(self, uow: UnitOfWork, patient_id: uuid.UUID, if_match: str | None) -> Patient:
        """The live patient, locked for a change; PatientGone / PatientNotFound / StalePatient otherwise."""
        patient = uow.patients.get(patient_id, for_update=True)
        if patient is None:
            self._missing(uow, patient_id)
        if not patient.precondition_holds(if_match):
            raise StalePatient(patient_id)
        return patient

    @staticmethod
    def _missing(uow: UnitOfWork, patient_id: uuid.UUID) -> NoReturn:
        """Not in the list: PatientGone if deleted (a tombstone), PatientNotFound if never there."""
        tombstone = uow.tombstones.get(patient_id)
        if tombstone is None:
            raise PatientNotFound(patient_id)
        raise PatientGone(patient_id, purged=tombstone.purged_at is not None)

    def _soft_delete(self, uow: UnitOfWork, current: Patient, actor: str) -> Patient:
        """Move a live patient to a tombstone; the DELETED version holds the record as it was."""
        deleted = replace(current, version=current.version + 1)
        uow.patients.remove(current.id)
        now = self._record(uow, ChangeType.DELETED, deleted, actor)
        uow.tombstones.add(Tombstone(current.id, now, deleted.version))
        return deleted

    def _record(self, uow: UnitOfWork, change: ChangeType, patient: Patient, actor: str) -> datetime:
        """The version row and the event of one change, in the change's transaction."""
        now = self._clock()
        uow.versions.add(PatientVersion(patient.id, patient.version, now, actor, change, patient))
        uow.outbox.add(PatientChanged(uuid.uuid4(), change, now, patient, actor))
        return now

    def _today(self) -> date:
        return self._clock().date()
