"""Unit tests of the use cases with fakes: the order of effects and the rules, without infrastructure."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from pm.patient.domain.model import (
    BillingUnavailable,
    ChangeType,
    DuplicateEmail,
    InvalidPatient,
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

    def erase(self, patient_id: uuid.UUID) -> int:
        erased = [e for e in self.events if e.patient.id == patient_id]
        self.events = [
            (
                replace(e, patient=replace(e.patient, name="", email="", address=""))
                if e.patient.id == patient_id
                else e
            )
            for e in self.events
        ]
        return len(erased)


class FakeVersions:
    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, int], PatientVersion] = {}

    def add(self, version: PatientVersion) -> None:
        assert (version.patient_id, version.version) not in self.rows, "versions are never overwritten"
        self.rows[(version.patient_id, version.version)] = version

    def list(
        self, patient_id: uuid.UUID, *, size: int, after_version: int | None = None
    ) -> list[PatientVersion]:
        mine = sorted((v for (p, _), v in self.rows.items() if p == patient_id), key=lambda v: -v.version)
        return [v for v in mine if after_version is None or v.version < after_version][:size]

    def get(self, patient_id: uuid.UUID, version: int) -> PatientVersion | None:
        return self.rows.get((patient_id, version))

    def latest(self, patient_id: uuid.UUID) -> int | None:
        return max((n for p, n in self.rows if p == patient_id), default=None)

    def erase(self, patient_id: uuid.UUID) -> int:
        keys = [k for k in self.rows if k[0] == patient_id]
        for key in keys:
            self.rows[key] = replace(self.rows[key], patient=None)
        return len(keys)


class FakeTombstones:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Tombstone] = {}

    def get(self, patient_id: uuid.UUID, *, for_update: bool = False) -> Tombstone | None:
        return self.rows.get(patient_id)

    def add(self, tombstone: Tombstone) -> None:
        self.rows[tombstone.patient_id] = tombstone

    def mark_purged(self, patient_id: uuid.UUID, version: int, purged_at: datetime) -> None:
        self.rows[patient_id] = replace(self.rows[patient_id], version=version, purged_at=purged_at)


class FakeUnitOfWork:
    """Changes are kept only by `commit()`; leaving the block without it rolls them back."""

    def __init__(self) -> None:
        self.patients = FakePatients()
        self.outbox = FakeOutbox()
        self.versions = FakeVersions()
        self.tombstones = FakeTombstones()
        self.commits = 0

    def __call__(self, *, autocommit: bool = False) -> FakeUnitOfWork:
        return self

    def _state(self) -> tuple[object, ...]:
        return (
            dict(self.patients.rows),
            list(self.outbox.events),
            dict(self.versions.rows),
            dict(self.tombstones.rows),
        )

    def __enter__(self) -> FakeUnitOfWork:
        self._saved = self._state()
        return self

    def __exit__(self, *exc: object) -> None:
        self.patients.rows, self.outbox.events, self.versions.rows, self.tombstones.rows = self._saved  # type: ignore[assignment]

    def commit(self) -> None:
        self.commits += 1
        self._saved = self._state()


class FakeBilling:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[uuid.UUID] = []
        self.erased: list[uuid.UUID] = []

    def erase_patient_data(self, patient_id: uuid.UUID) -> None:
        if self.fail:
            raise BillingUnavailable("billing is down")
        self.erased.append(patient_id)

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
    assert (event.change, event.patient, event.actor, event.occurred_at) == (
        ChangeType.CREATED,
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
    assert [e.change for e in uow.outbox.events] == [ChangeType.CREATED, ChangeType.UPDATED]
    with pytest.raises(StalePatient):
        patients.update(created.id, details(), actor="b", if_match=created.etag)


def test_delete_records_the_last_known_state(uow: FakeUnitOfWork) -> None:
    patients = service(uow)
    created = patients.register(details(), actor="a")
    patients.delete(created.id, actor="admin", if_match="*")
    assert uow.patients.rows == {}
    assert uow.outbox.events[-1].change is ChangeType.DELETED
    assert uow.outbox.events[-1].patient == replace(created, version=2)
    assert uow.tombstones.rows[created.id] == Tombstone(created.id, NOW, 2)
    for again in (
        lambda: patients.delete(created.id, actor="admin", if_match=None),
        lambda: patients.get(created.id),
        lambda: patients.update(created.id, details(), actor="a", if_match=None),
    ):
        with pytest.raises(PatientGone):
            again()
    with pytest.raises(PatientNotFound):
        patients.delete(uuid.uuid4(), actor="admin", if_match=None)


def test_every_change_writes_a_version_and_history_pages_newest_first(uow: FakeUnitOfWork) -> None:
    patients = service(uow)
    created = patients.register(details(), actor="a")
    patients.update(created.id, details(name="Ada King"), actor="b", if_match=None)
    patients.update(created.id, details(name="Ada, Countess"), actor="c", if_match=None)
    patients.delete(created.id, actor="admin", if_match=None)

    first = patients.history(created.id, size=3)
    assert [(v.version, v.change_type, v.actor) for v in first.items] == [
        (4, ChangeType.DELETED, "admin"),
        (3, ChangeType.UPDATED, "c"),
        (2, ChangeType.UPDATED, "b"),
    ]
    assert first.next_after == 2
    rest = patients.history(created.id, size=3, after_version=first.next_after)
    assert [(v.version, v.change_type) for v in rest.items] == [(1, ChangeType.CREATED)]
    assert rest.next_after is None
    assert rest.items[0].patient == created
    assert patients.version(created.id, 3).patient.name == "Ada, Countess"  # type: ignore[union-attr]
    with pytest.raises(VersionNotFound):
        patients.version(created.id, 5)
    with pytest.raises(PatientNotFound):
        patients.history(uuid.uuid4(), size=3)


def test_purge_erases_versions_and_events_after_billing_and_records_purged(uow: FakeUnitOfWork) -> None:
    billing = FakeBilling()
    patients = service(uow, billing)
    created = patients.register(details(), actor="a")
    patients.purge(created.id, actor="admin", if_match=None)

    assert billing.erased == [created.id]
    assert uow.patients.rows == {}
    assert [v.patient for v in uow.versions.rows.values()] == [None, None, None]
    assert [e.change for e in uow.outbox.events] == [
        ChangeType.CREATED,
        ChangeType.DELETED,
        ChangeType.PURGED,
    ]
    assert all(e.patient.name != "Ada Lovelace" for e in uow.outbox.events[:2])
    history = patients.history(created.id, size=10).items
    assert [(v.version, v.change_type) for v in history] == [
        (3, ChangeType.PURGED),
        (2, ChangeType.DELETED),
        (1, ChangeType.CREATED),
    ]
    with pytest.raises(PatientGone) as gone:
        patients.purge(created.id, actor="admin", if_match=None)
    assert gone.value.purged


def test_purge_of_a_deleted_patient_works_and_billing_down_erases_nothing(uow: FakeUnitOfWork) -> None:
    billing = FakeBilling()
    patients = service(uow, billing)
    created = patients.register(details(), actor="a")
    patients.delete(created.id, actor="admin", if_match=None)
    billing.fail = True
    with pytest.raises(BillingUnavailable):
        patients.purge(created.id, actor="admin", if_match=None)
    assert uow.versions.rows[(created.id, 2)].patient is not None
    billing.fail = False
    patients.purge(created.id, actor="admin", if_match=None)
    assert uow.versions.rows[(created.id, 2)].patient is None
    assert uow.tombstones.rows[created.id].purged_at == NOW
    assert uow.outbox.events[-1].change is ChangeType.PURGED


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
