"""The patient use cases: each is a few lines over the ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

from pm.patient.domain.model import (
    DuplicateEmail,
    EventType,
    Patient,
    PatientChanged,
    PatientDetails,
    PatientNotFound,
    PatientPage,
    PatientQuery,
    StalePatient,
)
from pm.patient.service_layer.ports import Billing, UnitOfWorkFactory


def _now() -> datetime:
    return datetime.now(UTC)


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
        the patient and its event together. If billing fails nothing is stored."""
        details.check(self._today())
        assert details.registered_date is not None, "the create schema requires registeredDate"
        with self._uow() as uow:
            if uow.patients.email_taken(details.email):
                raise DuplicateEmail(details.email)
        patient_id = self._new_id()
        account_id = self._billing.open_account(patient_id, details.name, details.email)
        patient = Patient(
            id=patient_id,
            name=details.name,
            email=details.email,
            address=details.address,
            date_of_birth=details.date_of_birth,
            registered_date=details.registered_date,
            billing_account_id=account_id,
        )
        with self._uow() as uow:
            uow.patients.add(patient)
            uow.outbox.add(self._event(EventType.CREATED, patient, actor))
            uow.commit()
        self._on_event()
        return patient

    def update(
        self, patient_id: uuid.UUID, details: PatientDetails, actor: str, if_match: str | None
    ) -> Patient:
        details.check(self._today())
        with self._uow() as uow:
            current = self._current(uow.patients.get(patient_id, for_update=True), patient_id, if_match)
            if uow.patients.email_taken(details.email, other_than=patient_id):
                raise DuplicateEmail(details.email)
            patient = current.changed(details)
            uow.patients.save(patient)
            uow.outbox.add(self._event(EventType.UPDATED, patient, actor))
            uow.commit()
        self._on_event()
        return patient

    def delete(self, patient_id: uuid.UUID, actor: str, if_match: str | None) -> None:
        with self._uow() as uow:
            current = self._current(uow.patients.get(patient_id, for_update=True), patient_id, if_match)
            uow.patients.remove(patient_id)
            uow.outbox.add(self._event(EventType.DELETED, current, actor))
            uow.commit()
        self._on_event()

    def get(self, patient_id: uuid.UUID) -> Patient:
        with self._uow() as uow:
            patient = uow.patients.get(patient_id)
        if patient is None:
            raise PatientNotFound(patient_id)
        return patient

    def find(self, query: PatientQuery) -> PatientPage:
        with self._uow() as uow:
            return uow.patients.find(query)

    @staticmethod
    def _current(patient: Patient | None, patient_id: uuid.UUID, if_match: str | None) -> Patient:
        if patient is None:
            raise PatientNotFound(patient_id)
        if not patient.precondition_holds(if_match):
            raise StalePatient(patient_id)
        return patient

    def _event(self, event_type: EventType, patient: Patient, actor: str) -> PatientChanged:
        return PatientChanged(uuid.uuid4(), event_type, self._clock(), patient, actor)

    def _today(self) -> date:
        return self._clock().date()
