"""Deploy the stack: `./pants run src/python/pm/infra:deploy [-- --endpoint-url URL]`.

Without an endpoint URL the stack goes to an AWS emulator started in this process. With one it goes
there (LocalStack: http://localhost:4566; real AWS: https://cloudformation.<region>.amazonaws.com) using
the usual AWS credential chain. Progress goes to stderr; the load balancer's DNS name is printed on
stdout at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, WaiterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pm.infra.emulator import Emulator
from pm.infra.stack import template_json

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
FAILED_STATUS_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE")


class DeployError(Exception):
    """The stack could not be deployed; the message says why."""


@dataclass(frozen=True)
class Options:
    stack_name: str = "pm"
    region: str = "us-east-1"
    image_prefix: str = "pm-"
    image_tag: str = "latest"
    desired_count: int = 1
    jwt_key_secret_arn: str | None = None
    certificate_arn: str | None = None
    kafka_bootstrap_servers: str | None = None
    poll_seconds: float = 15.0
    timeout_seconds: float = 90 * 60


ClientFactory = Callable[[str], Any]


def client_factory(
    endpoint_url: str | None, region: str, credentials: dict[str, str] | None = None
) -> ClientFactory:
    config = Config(
        region_name=region,
        connect_timeout=10,
        read_timeout=60,
        retries={"max_attempts": 5, "mode": "standard"},
    )
    session = boto3.session.Session(**(credentials or {}))

    def make(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, config=config)

    return make


def say(message: str) -> None:
    sys.stderr.write(f"deploy: {message}\n")
    sys.stderr.flush()


def ensure_jwt_key_secret(secretsmanager: Any, stack_name: str) -> str:
    """The ARN of auth's signing key secret, creating a fresh RSA key the first time."""
    name = f"{stack_name}/auth/jwt-private-key"
    try:
        return str(secretsmanager.describe_secret(SecretId=name)["ARN"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    say(f"created secret {name} with a new RSA signing key for auth")
    created = secretsmanager.create_secret(
        Name=name, SecretString=pem, Description="Private key auth signs tokens with (PEM)"
    )
    return str(created["ARN"])


def ensure_certificate(acm: Any, stack_name: str) -> str:
    """A self-signed certificate for the load balancer when none was given, imported into ACM once.

    Browsers warn about it: it lets a test stack answer HTTPS at all. Real deployments pass
    --certificate-arn (an ACM certificate for the site's own name)."""
    domain = f"{stack_name}.pm.invalid"
    for summary in acm.list_certificates()["CertificateSummaryList"]:
        if summary.get("DomainName") == domain:
            return str(summary["CertificateArn"])
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    imported = acm.import_certificate(
        Certificate=certificate.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    say(f"imported a self-signed certificate for {domain} (pass --certificate-arn for a real one)")
    return str(imported["CertificateArn"])


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def failure_reasons(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', e['ResourceStatus'])}"
        for e in events
        if e["ResourceStatus"].endswith("_FAILED")
    ]
    return "; ".join(reasons[:5]) or "no failure reason reported"


def wait_for(cloudformation: Any, stack_name: str, waiter_name: str, options: Options) -> None:
    waiter = cloudformation.get_waiter(waiter_name)
    attempts = max(1, int(options.timeout_seconds / options.poll_seconds))
    try:
        waiter.wait(
            StackName=stack_name, WaiterConfig={"Delay": options.poll_seconds, "MaxAttempts": attempts}
        )
    except WaiterError as exc:
        raise DeployError(
            f"stack {stack_name} did not complete ({exc}); {failure_reasons(cloudformation, stack_name)}"
        ) from None


def apply_stack(
    cloudformation: Any, template: str, parameters: list[dict[str, Any]], options: Options
) -> None:
    name = options.stack_name
    status = stack_status(cloudformation, name)
    if status is None:
        say(f"creating stack {name}")
        cloudformation.create_stack(
            StackName=name, TemplateBody=template, Parameters=parameters, Capabilities=CAPABILITIES
        )
        wait_for(cloudformation, name, "stack_create_complete", options)
        return
    if status.endswith(FAILED_STATUS_SUFFIXES) or status.endswith("_IN_PROGRESS"):
        raise DeployError(f"stack {name} is {status}; wait for it or delete it, then deploy again")
    say(f"updating stack {name} (was {status})")
    try:
        cloudformation.update_stack(
            StackName=name, TemplateBody=template, Parameters=parameters, Capabilities=CAPABILITIES
        )
    except ClientError as exc:
        if "No updates are to be performed" in str(exc):
            say("stack already up to date")
            return
        raise
    wait_for(cloudformation, name, "stack_update_complete", options)


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deploy(make_client: ClientFactory, options: Options) -> dict[str, str]:
    """Create or update the stack, then point the Kafka clients at the MSK brokers. Returns the outputs."""
    cloudformation = make_client("cloudformation")
    template = template_json()
    cloudformation.validate_template(TemplateBody=template)
    jwt_secret = options.jwt_key_secret_arn or ensure_jwt_key_secret(
        make_client("secretsmanager"), options.stack_name
    )
    certificate = options.certificate_arn or ensure_certificate(make_client("acm"), options.stack_name)
    values = {
        "CertificateArn": certificate,
        "ImageRepositoryPrefix": options.image_prefix,
        "ImageTag": options.image_tag,
        "DesiredCount": str(options.desired_count),
        "JwtPrivateKeySecretArn": jwt_secret,
        "KafkaBootstrapServers": options.kafka_bootstrap_servers or "",
    }
    apply_stack(cloudformation, template, to_parameters(values), options)
    outputs = stack_outputs(cloudformation, options.stack_name)
    if not options.kafka_bootstrap_servers:
        # CloudFormation cannot read an MSK cluster's broker addresses: ask Kafka, then tell the stack.
        # The TLS listeners: the cluster accepts nothing else.
        brokers = make_client("kafka").get_bootstrap_brokers(ClusterArn=outputs["KafkaClusterArn"])
        values["KafkaBootstrapServers"] = brokers["BootstrapBrokerStringTls"]
        say(f"Kafka brokers: {values['KafkaBootstrapServers']}")
        apply_stack(cloudformation, template, to_parameters(values), options)
        outputs = stack_outputs(cloudformation, options.stack_name)
    return outputs


def to_parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pm.infra.deploy", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--endpoint-url",
        help="AWS API endpoint (e.g. LocalStack http://localhost:4566); default: an embedded emulator",
    )
    parser.add_argument("--region", default=Options.region)
    parser.add_argument("--stack-name", default=Options.stack_name)
    parser.add_argument(
        "--image-prefix", default=Options.image_prefix, help="image repository prefix (<prefix><service>)"
    )
    parser.add_argument("--image-tag", default=Options.image_tag)
    parser.add_argument("--desired-count", type=int, default=Options.desired_count)
    parser.add_argument(
        "--jwt-key-secret-arn", help="existing secret with auth's PEM key (default: create one)"
    )
    parser.add_argument(
        "--certificate-arn",
        help="ACM certificate of the HTTPS listener (default: import a self-signed one, for tests)",
    )
    parser.add_argument("--kafka-bootstrap-servers", help="skip the MSK broker lookup and use these (TLS)")
    parser.add_argument("--timeout-minutes", type=float, default=Options.timeout_seconds / 60)
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="with the embedded emulator: keep serving it until Ctrl-C, to inspect the stack with AWS tools",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    embedded = args.endpoint_url is None
    # Each option of the same name as an argument comes from it (the arguments' defaults are the options').
    given = {field.name: getattr(args, field.name) for field in fields(Options) if hasattr(args, field.name)}
    options = Options(
        **given, poll_seconds=0.5 if embedded else 15.0, timeout_seconds=args.timeout_minutes * 60
    )
    try:
        if embedded:
            with Emulator() as emulator:
                say(f"embedded AWS emulator at {emulator.endpoint_url}")
                credentials = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}
                outputs = deploy(client_factory(emulator.endpoint_url, args.region, credentials), options)
                report(outputs)
                if args.keep_running:
                    serve_until_stopped(emulator.endpoint_url)
        else:
            report(deploy(client_factory(args.endpoint_url, args.region), options))
    except NoCredentialsError:
        sys.stderr.write("deploy: no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID)\n")
        sys.exit(1)
    except (DeployError, ClientError, BotoCoreError) as exc:
        sys.stderr.write(f"deploy: {exc}\n")
        sys.exit(1)


def report(outputs: dict[str, str]) -> None:
    say(f"stack ready: cluster {outputs.get('ClusterName')}, load balancer below")
    print(outputs["LoadBalancerDnsName"], flush=True)


def serve_until_stopped(endpoint_url: str) -> None:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    say(f"emulator serving at {endpoint_url} (credentials: any; Ctrl-C stops it)")
    stopped.wait()


if __name__ == "__main__":
    main()
