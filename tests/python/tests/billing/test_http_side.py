"""Billing's HTTP side: /health follows the database, /metrics counts gRPC calls, the rest is 404."""

import uuid

import grpc
import httpx
import pytest
from sqlalchemy.engine import make_url

from pm.billing.bootstrap import create_http_app
from pm.common.pgadmin import drop_database
from pm.proto.billing.v1 import billing_pb2
from tests.support.servers import LiveServer


def test_health_is_up_with_the_database(database, metrics) -> None:
    with LiveServer(create_http_app(database, metrics)) as server:
        response = httpx.get(f"{server.url}/health", timeout=5)
    assert response.status_code == 200
    assert response.json()["status"] == "UP"
    assert response.json()["components"]["database"] == {"status": "UP"}


def test_health_is_down_naming_the_database_when_it_is_gone(database, metrics, postgres_databases) -> None:
    drop_database(postgres_databases.admin_url, make_url(database.url).database or "")
    with LiveServer(create_http_app(database, metrics)) as server:
        response = httpx.get(f"{server.url}/health", timeout=10)
    assert response.status_code == 503
    assert response.json()["status"] == "DOWN"
    assert response.json()["failing"] == ["database"]


def test_metrics_count_grpc_calls_by_method_and_code(database, metrics, stub) -> None:
    stub.CreateBillingAccount(
        billing_pb2.CreateBillingAccountRequest(
            patient_id=str(uuid.uuid4()), name="Jane", email="jane@example.com"
        ),
        timeout=5,
    )
    with pytest.raises(grpc.RpcError):
        stub.GetBillingAccount(billing_pb2.GetBillingAccountRequest(patient_id=str(uuid.uuid4())), timeout=5)
    with LiveServer(create_http_app(database, metrics)) as server:
        response = httpx.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    text = response.text
    create = (
        'pm_grpc_requests_total{code="OK",method="/pm.billing.v1.BillingService/CreateBillingAccount"} 1.0'
    )
    missing = 'pm_grpc_requests_total{code="NOT_FOUND",method="/pm.billing.v1.BillingService/GetBillingAccount"} 1.0'
    assert create in text
    assert missing in text


def test_any_other_path_is_a_404_problem(database, metrics) -> None:
    with LiveServer(create_http_app(database, metrics)) as server:
        response = httpx.post(f"{server.url}/accounts", json={}, timeout=5)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
    assert response.headers["x-request-id"]
