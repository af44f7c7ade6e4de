"""Use cases over a fake repository: rules, idempotency and not-found, without a database."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from pm.billing.domain.model import AccountNotFound, BillingAccount, InvalidAccountRequest
from pm.billing.service_layer import services

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeAccounts:
    def __init__(self) -> None:
        self.by_patient: dict[uuid.UUID, BillingAccount] = {}

    def add_if_absent(self, account: BillingAccount) -> BillingAccount:
        return self.by_patient.setdefault(account.patient_id, account)

    def get(self, patient_id: uuid.UUID) -> BillingAccount | None:
        return self.by_patient.get(patient_id)

    def erase_personal_data(self, patient_id: uuid.UUID, erased_at: datetime) -> bool:
        account = self.by_patient.get(patient_id)
        if account is None:
            return False
        self.by_patient[patient_id] = dataclasses.replace(account, name="", email="", erased_at=erased_at)
        return True

    def __call__(self) -> "FakeAccounts":  # the unit of work factory: one in-memory transaction
        return self

    @property
    def accounts(self) -> "FakeAccounts":
        return self

    def __enter__(self) -> "FakeAccounts":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def commit(self) -> None:
        pass


def create(accounts: FakeAccounts, patient_id: str, name: str = "Jane", email: str = "jane@example.com"):
    return services.create_billing_account(
        accounts, patient_id=patient_id, name=name, email=email, now=lambda: NOW
    )


def test_create_opens_an_active_account_with_trimmed_fields() -> None:
    accounts = FakeAccounts()
    patient_id = uuid.uuid4()
    account = create(accounts, f" {str(patient_id).upper()} ", name="  Jane Smith ", email=" j@x.io ")
    assert account.patient_id == patient_id
    assert (account.name, account.email, account.status) == ("Jane Smith", "j@x.io", "ACTIVE")
    assert account.created_at == NOW
    assert accounts.by_patient == {patient_id: account}


def test_create_for_a_patient_with_an_account_returns_that_account() -> None:
    accounts = FakeAccounts()
    patient_id = str(uuid.uuid4())
    first = create(accounts, patient_id)
    assert create(accounts, patient_id, name="Other") is first
    assert len(accounts.by_patient) == 1


def test_name_of_exactly_the_limit_is_accepted() -> None:
    assert len(create(FakeAccounts(), str(uuid.uuid4()), name="n" * 200).name) == 200


@pytest.mark.parametrize(
    ("patient_id", "name", "email", "message"),
    [
        ("123", "Jane", "j@x.io", "patient_id must be a UUID"),
        (str(uuid.uuid4()), "", "j@x.io", "name is required"),
        (str(uuid.uuid4()), "n" * 201, "j@x.io", "name cannot exceed 200 characters"),
        (str(uuid.uuid4()), "Jane", "  ", "email is required"),
        (str(uuid.uuid4()), "Jane", "a b@x.io", "email should be valid"),
        (str(uuid.uuid4()), "Jane", "a@@x.io", "email should be valid"),
        (str(uuid.uuid4()), "Jane", "x" * 250 + "@x.io", "email should be valid"),
    ],
)
def test_create_refuses_a_broken_rule_and_stores_nothing(patient_id, name, email, message) -> None:
    accounts = FakeAccounts()
    with pytest.raises(InvalidAccountRequest, match=message):
        create(accounts, patient_id, name=name, email=email)
    assert accounts.by_patient == {}


def test_get_returns_the_account_or_raises_not_found() -> None:
    accounts = FakeAccounts()
    patient_id = str(uuid.uuid4())
    created = create(accounts, patient_id)
    assert services.get_billing_account(accounts, patient_id=patient_id) is created
    with pytest.raises(AccountNotFound):
        services.get_billing_account(accounts, patient_id=str(uuid.uuid4()))
    with pytest.raises(InvalidAccountRequest):
        services.get_billing_account(accounts, patient_id="nope")
