"""BillingService over a real channel against a real PostgreSQL database."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import grpc
import pytest
from sqlalchemy import func, select

from pm.billing.adapters.tables import billing_account
from pm.billing.bootstrap import create_server
from pm.common.db import Database
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from tests.billing.conftest import settings

TIMEOUT = 5


def create(stub, patient_id: str, name: str = "Jane Smith", email: str = "jane.smith@example.com"):
    return stub.CreateBillingAccount(
        billing_pb2.CreateBillingAccountRequest(patient_id=patient_id, name=name, email=email),
        timeout=TIMEOUT,
    )


def stored_accounts(database: Database) -> int:
    with database.transaction() as session:
        return session.execute(select(func.count()).select_from(billing_account)).scalar_one()


def test_create_returns_an_active_account_for_the_patient(stub) -> None:
    patient_id = str(uuid.uuid4())
    account = create(stub, patient_id)
    assert uuid.UUID(account.account_id)
    assert account.status == "ACTIVE"
    assert account.patient_id == patient_id
    assert (account.name, account.email) == ("Jane Smith", "jane.smith@example.com")
    assert datetime.fromisoformat(account.created_at).tzinfo is not None


def test_create_twice_returns_the_same_account(stub, database) -> None:
    patient_id = str(uuid.uuid4())
    first = create(stub, patient_id)
    second = create(stub, patient_id, name="Someone Else", email="else@example.com")
    assert second == first
    assert stored_accounts(database) == 1


def test_concurrent_creates_for_one_patient_open_exactly_one_account(stub, database) -> None:
    patient_id = str(uuid.uuid4())
    start = threading.Barrier(8)

    def call(_: int) -> billing_pb2.BillingAccount:
        start.wait(TIMEOUT)
        return create(stub, patient_id)

    with ThreadPoolExecutor(8) as pool:
        accounts = list(pool.map(call, range(8)))
    assert len({a.account_id for a in accounts}) == 1
    assert stored_accounts(database) == 1


def test_get_returns_the_created_account(stub) -> None:
    patient_id = str(uuid.uuid4())
    created = create(stub, patient_id)
    fetched = stub.GetBillingAccount(
        billing_pb2.GetBillingAccountRequest(patient_id=patient_id.upper()), timeout=TIMEOUT
    )
    assert fetched == created


def test_get_unknown_patient_is_not_found(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GetBillingAccount(
            billing_pb2.GetBillingAccountRequest(patient_id=str(uuid.uuid4())), timeout=TIMEOUT
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("patient_id", "name", "email", "mentions"),
    [
        ("not-a-uuid", "Jane", "jane@example.com", "patient_id"),
        ("", "Jane", "jane@example.com", "patient_id"),
        (str(uuid.uuid4()), "", "jane@example.com", "name"),
        (str(uuid.uuid4()), "   ", "jane@example.com", "name"),
        (str(uuid.uuid4()), "x" * 201, "jane@example.com", "name"),
        (str(uuid.uuid4()), "Jane", "", "email"),
        (str(uuid.uuid4()), "Jane", "not-an-email", "email"),
        (str(uuid.uuid4()), "Jane", "jane@example", "email"),
    ],
)
def test_invalid_create_is_invalid_argument_and_stores_nothing(
    stub, database, patient_id, name, email, mentions
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        create(stub, patient_id, name=name, email=email)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert mentions in (err.value.details() or "")
    assert stored_accounts(database) == 0


def test_get_with_malformed_id_is_invalid_argument(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.GetBillingAccount(billing_pb2.GetBillingAccountRequest(patient_id="42"), timeout=TIMEOUT)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_message_is_refused_and_the_server_keeps_serving(stub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        create(stub, str(uuid.uuid4()), name="x" * (2 * 1024 * 1024))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert create(stub, str(uuid.uuid4())).status == "ACTIVE"


def test_create_grpc_server_returns_an_unstarted_server_on_the_bound_port(database) -> None:
    server, port = create_server(settings(), database, address="127.0.0.1:0")
    assert port > 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(chan).result(timeout=0.3)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as chan:
            account = create(billing_pb2_grpc.BillingServiceStub(chan), str(uuid.uuid4()))
        assert account.status == "ACTIVE"
    finally:
        server.stop(0)


def test_create_grpc_server_refuses_a_port_in_use(billing, database) -> None:
    with pytest.raises(RuntimeError):
        create_server(settings(), database, address=f"127.0.0.1:{billing.port}")


def test_erase_patient_data_blanks_name_and_email_and_is_idempotent(stub, database) -> None:
    patient_id = str(uuid.uuid4())
    account = create(stub, patient_id, name="Erase Me", email="erase.me@example.com")
    erase = billing_pb2.ErasePatientDataRequest(patient_id=patient_id)
    assert stub.ErasePatientData(erase, timeout=TIMEOUT).account_found is True
    assert stub.ErasePatientData(erase, timeout=TIMEOUT).account_found is True  # again: same answer
    after = stub.GetBillingAccount(
        billing_pb2.GetBillingAccountRequest(patient_id=patient_id), timeout=TIMEOUT
    )
    assert (after.account_id, after.status, after.name, after.email) == (account.account_id, "ACTIVE", "", "")
    with database.transaction() as session:
        erased_at = session.execute(
            select(billing_account.c.erased_at).where(billing_account.c.patient_id == uuid.UUID(patient_id))
        ).scalar_one()
    assert erased_at is not None
    # A patient without an account (the seeded ones) is fine too: nothing to erase.
    unknown = billing_pb2.ErasePatientDataRequest(patient_id=str(uuid.uuid4()))
    assert stub.ErasePatientData(unknown, timeout=TIMEOUT).account_found is False
    with pytest.raises(grpc.RpcError) as bad:
        stub.ErasePatientData(billing_pb2.ErasePatientDataRequest(patient_id="nope"), timeout=TIMEOUT)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
