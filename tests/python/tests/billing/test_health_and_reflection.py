"""The standard gRPC health service follows the database; reflection lists the services."""

import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from sqlalchemy.engine import make_url

from pm.billing.bootstrap import MIGRATIONS
from pm.common.db import migrate
from pm.common.pgadmin import create_database, drop_database
from pm.proto.billing.v1 import billing_pb2
from tests.support.databases import PostgresDatabases

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def drop(postgres_databases: PostgresDatabases, url: str) -> None:
    drop_database(postgres_databases.admin_url, make_url(url).database or "")


def restore(postgres_databases: PostgresDatabases, url: str) -> None:
    create_database(postgres_databases.admin_url, make_url(url).database or "")
    migrate(url, MIGRATIONS)


def test_health_is_serving_with_a_database(channel) -> None:
    assert check(channel) == SERVING
    assert check(channel, "pm.billing.v1.BillingService") == SERVING


def test_unknown_service_health_is_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        check(channel, "pm.nothing.v1.Nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_database_gone_means_not_serving_and_unavailable_until_it_is_back(
    channel, stub, database, postgres_databases
) -> None:
    drop(postgres_databases, database.url)
    assert check(channel) == NOT_SERVING
    assert check(channel, "pm.billing.v1.BillingService") == NOT_SERVING
    request = billing_pb2.CreateBillingAccountRequest(
        patient_id=str(uuid.uuid4()), name="Jane", email="jane@example.com"
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateBillingAccount(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as err:
        stub.GetBillingAccount(billing_pb2.GetBillingAccountRequest(patient_id=str(uuid.uuid4())), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    restore(postgres_databases, database.url)
    assert check(channel) == SERVING
    assert stub.CreateBillingAccount(request, timeout=10).status == "ACTIVE"


def test_reflection_lists_and_describes_the_billing_service(channel) -> None:
    reflected = ProtoReflectionDescriptorDatabase(channel)
    services = set(reflected.get_services())
    assert {"pm.billing.v1.BillingService", "grpc.health.v1.Health"} <= services
    file = reflected.FindFileContainingSymbol("pm.billing.v1.BillingService")
    methods = {m.name for s in file.service for m in s.method}
    assert methods == {"CreateBillingAccount", "GetBillingAccount", "ErasePatientData"}
