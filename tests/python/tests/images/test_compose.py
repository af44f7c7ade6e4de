"""docker/compose.yaml cannot run here (no Docker engine); its wiring is checked against the services."""

import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import pm.analytics.config
import pm.auth.config
import pm.billing.config
import pm.common.config
import pm.common.settings
import pm.common.tracing
import pm.gateway.config
import pm.patient.config

COMPOSE = Path("docker/compose.yaml")
INIT_SQL = Path("docker/postgres/init-databases.sql")
PORTS = {"gateway": 4004, "auth": 4005, "patient": 4000, "billing": 4001, "analytics": 4002}
GRPC_PORT = 9001
CONFIGS: dict[str, ModuleType] = {
    "auth": pm.auth.config,
    "patient": pm.patient.config,
    "billing": pm.billing.config,
    "analytics": pm.analytics.config,
    "gateway": pm.gateway.config,
}
DATA_OWNERS = ("auth", "patient", "billing", "analytics")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def settings_read_by(service: str) -> set[str]:
    """The variables a service reads: its own Settings, the kit's shared ones (`PM_{name}_PORT` spelled
    for this service) and the standard OTEL_* variables of the tracing setup."""
    sources = "".join(
        inspect.getsource(module)
        for module in (CONFIGS[service], pm.common.config, pm.common.settings, pm.common.tracing)
    )
    names = set(re.findall(r"\"((?:PM|OTEL)_[A-Z0-9_]+)\"", sources))
    shared = re.findall(r"f\"PM_\{name\}_([A-Z0-9_]+)\"", sources)
    return names | {f"PM_{service.upper()}_{suffix}" for suffix in shared}


def test_every_service_runs_its_image_beside_postgres_and_kafka(services: dict[str, Any]) -> None:
    assert set(services) == {*PORTS, "postgres", "kafka", "kafka-ui", "jaeger"}
    for name in PORTS:
        assert services[name]["image"] == f"pm-{name}:latest"


@pytest.mark.parametrize("service", sorted(PORTS))
def test_every_variable_is_one_the_service_reads(services: dict[str, Any], service: str) -> None:
    environment = services[service]["environment"]
    assert environment, service
    assert set(environment) - settings_read_by(service) == set()


@pytest.mark.parametrize("service", sorted(PORTS))
def test_ports_urls_and_health_checks_match_the_pinned_defaults(
    services: dict[str, Any], service: str
) -> None:
    environment = services[service]["environment"]
    port = PORTS[service]
    assert environment[f"PM_{service.upper()}_PORT"] == str(port)
    for name, value in environment.items():
        for peer, peer_port in PORTS.items():
            if f"://{peer}:" in value:
                assert f"://{peer}:{peer_port}" in value, name
    if "PM_BILLING_GRPC_TARGET" in environment:
        assert environment["PM_BILLING_GRPC_TARGET"] == f"billing:{GRPC_PORT}"
    if "PM_JWKS_URL" in environment:
        assert environment["PM_JWKS_URL"] == f"http://auth:{PORTS['auth']}/.well-known/jwks.json"
    if "PM_KAFKA_BOOTSTRAP_SERVERS" in environment:
        assert environment["PM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    # Readiness (not /health/live): dependants start once the service can serve.
    assert f"http://127.0.0.1:{port}/health'" in " ".join(services[service]["healthcheck"]["test"])


def test_only_the_gateway_is_published_and_the_operator_uis_on_loopback(services: dict[str, Any]) -> None:
    published = {name: spec["ports"] for name, spec in services.items() if "ports" in spec}
    assert published == {
        "gateway": ["4004:4004"],
        "kafka-ui": ["127.0.0.1:8080:8080"],
        "jaeger": ["127.0.0.1:16686:16686"],
    }


def test_kafka_ui_reads_the_compose_broker_with_the_event_schema(services: dict[str, Any]) -> None:
    ui = services["kafka-ui"]
    assert ui["image"].startswith("ghcr.io/kafbat/kafka-ui:v")
    environment = ui["environment"]
    assert (
        environment["KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]
        == services["patient"]["environment"]["PM_KAFKA_BOOTSTRAP_SERVERS"]
    )
    assert ui["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    # The mounted folder holds the schema the topic is decoded with.
    mount, target = ui["volumes"][0].split(":")[:2]
    assert target == environment["KAFKA_CLUSTERS_0_SERDE_0_PROPERTIES_PROTOBUFFILESDIR"]
    proto = list((COMPOSE.parent / mount).glob("*.proto"))
    assert proto, mount
    message = environment["KAFKA_CLUSTERS_0_SERDE_0_PROPERTIES_PROTOBUFMESSAGENAMEBYTOPIC_PATIENT"]
    package, _, name = message.rpartition(".")
    assert any(f"package {package};" in p.read_text() and f"message {name} " in p.read_text() for p in proto)


def test_each_data_owner_has_its_own_postgres_database(services: dict[str, Any]) -> None:
    created = set(re.findall(r"CREATE DATABASE (\w+);", INIT_SQL.read_text()))
    assert created == set(DATA_OWNERS)
    mounted = " ".join(services["postgres"]["volumes"])
    assert "./postgres/init-databases.sql:/docker-entrypoint-initdb.d/" in mounted
    for service in DATA_OWNERS:
        url = services[service]["environment"][f"PM_{service.upper()}_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg2://pm:")
        assert url.endswith(f"@postgres:5432/{service}")
        assert "${PM_POSTGRES_PASSWORD:?" in url


def test_dependencies_wait_for_healthy_services_that_exist(services: dict[str, Any]) -> None:
    for name, spec in services.items():
        for dependency, condition in spec.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], dependency
    assert set(services["gateway"]["depends_on"]) == {"auth", "patient", "analytics"}
    assert set(services["patient"]["depends_on"]) == {"postgres", "kafka", "auth", "billing"}


def test_services_believe_forwarded_headers_from_the_gateway_only(services: dict[str, Any]) -> None:
    gateway_address = services["gateway"]["networks"]["default"]["ipv4_address"]
    for name in DATA_OWNERS:
        assert services[name]["environment"]["PM_TRUSTED_PROXIES"] == gateway_address
    # Published-port clients reach the gateway through Docker's proxy, which adds no X-Forwarded-For:
    # trusting the network would let them name any address.
    assert "PM_GATEWAY_TRUSTED_PROXIES" not in services["gateway"]["environment"]
