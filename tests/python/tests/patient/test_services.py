"""Unit tests of the use cases with fakes: the order of effects and the rules, without infrastructure."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from pm.patient.domain.model import (
    BillingUnavailable,
    DuplicateEmail,
    EventType,
    InvalidPatient,
    Patient,
    PatientChanged,
    PatientDetails,
    PatientNotFound,
    PatientPage,
    PatientQuery,
    StalePatient,
    parse_sort,
)
from pm.patient.service_layer.services import PatientService

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakePatients:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Patient] = {}

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Patient | None:
        return self.rows.get(patient_id)

    def email_taken(self, email: str, *, other_than: uuid.UUID | None = None) -> bool:
        return any(p.email_key == email.lower() and p.id != other_than for p in self.rows.values())

    def add(self, patient: Patient) -> None:
        self.rows[patient.id] = patient

    def save(self, patient: Patient) -> None:
        self.rows[patient.id] = patient

    def remove(self, patient_id: uuid.UUID) -> None:
        del self.rows[patient_id]

    def find(self, query: PatientQuery) -> PatientPage:
        return PatientPage(list(self.rows.values()), len(self.rows), query)


class FakeOutbox:
    def __init__(self) -> None:
        self.events: list[PatientChanged] = []

    def add(self, event: PatientChanged) -> None:
        self.events.append(event)


class FakeUnitOfWork:
    """Changes are kept only by `commit()`; leaving the block without it rolls them back."""

    def __init__(self) -> None:
        self.patients = FakePatients()
        self.outbox = FakeOutbox()
        self.commits = 0

    def __call__(self) -> FakeUnitOfWork:
        return self

    def __enter__(self) -> FakeUnitOfWork:
        self._saved = dict(self.patients.rows), list(self.outbox.events)
        return self

    def __exit__(self, *exc: object) -> None:
        self.patients.rows, self.outbox.events = self._saved

    def commit(self) -> None:
        self.commits += 1
        self._saved = dict(self.patients.rows), list(self.outbox.events)


class FakeBilling:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[uuid.UUID] = []

    def open_account(self, patient_id: uuid.UUID, name: str, email: str) -> str:
        self.calls.append(patient_id)
        if self.fail:
            raise BillingUnavailable("billing is down")
        return f"acct-{patient_id.hex[:8]}"


def details(**changes: object) -> PatientDetails:
    values: dict[str, object] = {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "address": "12 St James's Square",
        "date_of_birth": date(1815, 12, 10),
        "registered_date": date(2024, 1, 1),
    }
    values.update(changes)
    return PatientDetails(**values)  # type: ignore[arg-type]


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def service(uow: FakeUnitOfWork, billing: FakeBilling | None = None) -> PatientService:
    return PatientService(uow, billing or FakeBilling(), clock=lambda: NOW)


def test_register_opens_the_account_for_the_new_id_and_records_one_event(uow: FakeUnitOfWork) -> None:
    billing = FakeBilling()
    patient = service(uow, billing).register(details(), actor="nurse@example.com")

    assert billing.calls == [patient.id]
    assert patient.billing_account_id == f"acct-{patient.id.hex[:8]}"
    assert uow.patients.rows == {patient.id: patient}
    [event] = uow.outbox.events
    assert (event.event_type, event.patient, event.actor, event.occurred_at) == (
        EventType.CREATED,
        patient,
        "nurse@example.com",
        NOW,
    )


def test_register_stores_nothing_when_billing_fails(uow: FakeUnitOfWork) -> None:
    with pytest.raises(BillingUnavailable):
        service(uow, FakeBilling(fail=True)).register(details(), actor="a")
    assert uow.patients.rows == {} and uow.outbox.events == []


def test_a_duplicate_email_is_refused_before_billing_is_called(uow: FakeUnitOfWork) -> None:
    billing = FakeBilling()
    service(uow, billing).register(details(email="Ada@Example.com"), actor="a")
    with pytest.raises(DuplicateEmail):
        service(uow, billing).register(details(email="ada@example.COM"), actor="a")
    assert len(billing.calls) == 1


def test_update_keeps_registered_date_when_omitted_and_bumps_the_version(uow: FakeUnitOfWork) -> None:
    patients = service(uow)
    created = patients.register(details(), actor="a")
    updated = patients.update(
        created.id, details(name="Ada King", registered_date=None), actor="b", if_match=created.etag
    )
    assert updated.registered_date == created.registered_date
    assert updated.version == created.version + 1 and updated.etag != created.etag
    assert [e.event_type for e in uow.outbox.events] == [EventType.CREATED, EventType.UPDATED]
    with pytest.raises(StalePatient):
        patients.update(created.id, details(), actor="b", if_match=created.etag)


def test_delete_records_the_last_known_state(uow: FakeUnitOfWork) -> None:
    patients = service(uow)
    created = patients.register(details(), actor="a")
    patients.delete(created.id, actor="admin", if_match="*")
    assert uow.patients.rows == {}
    assert uow.outbox.events[-1].event_type is EventType.DELETED
    assert uow.outbox.events[-1].patient == created
    with pytest.raises(PatientNotFound):
        patients.delete(created.id, actor="admin", if_match=None)


def test_future_birth_dates_are_invalid(uow: FakeUnitOfWork) -> None:
    with pytest.raises(InvalidPatient) as caught:
        service(uow).register(details(date_of_birth=date(2025, 3, 2)), actor="a")
    assert caught.value.errors == {"dateOfBirth": "Date of birth cannot be in the future"}
    assert service(uow).register(details(date_of_birth=date(2025, 3, 1)), actor="a")


def test_if_match_accepts_star_lists_and_only_strong_current_tags() -> None:
    patient = Patient(uuid.uuid4(), "n", "e@x.io", "a", date(2000, 1, 1), date(2024, 1, 1), None, version=3)
    assert patient.precondition_holds(None) and patient.precondition_holds("*")
    assert patient.precondition_holds(f'"nope", {patient.etag}')
    assert not patient.precondition_holds(f"W/{patient.etag}")
    assert not patient.precondition_holds('"other"')


def test_sort_parsing() -> None:
    assert [(k.field, k.descending) for k in parse_sort("-registeredDate,name")] == [
        ("registeredDate", True),
        ("name", False),
    ]
    with pytest.raises(InvalidPatient):
        parse_sort("password")
