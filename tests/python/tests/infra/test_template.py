"""The template itself: valid for cfn-lint, and the settings the emulator cannot show."""

import json
from typing import Any
from urllib.parse import urlsplit

import pytest
from cfnlint.api import ManualArgs, lint

from pm.infra.stack import SERVICES, container_environment, template_json


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads(template_json())


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == kind}


def test_cfn_lint_reports_nothing() -> None:
    matches = lint(template_json(), config=ManualArgs(regions=["us-east-1", "eu-west-1"]))
    assert [str(m) for m in matches] == []


def test_every_task_runs_on_fargate_with_awsvpc_and_private_subnets(template: dict[str, Any]) -> None:
    tasks = resources_of(template, "AWS::ECS::TaskDefinition")
    services = resources_of(template, "AWS::ECS::Service")
    assert len(tasks) == len(services) == len(SERVICES)
    for task in tasks.values():
        assert task["RequiresCompatibilities"] == ["FARGATE"]
        assert task["NetworkMode"] == "awsvpc"
        assert task["Cpu"] == {"Ref": "TaskCpu"} and task["Memory"] == {"Ref": "TaskMemoryMiB"}
    for service in services.values():
        assert service["LaunchType"] == "FARGATE"
        network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        assert network["Subnets"] == [{"Ref": "PrivateSubnet1"}, {"Ref": "PrivateSubnet2"}]
        assert "RegistryArn" in service["ServiceRegistries"][0]


