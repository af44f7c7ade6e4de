"""The SQL repository on both supported databases: PostgreSQL and the SQLite dev default."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pm.bench.pgwire import QueryLog
from pm.billing.adapters.repository import SqlAccountRepository, SqlUnitOfWork
from pm.billing.bootstrap import MIGRATIONS
from pm.billing.domain.model import BillingAccount
from pm.billing.service_layer import services
from pm.common.db import Database, migrate


@pytest.fixture(params=["postgresql", "sqlite"])
def repository(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'billing.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate(url, MIGRATIONS)
    db = Database(url)
    with SqlUnitOfWork(db) as uow:
        yield uow.accounts
    db.dispose()


def account(patient_id: uuid.UUID, name: str = "Jane") -> BillingAccount:
    return BillingAccount(
        account_id=uuid.uuid4(),
        patient_id=patient_id,
        name=name,
        email="jane@example.com",
        status="ACTIVE",
        created_at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
    )


def test_first_account_wins_and_round_trips_exactly(repository: SqlAccountRepository) -> None:
    patient_id = uuid.uuid4()
    first = account(patient_id)
    assert repository.add_if_absent(first) == first
    assert repository.add_if_absent(account(patient_id, name="Other")) == first
    assert repository.get(patient_id) == first
    assert repository.get(uuid.uuid4()) is None


def test_opening_an_account_is_one_insert_in_one_transaction(postgres_url: str) -> None:
    """Counted on the wire (tests.support.pgwire): before, a ping and a SELECT after the insert."""
    migrate(postgres_url, MIGRATIONS)
    with QueryLog() as wire:
        db = Database(wire.url(postgres_url))

        def open_account(patient_id: str) -> tuple[BillingAccount, list[str]]:
            mark = wire.mark()
            opened = services.create_billing_account(
                lambda: SqlUnitOfWork(db), patient_id=patient_id, name="Jane", email="jane@example.com"
            )
            return opened, [query.split()[0] for query in wire.since(mark)]

        open_account(str(uuid.uuid4()))  # the pool's first connection and the dialect's setup
        patient_id = str(uuid.uuid4())
        first, new_account = open_account(patient_id)
        again, existing_account = open_account(patient_id)
        db.dispose()
    assert new_account == ["BEGIN", "INSERT", "COMMIT"]
    assert existing_account == ["BEGIN", "INSERT", "SELECT", "COMMIT"]
    assert again == first and first.name == "Jane"
