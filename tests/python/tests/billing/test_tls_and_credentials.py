"""Patient ↔ billing over gRPC with TLS (a CA made here), mutual TLS, the service token, reflection off."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from pm.billing.bootstrap import BillingGrpcServer, create_server
from pm.billing.config import Settings
from pm.billing.entrypoints.grpc_auth import bearer
from pm.common.config import ConfigError, Env
from pm.common.db import Database
from pm.common.tls import ClientTls, ServerTls
from pm.patient.adapters.billing import GrpcBilling, channel_credentials
from pm.patient.domain.model import BillingRejected, BillingUnavailable
from pm.proto.billing.v1 import billing_pb2, billing_pb2_grpc
from tests.common.certs import CertificateAuthority

TOKEN = "t" * 40
TIMEOUT = 10


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca")


@pytest.fixture
def server_tls(ca: CertificateAuthority) -> ServerTls:
    issued = ca.issue("billing", server=True)
    return ServerTls(issued.cert_file, issued.key_file)


def started(database: Database, **options: object) -> Iterator[BillingGrpcServer]:
    configured = dataclasses.replace(Settings.from_env(Env({})), **options)  # type: ignore[arg-type]
    server, _port = create_server(configured, database, address="127.0.0.1:0")
    server.start()
    yield server
    server.stop(grace=1)


@pytest.fixture
def tls_billing(database: Database, server_tls: ServerTls) -> Iterator[BillingGrpcServer]:
    yield from started(database, grpc_tls=server_tls)


@pytest.fixture
def mutual_billing(
    database: Database, server_tls: ServerTls, ca: CertificateAuthority
) -> Iterator[BillingGrpcServer]:
    mutual = ServerTls(server_tls.cert_file, server_tls.key_file, client_ca_file=ca.cert_file)
    yield from started(database, grpc_tls=mutual)


@pytest.fixture
def token_billing(database: Database) -> Iterator[BillingGrpcServer]:
    yield from started(database, service_token=TOKEN, reflection=False)


def patient_client(port: int, tls: ClientTls | None = None, token: str | None = None) -> GrpcBilling:
    return GrpcBilling(
        f"127.0.0.1:{port}",
        deadline_seconds=TIMEOUT,
        attempts=1,
        tls=tls,
        service_token=token,
    )


def open_and_read_back(client: GrpcBilling, channel: grpc.Channel, metadata=None) -> None:
    patient_id = uuid.uuid4()
    account_id = client.open_account(patient_id, "Jane Smith", "jane.smith@example.com")
    stub = billing_pb2_grpc.BillingServiceStub(channel)
    account = stub.GetBillingAccount(
        billing_pb2.GetBillingAccountRequest(patient_id=str(patient_id)), timeout=TIMEOUT, metadata=metadata
    )
    assert account.account_id == account_id


def test_patient_opens_an_account_over_tls_checked_against_the_test_ca(
    tls_billing: BillingGrpcServer, ca: CertificateAuthority
) -> None:
    trusted = ClientTls(ca_file=ca.cert_file)
    client = patient_client(tls_billing.port, trusted)
    with grpc.secure_channel(f"127.0.0.1:{tls_billing.port}", channel_credentials(trusted)) as channel:
        open_and_read_back(client, channel)
    client.ping()
    client.close()


def test_a_plaintext_client_or_one_trusting_another_ca_gets_no_answer_from_a_tls_server(
    tls_billing: BillingGrpcServer, tmp_path: Path
) -> None:
    other = CertificateAuthority(tmp_path / "other", name="someone else")
    for client in (
        patient_client(tls_billing.port),
        patient_client(tls_billing.port, ClientTls(ca_file=other.cert_file)),
    ):
        with pytest.raises(BillingUnavailable):
            client.open_account(uuid.uuid4(), "Jane Smith", "jane.smith@example.com")
        client.close()


def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(
    mutual_billing: BillingGrpcServer, ca: CertificateAuthority
) -> None:
    patient = ca.issue("patient", server=False)
    tls = ClientTls(ca_file=ca.cert_file, cert_file=patient.cert_file, key_file=patient.key_file)
    client = patient_client(mutual_billing.port, tls)
    with grpc.secure_channel(f"127.0.0.1:{mutual_billing.port}", channel_credentials(tls)) as channel:
        open_and_read_back(client, channel)
    client.close()


def test_mutual_tls_refuses_a_client_without_a_trusted_certificate(
    mutual_billing: BillingGrpcServer, ca: CertificateAuthority, tmp_path: Path
) -> None:
    stranger = CertificateAuthority(tmp_path / "stranger", name="stranger CA").issue("intruder", server=False)
    for tls in (
        ClientTls(ca_file=ca.cert_file),  # trusts the server, presents nothing
        ClientTls(ca_file=ca.cert_file, cert_file=stranger.cert_file, key_file=stranger.key_file),
    ):
        with grpc.secure_channel(f"127.0.0.1:{mutual_billing.port}", channel_credentials(tls)) as channel:
            stub = billing_pb2_grpc.BillingServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.GetBillingAccount(
                    billing_pb2.GetBillingAccountRequest(patient_id=str(uuid.uuid4())), timeout=TIMEOUT
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_get_billing_account_without_the_service_token_is_unauthenticated(
    token_billing: BillingGrpcServer,
) -> None:
    client = patient_client(token_billing.port, token=TOKEN)
    patient_id = uuid.uuid4()
    client.open_account(patient_id, "Jane Smith", "jane.smith@example.com")
    request = billing_pb2.GetBillingAccountRequest(patient_id=str(patient_id))
    with grpc.insecure_channel(f"127.0.0.1:{token_billing.port}") as channel:
        stub = billing_pb2_grpc.BillingServiceStub(channel)
        for metadata in (None, bearer("x" * 40), bearer(TOKEN[:-1]), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.GetBillingAccount(request, timeout=TIMEOUT, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Jane" not in (err.value.details() or "")
        account = stub.GetBillingAccount(request, timeout=TIMEOUT, metadata=bearer(TOKEN))
        assert (account.name, account.email) == ("Jane Smith", "jane.smith@example.com")
    client.close()


def test_patient_without_the_token_cannot_open_accounts_and_health_stays_open(
    token_billing: BillingGrpcServer,
) -> None:
    client = patient_client(token_billing.port)
    with pytest.raises(BillingRejected, match="UNAUTHENTICATED"):
        client.open_account(uuid.uuid4(), "Jane Smith", "jane.smith@example.com")
    client.ping()  # orchestrators probe health without credentials
    client.close()


def test_reflection_can_be_switched_off(token_billing: BillingGrpcServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_billing.port}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        with pytest.raises(grpc.RpcError) as err:
            database.get_services()
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def billing_settings(**environ: str) -> Settings:
    return Settings.from_env(Env(environ))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PM_ENV": "production"}, "PM_BILLING_SERVICE_TOKEN .* is required when PM_ENV=production"),
        (
            {"PM_ENV": "production", "PM_BILLING_SERVICE_TOKEN": TOKEN, "PM_BILLING_GRPC_REFLECTION": "on"},
            "PM_BILLING_GRPC_REFLECTION must be off",
        ),
        ({"PM_BILLING_SERVICE_TOKEN": "short"}, "PM_BILLING_SERVICE_TOKEN must be at least 32"),
        ({"PM_BILLING_GRPC_TLS_CERT_FILE": "/nonexistent.pem"}, "PM_BILLING_GRPC_TLS_CERT_FILE: cannot read"),
    ],
)
def test_production_needs_a_credential_and_bad_settings_name_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        billing_settings(**environ)


def test_production_defaults_turn_reflection_off_and_mutual_tls_counts_as_the_credential(
    server_tls: ServerTls, ca: CertificateAuthority
) -> None:
    production = billing_settings(PM_ENV="production", PM_BILLING_SERVICE_TOKEN=TOKEN)
    assert not production.reflection and production.service_token == TOKEN
    assert TOKEN not in repr(production)
    mutual = billing_settings(
        PM_ENV="production",
        PM_BILLING_GRPC_TLS_CERT_FILE=str(server_tls.cert_file),
        PM_BILLING_GRPC_TLS_KEY_FILE=str(server_tls.key_file),
        PM_BILLING_GRPC_TLS_CLIENT_CA_FILE=str(ca.cert_file),
    )
    assert mutual.grpc_tls is not None and mutual.grpc_tls.mutual and mutual.service_token is None
    assert billing_settings().reflection
