"""The stack deployed to the embedded emulator, checked through the ordinary AWS APIs."""

import json
import re

import pytest

from pm.infra.deploy import client_factory, main
from pm.infra.emulator import Emulator
from pm.infra.stack import SERVICES

from .conftest import STACK, Deployed

DATA_OWNERS = ["analytics", "auth", "billing", "patient"]


def test_the_stack_completes_and_reports_its_load_balancer(deployed: Deployed) -> None:
    (stack,) = deployed("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
    (balancer,) = deployed("elbv2").describe_load_balancers(Names=[f"{STACK}-alb"])["LoadBalancers"]
    assert deployed.outputs["LoadBalancerDnsName"] == balancer["DNSName"]
    assert balancer["Scheme"] == "internet-facing"


def test_network_has_public_and_private_subnets_in_two_zones(deployed: Deployed) -> None:
    ec2 = deployed("ec2")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{STACK}-vpc"]}])["Vpcs"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
    names = {next(t["Value"] for t in s["Tags"] if t["Key"] == "Name"): s for s in subnets}
    assert set(names) == {f"{STACK}-{kind}-{n}" for kind in ("public", "private") for n in (1, 2)}
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    assert len(ec2.describe_nat_gateways()["NatGateways"]) == 2


def test_each_data_owning_service_has_a_postgres_instance_with_a_health_check(deployed: Deployed) -> None:
    instances = deployed("rds").describe_db_instances()["DBInstances"]
    by_id = {i["DBInstanceIdentifier"]: i for i in instances}
    assert set(by_id) == {f"{STACK}-{name}-db" for name in DATA_OWNERS}
    for name in DATA_OWNERS:
        instance = by_id[f"{STACK}-{name}-db"]
        assert instance["Engine"] == "postgres"
        assert instance["DBInstanceClass"] == "db.t3.micro"
        assert instance["Endpoint"]["Port"] == 5432
        assert instance["DBName"] == name
        assert instance["PubliclyAccessible"] is False
    checks = deployed("route53").list_health_checks()["HealthChecks"]
    targets = {
        (c["HealthCheckConfig"]["FullyQualifiedDomainName"], c["HealthCheckConfig"]["Port"]) for c in checks
    }
    assert targets == {(i["Endpoint"]["Address"], 5432) for i in instances}


def test_database_urls_are_secrets_built_from_the_generated_password_and_endpoint(deployed: Deployed) -> None:
    secrets = deployed("secretsmanager")
    credentials = json.loads(
        secrets.get_secret_value(SecretId=f"{STACK}/patient/database-credentials")["SecretString"]
    )
    assert credentials["username"] == "pm" and len(credentials["password"]) == 32
    assert credentials["password"].isalnum()
    url = secrets.get_secret_value(SecretId=f"{STACK}/patient/database-url")["SecretString"]
    (instance,) = deployed("rds").describe_db_instances(DBInstanceIdentifier=f"{STACK}-patient-db")[
        "DBInstances"
    ]
    assert url.startswith("postgresql+psycopg2://pm:")
    assert url.endswith(f"@{instance['Endpoint']['Address']}:5432/patient?sslmode=require")


def test_kafka_cluster_exists_and_its_brokers_reach_the_kafka_clients(deployed: Deployed) -> None:
    (listed,) = deployed("kafka").list_clusters(ClusterNameFilter=f"{STACK}-kafka")["ClusterInfoList"]
    cluster = deployed("kafka").describe_cluster(ClusterArn=listed["ClusterArn"])["ClusterInfo"]
    assert cluster["NumberOfBrokerNodes"] == 2
    assert cluster["BrokerNodeGroupInfo"]["InstanceType"] == "kafka.t3.small"
    assert deployed.outputs["KafkaClusterArn"] == cluster["ClusterArn"]
    brokers = deployed("kafka").get_bootstrap_brokers(ClusterArn=cluster["ClusterArn"])[
        "BootstrapBrokerStringTls"
    ]
    for name in ("patient", "analytics"):
        environment = container_of(deployed, name)["environment"]
        assert {"name": "PM_KAFKA_BOOTSTRAP_SERVERS", "value": brokers} in environment


def test_cloud_map_namespace_names_every_service(deployed: Deployed) -> None:
    discovery = deployed("servicediscovery")
    (namespace,) = discovery.list_namespaces()["Namespaces"]
    assert namespace["Name"] == "pm.local" and namespace["Type"] == "DNS_PRIVATE"
    assert deployed.outputs["ServiceNamespaceId"] == namespace["Id"]
    services = discovery.list_services()["Services"]
    assert sorted(s["Name"] for s in services) == sorted(spec.name for spec in SERVICES)


def test_ecs_runs_one_service_per_backend_with_wired_settings_and_logs(deployed: Deployed) -> None:
    ecs = deployed("ecs")
    assert ecs.list_clusters()["clusterArns"][0].endswith(f"cluster/{STACK}-cluster")
    names = [spec.name for spec in SERVICES]
    services = ecs.describe_services(cluster=f"{STACK}-cluster", services=names)["services"]
    assert sorted(s["serviceName"] for s in services) == sorted(names)
    assert all(s["desiredCount"] == 1 for s in services)
    for spec in SERVICES:
        container = container_of(deployed, spec.name)
        assert container["image"] == f"pm-{spec.name}:1.2.3"
        assert spec.port in [p["containerPort"] for p in container["portMappings"]]
        environment = {e["name"]: e["value"] for e in container["environment"]}
        assert environment["PM_HOST"] == "0.0.0.0" and environment["PM_ENV"] == "production"  # noqa: S104
        assert environment[spec.port_var] == str(spec.port)
        secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", [])}
        if spec.owns_database:
            assert secrets[spec.database_var].split(":")[-1].startswith(f"{STACK}/{spec.name}/database-url")
        log = container["logConfiguration"]
        assert log["logDriver"] == "awslogs"
        assert log["options"]["awslogs-group"] == f"/ecs/{STACK}/{spec.name}"
        assert log["options"]["awslogs-stream-prefix"] == spec.name
    auth = container_of(deployed, "auth")
    auth_secrets = {s["name"] for s in auth["secrets"]}
    assert auth_secrets == {"PM_AUTH_DATABASE_URL", "PM_JWT_PRIVATE_KEY"}
    assert {"name": "PM_AUTH_SEED_DEMO_USER", "value": "false"} in auth["environment"]
    token = deployed("secretsmanager").get_secret_value(SecretId=f"{STACK}/billing/service-token")
    assert len(token["SecretString"]) == 48
    groups = deployed("logs").describe_log_groups(logGroupNamePrefix=f"/ecs/{STACK}/")["logGroups"]
    assert sorted(g["logGroupName"] for g in groups) == sorted(f"/ecs/{STACK}/{n}" for n in names)
    assert all(g["retentionInDays"] == 30 for g in groups)


def test_load_balancer_forwards_https_to_the_gateway_port_and_redirects_http(deployed: Deployed) -> None:
    elbv2 = deployed("elbv2")
    (target_group,) = elbv2.describe_target_groups(Names=[f"{STACK}-gateway"])["TargetGroups"]
    assert target_group["Port"] == 4004 and target_group["TargetType"] == "ip"
    assert target_group["HealthCheckPath"] == "/health"
    (balancer,) = elbv2.describe_load_balancers(Names=[f"{STACK}-alb"])["LoadBalancers"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    by_port = {listener["Port"]: listener for listener in listeners}
    assert set(by_port) == {80, 443}
    https = by_port[443]
    assert https["Protocol"] == "HTTPS"
    assert https["DefaultActions"][0]["TargetGroupArn"] == target_group["TargetGroupArn"]
    (certificate,) = https["Certificates"]
    described = deployed("acm").describe_certificate(CertificateArn=certificate["CertificateArn"])
    assert described["Certificate"]["DomainName"] == f"{STACK}.pm.invalid"
    assert by_port[80]["DefaultActions"][0]["Type"] == "redirect"
    assert by_port[80]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    rules = elbv2.describe_rules(ListenerArn=https["ListenerArn"])["Rules"]
    metrics = [r for r in rules if not r["IsDefault"]]
    assert [a["Type"] for r in metrics for a in r["Actions"]] == ["fixed-response"]


def test_deploy_command_prints_the_load_balancer_name(capsys) -> None:
    main(["--stack-name", "cli", "--timeout-minutes", "2"])
    out, err = capsys.readouterr()
    assert re.fullmatch(r"cli-alb-[\w.-]+\.elb\.amazonaws\.com\n", out)
    assert "creating stack cli" in err and "Kafka brokers: b-1.cli-kafka" in err


def test_deploy_to_an_unreachable_endpoint_fails_with_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--endpoint-url", "http://127.0.0.1:9", "--timeout-minutes", "0.1"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("deploy: ") and "Traceback" not in err


def container_of(deployed: Deployed, service: str) -> dict:
    ecs = deployed("ecs")
    (described,) = ecs.describe_services(cluster=f"{STACK}-cluster", services=[service])["services"]
    definition = ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]
    return definition["containerDefinitions"][0]


def test_deploy_command_targets_a_given_endpoint_with_the_usual_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    with Emulator() as emulator:
        main(["--endpoint-url", emulator.endpoint_url, "--stack-name", "remote", "--image-tag", "9"])
        out = capsys.readouterr().out
        make_client = client_factory(emulator.endpoint_url, "us-east-1")
        (balancer,) = make_client("elbv2").describe_load_balancers(Names=["remote-alb"])["LoadBalancers"]
        assert out == balancer["DNSName"] + "\n"
        secret = make_client("secretsmanager").describe_secret(SecretId="remote/auth/jwt-private-key")
        assert secret["ARN"].startswith("arn:aws:secretsmanager:")