def test_only_the_gateway_is_behind_the_load_balancer_with_a_health_check_that_exists(
    template: dict[str, Any],
) -> None:
    services = resources_of(template, "AWS::ECS::Service")
    linked = {k: v["LoadBalancers"] for k, v in services.items() if "LoadBalancers" in v}
    assert linked == {
        "GatewayService": [
            {
                "ContainerName": "gateway",
                "ContainerPort": 4004,
                "TargetGroupArn": {"Ref": "GatewayTargetGroup"},
            }
        ]
    }
    assert template["Resources"]["GatewayService"]["DependsOn"] == ["HttpsListener"]
    (target_group,) = resources_of(template, "AWS::ElasticLoadBalancingV2::TargetGroup").values()
    # Readiness behind the balancer; liveness (what ECS replaces a task on) in every container.
    assert target_group["HealthCheckPath"] == "/health"
    assert target_group["TargetType"] == "ip" and target_group["Port"] == 4004
    for definition in resources_of(template, "AWS::ECS::TaskDefinition").values():
        for container in definition["ContainerDefinitions"]:
            command = " ".join(container["HealthCheck"]["Command"])
            assert "/health/live'" in command, container["Name"]
    (balancer,) = resources_of(template, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert balancer["Scheme"] == "internet-facing"
    assert balancer["Subnets"] == [{"Ref": "PublicSubnet1"}, {"Ref": "PublicSubnet2"}]


def test_only_public_subnets_give_public_addresses(template: dict[str, Any]) -> None:
    # The emulator drops MapPublicIpOnLaunch, so it is checked here.
    subnets = resources_of(template, "AWS::EC2::Subnet")
    assert {k: v.get("MapPublicIpOnLaunch", False) for k, v in subnets.items()} == {
        "PublicSubnet1": True,
        "PublicSubnet2": True,
        "PrivateSubnet1": False,
        "PrivateSubnet2": False,
    }


def test_databases_are_private_encrypted_and_take_passwords_from_secrets_manager(
    template: dict[str, Any],
) -> None:
    databases = resources_of(template, "AWS::RDS::DBInstance")
    assert set(databases) == {"AuthDatabase", "PatientDatabase", "BillingDatabase", "AnalyticsDatabase"}
    for name, db in databases.items():
        assert db["PubliclyAccessible"] is False and db["StorageEncrypted"] is True
        assert db["Port"] == "5432"
        assert db["DBInstanceClass"] == {"Ref": "DatabaseInstanceClass"}
        password = db["MasterUserPassword"]["Fn::Sub"]
        assert password.startswith("{{resolve:secretsmanager:${") and name in password
    assert template["Parameters"]["DatabaseInstanceClass"]["Default"] == "db.t3.micro"


def test_kafka_clients_get_the_brokers_only_once_known(template: dict[str, Any]) -> None:
    services = resources_of(template, "AWS::ECS::Service")
    for spec in SERVICES:
        desired = services[f"{spec.title}Service"]["DesiredCount"]
        if spec.uses_kafka:
            assert desired == {"Fn::If": ["HasKafkaBootstrap", {"Ref": "DesiredCount"}, 0]}
        else:
            assert desired == {"Ref": "DesiredCount"}


def test_service_settings_use_the_pinned_names_and_cloud_map_addresses() -> None:
    by_name = {spec.name: container_environment(spec) for spec in SERVICES}
    assert by_name["gateway"]["PM_PATIENT_URL"] == "http://patient.pm.local:4000"
    assert by_name["gateway"]["PM_ANALYTICS_URL"] == "http://analytics.pm.local:4002"
    assert by_name["patient"]["PM_BILLING_GRPC_TARGET"] == "billing.pm.local:9001"
    assert by_name["patient"]["PM_JWKS_URL"] == "http://auth.pm.local:4005/.well-known/jwks.json"
    assert by_name["auth"]["PM_AUTH_SEED_DEMO_USER"] == "false"
    assert by_name["billing"] == {
        "PM_ENV": "production",
        "PM_HOST": "0.0.0.0",  # noqa: S104
        "PM_LOG_LEVEL": "INFO",
        "PM_BILLING_PORT": "4001",
        "PM_BILLING_GRPC_PORT": "9001",
        "PM_TRUSTED_PROXIES": "10.0.10.0/24,10.0.11.0/24",
    }


def listeners(template: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {v["Port"]: v for v in resources_of(template, "AWS::ElasticLoadBalancingV2::Listener").values()}


def test_the_load_balancer_answers_https_with_the_certificate_parameter(template: dict[str, Any]) -> None:
    https = listeners(template)[443]
    assert https["Protocol"] == "HTTPS"
    assert https["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert https["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": "GatewayTargetGroup"}}]
    assert template["Parameters"]["CertificateArn"]["Type"] == "String"
    assert "Default" not in template["Parameters"]["CertificateArn"]
    ingress = template["Resources"]["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert sorted(rule["FromPort"] for rule in ingress) == [80, 443]


def test_plain_http_only_redirects_to_https(template: dict[str, Any]) -> None:
    http = listeners(template)[80]
    assert http["Protocol"] == "HTTP"
    assert http["DefaultActions"] == [
        {
            "Type": "redirect",
            "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"},
        }
    ]
    assert set(listeners(template)) == {80, 443}


def test_metrics_are_not_forwarded_from_the_load_balancer(template: dict[str, Any]) -> None:
    (rule,) = resources_of(template, "AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert rule["ListenerArn"] == {"Ref": "HttpsListener"}
    assert rule["Conditions"][0]["PathPatternConfig"]["Values"] == ["/metrics", "/metrics/*"]
    (action,) = rule["Actions"]
    assert action["Type"] == "fixed-response"
    assert action["FixedResponseConfig"]["StatusCode"] == "404"


def test_no_task_seeds_the_demo_user_and_every_task_runs_in_production(template: dict[str, Any]) -> None:
    for task in resources_of(template, "AWS::ECS::TaskDefinition").values():
        (container,) = task["ContainerDefinitions"]
        environment = {e["Name"]: e["Value"] for e in container["Environment"] if "Name" in e}
        assert environment["PM_ENV"] == "production"
        assert environment.get("PM_AUTH_SEED_DEMO_USER", "false") == "false"
        if container["Name"] == "auth":
            assert environment["PM_AUTH_SEED_DEMO_USER"] == "false"
            assert {s["Name"] for s in container["Secrets"]} >= {"PM_JWT_PRIVATE_KEY"}


def test_database_urls_require_tls(template: dict[str, Any]) -> None:
    urls = {
        k: v["SecretString"]["Fn::Sub"][0]
        for k, v in resources_of(template, "AWS::SecretsManager::Secret").items()
        if k.endswith("DatabaseUrl")
    }
    assert len(urls) == 4
    for url in urls.values():
        assert url.startswith("postgresql+psycopg2://") and url.endswith("?sslmode=require")


def test_kafka_is_tls_only_and_its_clients_use_ssl(template: dict[str, Any]) -> None:
    (cluster,) = resources_of(template, "AWS::MSK::Cluster").values()
    assert cluster["EncryptionInfo"]["EncryptionInTransit"] == {"ClientBroker": "TLS", "InCluster": True}
    (ingress,) = template["Resources"]["KafkaSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (9094, 9094)
    for spec in SERVICES:
        environment = container_environment(spec)
        assert (environment.get("PM_KAFKA_TLS") == "true") is spec.uses_kafka


def test_keys_are_fetched_inside_the_private_namespace_or_over_https() -> None:
    for spec in SERVICES:
        url = container_environment(spec).get("PM_JWKS_URL")
        if url is not None:
            host = urlsplit(url).hostname or ""
            assert url.startswith("https://") or host.endswith(".pm.local"), url


def test_billing_and_patient_share_a_generated_service_token(template: dict[str, Any]) -> None:
    token = template["Resources"]["BillingServiceToken"]["Properties"]
    assert token["GenerateSecretString"]["PasswordLength"] >= 32
    holders = set()
    for task in resources_of(template, "AWS::ECS::TaskDefinition").values():
        (container,) = task["ContainerDefinitions"]
        for secret in container.get("Secrets", []):
            if secret["Name"] == "PM_BILLING_SERVICE_TOKEN":
                assert secret["ValueFrom"] == {"Ref": "BillingServiceToken"}
                holders.add(container["Name"])
    assert holders == {"billing", "patient"}


def test_the_gateway_believes_the_balancer_and_the_services_believe_the_gateway(
    template: dict[str, Any],
) -> None:
    """Issue 12, finding 3: behind the load balancer every request looked like the balancer's."""
    subnets = {
        name: resource["Properties"]["CidrBlock"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::EC2::Subnet"
    }
    public = sorted(cidr for name, cidr in subnets.items() if name.startswith("Public"))
    private = sorted(cidr for name, cidr in subnets.items() if name.startswith("Private"))
    balancer = next(r for r in template["Resources"].values() if r["Type"].endswith("LoadBalancer"))
    assert sorted(s["Ref"] for s in balancer["Properties"]["Subnets"]) == ["PublicSubnet1", "PublicSubnet2"]
    for spec in SERVICES:
        environment = container_environment(spec)
        if spec.name == "gateway":
            assert environment["PM_GATEWAY_TRUSTED_PROXIES"].split(",") == public
            assert "PM_TRUSTED_PROXIES" not in environment
        else:
            assert environment["PM_TRUSTED_PROXIES"].split(",") == private
