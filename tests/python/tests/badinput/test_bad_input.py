"""Bad input through the gateway (valid token) and straight to each service: a clear 4xx problem, nothing
stored half-way; hostile strings stored verbatim and returned as JSON; billing's gRPC and the patient topic
refuse or park what they cannot read and keep serving."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaProducer

from pm.proto.billing.v1 import billing_pb2
from tests.reliability.harness import System, patient_body, wait_until, write_figures

pytestmark = pytest.mark.slow
TRIED: Counter[str] = Counter()


def patient_bases(system: System) -> list[str]:
    return [system.gateway + "/api/patients", system.url("patient") + "/patients"]


def stored_patients(system: System) -> int:
    return int(system.sql("patient", "SELECT count(*) FROM patients")[0][0])


def assert_problem(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == response.status_code and body["title"]


@pytest.fixture(scope="module")
def client(token: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20.0, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def test_malformed_bodies_are_refused_and_nothing_is_stored(system: System, client: httpx.Client) -> None:
    before = stored_patients(system)
    json_type = {"Content-Type": "application/json"}
    nested = "[" * 100_000 + "]" * 100_000
    cases = {
        "oversized body": (b'{"name": "' + b"x" * 2_000_000 + b'"}', json_type, (413,)),
        "wrong content type": (json.dumps(patient_body()).encode(), {"Content-Type": "text/plain"}, (415,)),
        "form content type": (
            b"name=a&email=b",
            {"Content-Type": "application/x-www-form-urlencoded"},
            (415,),
        ),
        "deeply nested JSON": (
            json.dumps({**patient_body(), "name": "N"})[:-1].encode()
            + b', "address": '
            + nested.encode()
            + b"}",
            json_type,
            (400,),
        ),
        "invalid UTF-8": (b'{"name": "\xff\xfe", "email": "a@b.co"}', json_type, (400,)),
        "not JSON": (b"{name: 'x'", json_type, (400,)),
        "JSON array": (b"[1, 2]", json_type, (400,)),
        "NUL in a field": (json.dumps({**patient_body(), "name": "a\u0000b"}).encode(), json_type, (400,)),
    }
    wrong: list[str] = []
    for base in patient_bases(system):
        for kind, (body, headers, statuses) in cases.items():
            response = client.post(base, content=body, headers=headers)
            TRIED[kind] += 1
            try:
                assert_problem(response, *statuses)
            except AssertionError as err:
                wrong.append(f"{kind} at {base}: {err}")
    assert wrong == []
    assert stored_patients(system) == before


def test_bad_query_parameters_are_clear_4xx(system: System, client: httpx.Client) -> None:
    cases = {
        "negative page": {"page": "-1"},
        "negative size": {"size": "-5"},
        "enormous page": {"page": str(10**30)},
        "enormous size": {"size": str(10**9)},
        "non-numeric size": {"size": "ten"},
        "huge search": {"search": "a" * 20_000},
    }
    for base in patient_bases(system):
        for kind, params in cases.items():
            TRIED[kind] += 1
            assert_problem(client.get(base, params=params), 400, 414, 431)
    for base in (system.gateway + "/api/analytics/events", system.url("analytics") + "/analytics/events"):
        for limit in ("-1", "0", str(10**20), "x"):
            TRIED["bad analytics limit"] += 1
            assert_problem(client.get(base, params={"limit": limit}), 400)


def test_hostile_strings_are_stored_verbatim_and_returned_as_json(
    system: System, client: httpx.Client
) -> None:
    hostile = [
        "Robert'); DROP TABLE patients;--",
        "' OR '1'='1",
        '<script>alert("x")</script>',
        '"><img src=x onerror=alert(1)>',
        "Unicode \u2603 \u202e \U0001d518",
    ]
    for base in patient_bases(system):
        for value in hostile:
            body = {**patient_body(), "name": value[:100], "address": value}
            created = client.post(base, json=body)
            TRIED["SQL-injection / script string"] += 1
            assert created.status_code == 201, created.text
            assert created.headers["content-type"].startswith("application/json")
            fetched = client.get(f"{base}/{created.json()['id']}")
            assert fetched.json()["name"] == value[:100] and fetched.json()["address"] == value
            found = client.get(base, params={"search": value[:40]})
            assert found.status_code == 200
    assert (
        int(system.sql("patient", "SELECT count(*) FROM patients WHERE name = :n", n=hostile[0])[0][0]) == 2
    )


def test_billing_grpc_refuses_malformed_and_oversized_messages_and_stays_up(system: System) -> None:
    with grpc.insecure_channel(system.grpc_target) as channel:
        raw = channel.unary_unary(
            "/pm.billing.v1.BillingService/CreateBillingAccount",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        codes = {}
        for kind, payload in {
            "garbage bytes": b"\xff\xff\xff\xff\x0f\x00garbage",
            "truncated message": billing_pb2.CreateBillingAccountRequest(
                patient_id=str(uuid.uuid4()), name="n", email="e@example.com"
            ).SerializeToString()[:-3],
            "empty message": b"",
            "oversized message": b"\x0a" + b"\xff\xff\xff\x03" + b"x" * 8_000_000,
        }.items():
            with pytest.raises(grpc.RpcError) as refused:
                raw(payload, timeout=10.0)
            codes[kind] = refused.value.code().name
            TRIED[f"gRPC {kind}"] += 1
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5.0)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert codes["oversized message"] == "RESOURCE_EXHAUSTED"
    assert set(codes.values()) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED", "INTERNAL"}, codes
    write_figures("grpc_bad_messages", codes)


def test_garbage_on_the_patient_topic_is_parked_and_the_consumer_continues(
    system: System, client: httpx.Client
) -> None:
    producer = KafkaProducer(bootstrap_servers=system.bootstrap, request_timeout_ms=10_000)
    try:
        wrong = billing_pb2.BillingAccount(account_id="a", patient_id="p").SerializeToString()
        for payload in (b"\x00\x01garbage\xff", wrong, b""):
            producer.send("patient", key=str(uuid.uuid4()).encode(), value=payload).get(timeout=10)
            TRIED["Kafka undecodable message"] += 1
    finally:
        producer.close(5)
    wait_until(
        lambda: int(system.sql("analytics", "SELECT count(*) FROM dead_letter")[0][0]) >= 3, 30.0, "3 parked"
    )
    created = client.post(system.gateway + "/api/patients", json=patient_body("after-garbage"))
    assert created.status_code == 201
    pid = created.json()["id"]
    wait_until(
        lambda: bool(system.sql("analytics", "SELECT 1 FROM patient_event WHERE patient_id = :p", p=pid)),
        30.0,
        "the next real event counted",
    )
    assert system.healthy("analytics")


def test_zz_figures(system: System) -> None:
    # Last in the module: the tally of everything tried above, and the system still healthy.
    system.wait_healthy(timeout=10.0)
    assert sum(TRIED.values()) > 0
    write_figures("bad_input", {"tried_by_kind": dict(TRIED), "total": sum(TRIED.values())})
