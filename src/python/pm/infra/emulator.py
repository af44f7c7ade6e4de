"""An AWS API emulator in this process: moto's server, taught the resources this stack needs.

moto's CloudFormation silently skips MSK clusters, Cloud Map namespaces and services and Secrets Manager
secrets (a `Ref` to them becomes empty), and its Kafka API lacks GetBootstrapBrokers. The models below
create those resources in moto's own backends, so that the stack deploys completely and every resource
can be listed through the ordinary AWS APIs. On a stack update moto only revisits resources that name a
changed parameter; like CloudFormation, the emulator here also revisits what depends on them (through
`Ref`, `Fn::GetAtt`, `Fn::Sub`, conditions).

This is the one module that touches moto's internals, because moto has no public way to add a
CloudFormation resource type or an API operation: its server mode (`ThreadedMotoServer`, used below),
its settings and its `/moto-api/` endpoints (reset, seeding, state transitions) cover none of it. What moto
covers is listed at https://docs.getmoto.org/en/latest/docs/services/cloudformation.html (supported
resource types) and https://docs.getmoto.org/en/latest/docs/services/kafka.html (`get_bootstrap_brokers`
not implemented); no upstream issue asks for these (searched 2026-12-02: getmoto/moto issues). Three moto
attributes are replaced by `install_extensions` (Kafka's missing operation, the update diff, the task
definition update), and four models are added to the map behind `moto.cloudformation.parsing.
get_model_map()`. Each replacement was checked to be still needed on moto 5.2.5 (without it,
tests/python/tests/infra/test_deploy.py fails; a fourth, for ECS services, was not, and is gone: after an
update moto names a service's task definition by its family, which resolves to the same latest revision),
and tests/python/tests/infra/test_emulator.py fails when a moto release moves what they replace or starts
doing what they add (then the replacement should go).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
from typing import Any, ClassVar
from urllib.parse import unquote

from moto.cloudformation import parsing
from moto.cloudformation.parsing import ResourceMap
from moto.core.common_models import CloudFormationModel
from moto.ecs.models import TaskDefinition, ecs_backends
from moto.kafka.models import kafka_backends
from moto.kafka.responses import KafkaResponse
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.secretsmanager.models import secretsmanager_backends
from moto.servicediscovery.models import servicediscovery_backends


def _api_keys(value: Any) -> Any:
    """CloudFormation spells MSK's properties in PascalCase, the Kafka API (moto's backend) in camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: _api_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_api_keys(v) for v in value]
    return value


def _tags(properties: dict[str, Any]) -> list[dict[str, str]]:
    return list(properties.get("Tags") or [])


class _EmulatedResource(CloudFormationModel):
    """Shared plumbing: the physical id is what `Ref` returns, `attributes` what `Fn::GetAtt` returns."""

    # The CloudFormation type a subclass creates, and the property that names it ("" when none does).
    # (this base's own, as moto lists every subclass of CloudFormationModel: moto's placeholder)
    TYPE: ClassVar[str] = CloudFormationModel.cloudformation_type()
    NAME_PROPERTY: ClassVar[str] = ""
    # moto's backends of the resource's service, by account and region.
    BACKENDS: ClassVar[Any]

    def __init__(self, physical_resource_id: str, attributes: dict[str, str]) -> None:
        self.physical_resource_id = physical_resource_id
        self.attributes = attributes

    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.TYPE

    @classmethod
    def cloudformation_name_type(cls) -> str:
        return cls.NAME_PROPERTY

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> _EmulatedResource:
        backend = cls.BACKENDS[account_id][region_name]
        return cls.create(resource_name, cloudformation_json["Properties"], backend)

    @classmethod
    def create(cls, resource_name: str, props: Any, backend: Any) -> Any:
        """Create the resource in moto's backend from its CloudFormation `Properties`."""
        raise NotImplementedError

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return True

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.attributes[attribute_name]

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[override]
        cls,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Any:
        # These resources are created once per stack; an update keeps the existing one.
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        return None

    def is_created(self) -> bool:
        return True


class EmulatedKafkaCluster(_EmulatedResource):
    TYPE = "AWS::MSK::Cluster"
    NAME_PROPERTY = "ClusterName"
    BACKENDS = kafka_backends

    @classmethod
    def create(cls, resource_name: str, props: Any, backend: Any) -> EmulatedKafkaCluster:
        arn, _, _ = backend.create_cluster(
            broker_node_group_info=_api_keys(props["BrokerNodeGroupInfo"]),
            client_authentication=_api_keys(props.get("ClientAuthentication")),
            cluster_name=props.get("ClusterName", resource_name),
            configuration_info=_api_keys(props.get("ConfigurationInfo")),
            encryption_info=_api_keys(props.get("EncryptionInfo")),
            kafka_version=props["KafkaVersion"],
            number_of_broker_nodes=int(props["NumberOfBrokerNodes"]),
            tags=props.get("Tags"),
        )
        backend.clusters[arn].state = "ACTIVE"
        return cls(arn, {"Arn": arn})


class EmulatedPrivateDnsNamespace(_EmulatedResource):
    TYPE = "AWS::ServiceDiscovery::PrivateDnsNamespace"
    BACKENDS = servicediscovery_backends

    @classmethod
    def create(cls, resource_name: str, props: Any, backend: Any) -> EmulatedPrivateDnsNamespace:
        request_id = secrets.token_hex(8)
        backend.create_private_dns_namespace(
            name=props["Name"],
            creator_request_id=request_id,
            description=props.get("Description", ""),
            vpc=props["Vpc"],
            tags=_tags(props),
            properties=props.get("Properties") or {},
        )
        namespace = next(n for n in backend.namespaces.values() if n.creator_request_id == request_id)
        return cls(
            namespace.id,
            {
                "Id": namespace.id,
                "Arn": namespace.arn,
                "HostedZoneId": namespace.dns_properties.get("HostedZoneId", ""),
            },
        )


class EmulatedDiscoveryService(_EmulatedResource):
    TYPE = "AWS::ServiceDiscovery::Service"
    BACKENDS = servicediscovery_backends

    @classmethod
    def create(cls, resource_name: str, props: Any, backend: Any) -> EmulatedDiscoveryService:
        dns_config = dict(props.get("DnsConfig") or {})
        dns_config.setdefault("NamespaceId", props.get("NamespaceId"))
        service = backend.create_service(
            name=props.get("Name", resource_name),
            namespace_id=props.get("NamespaceId"),
            creator_request_id=secrets.token_hex(8),
            description=props.get("Description", ""),
            dns_config=dns_config,
            health_check_config=props.get("HealthCheckConfig"),
            health_check_custom_config=props.get("HealthCheckCustomConfig"),
            tags=_tags(props),
            service_type=props.get("Type"),
        )
        return cls(service.id, {"Id": service.id, "Arn": service.arn, "Name": service.name})


class EmulatedSecret(_EmulatedResource):
    TYPE = "AWS::SecretsManager::Secret"
    NAME_PROPERTY = "Name"
    BACKENDS = secretsmanager_backends

    @classmethod
    def create(cls, resource_name: str, props: Any, backend: Any) -> EmulatedSecret:
        value = props.get("SecretString")
        generate = props.get("GenerateSecretString")
        if generate:
            value = _generated_secret(generate)
        created = backend.create_secret(
            name=props.get("Name", resource_name),
            secret_string=value,
            secret_binary=None,
            description=props.get("Description"),
            tags=_tags(props),
            kms_key_id=props.get("KmsKeyId"),
            client_request_token=None,
            replica_regions=[],
            force_overwrite=False,
        )
        arn = json.loads(created)["ARN"]
        return cls(arn, {"Id": arn})


def _generated_secret(spec: dict[str, Any]) -> str:
    """What Secrets Manager's GenerateSecretString produces: random text, or a key added to a JSON template."""
    alphabet = string.ascii_letters + string.digits
    if str(spec.get("ExcludePunctuation", "false")).lower() != "true":
        alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
    excluded = spec.get("ExcludeCharacters", "")
    alphabet = "".join(c for c in alphabet if c not in excluded)
    password = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    template = spec.get("SecretStringTemplate")
    if not template:
        return password
    document = json.loads(template)
    document[spec["GenerateStringKey"]] = password
    return json.dumps(document)


def _get_bootstrap_brokers(self: KafkaResponse) -> str:
    arn = unquote(self.parsed_url.path.split("/clusters/")[-1].removesuffix("/bootstrap-brokers"))
    cluster = self.kafka_backend.clusters[arn]
    hosts = [
        f"b-{n}.{cluster.cluster_name}.{cluster.cluster_id[:6]}.c2.kafka.{cluster.region_name}.amazonaws.com"
        for n in range(1, int(cluster.number_of_broker_nodes or 1) + 1)
    ]
    return json.dumps(
        {
            "bootstrapBrokerString": ",".join(f"{h}:9092" for h in hosts),
            "bootstrapBrokerStringTls": ",".join(f"{h}:9094" for h in hosts),
        }
    )


_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)[.}]")


def _references(node: Any) -> set[str]:
    """Names of parameters, resources and conditions a piece of template refers to."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt" and isinstance(value, list):
                found.add(str(value[0]))
            elif key == "Fn::If" and isinstance(value, list):
                found.add(str(value[0]))
            elif key in ("Condition", "DependsOn"):
                found.update([value] if isinstance(value, str) else value)
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found.update(_SUB_NAME.findall(text))
            found |= _references(value)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


# What install_extensions replaces, as moto ships it (tests/python/tests/infra/test_emulator.py checks these).
_moto_resource_diff = ResourceMap.build_resource_diff
MOTO_ORIGINALS: dict[str, Any] = {
    "KafkaResponse.get_bootstrap_brokers": getattr(KafkaResponse, "get_bootstrap_brokers", None),
    "ResourceMap.build_resource_diff": ResourceMap.build_resource_diff,
    "TaskDefinition.update_from_cloudformation_json": TaskDefinition.update_from_cloudformation_json,
}


def _resource_diff_with_dependents(
    self: ResourceMap, other_template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    actions = _moto_resource_diff(self, other_template, parameters)
    # Seeded from changed parameters only: moto's own list also holds resources it merely normalised.
    new_parameters = parameters or {}
    changed = {p for p in new_parameters if self.input_parameters.get(p) != new_parameters[p]}
    for name, body in (other_template.get("Conditions") or {}).items():
        if _references(body) & changed:
            changed.add(name)
    resources = other_template["Resources"]
    grew = True
    while grew:
        grew = False
        for name, body in resources.items():
            if name in self._resource_json_map and name not in changed and _references(body) & changed:
                changed.add(name)
                grew = True
    modify = set(actions["Modify"]) | (changed & set(resources))
    ordered: list[str] = []

    def visit(name: str) -> None:
        # Dependencies first, so that each resource sees the updated physical ids of what it refers to.
        if name in ordered:
            return
        for ref in sorted(_references(resources[name]) & modify - {name}):
            visit(ref)
        if name not in ordered:
            ordered.append(name)

    for name in sorted(modify):
        visit(name)
    actions["Modify"] = ordered
    return actions


def _replace_task_definition(
    original_resource: TaskDefinition,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> TaskDefinition:
    # moto's own update registers the new revision with the template's PascalCase keys, which its API
    # then cannot read back: register it the way a create does instead.
    ecs_backends[account_id][region_name].deregister_task_definition(original_resource.arn)
    return TaskDefinition.create_from_cloudformation_json(
        new_resource_name, cloudformation_json, account_id, region_name
    )


_EXTENSIONS: tuple[type[_EmulatedResource], ...] = (
    EmulatedKafkaCluster,
    EmulatedPrivateDnsNamespace,
    EmulatedDiscoveryService,
    EmulatedSecret,
)


def install_extensions() -> None:
    """Register the models with moto's CloudFormation (idempotent)."""
    model_map = parsing.get_model_map()
    for model in _EXTENSIONS:
        model_map.setdefault(model.cloudformation_type(), model)
    KafkaResponse.get_bootstrap_brokers = _get_bootstrap_brokers  # type: ignore[attr-defined]
    ResourceMap.build_resource_diff = _resource_diff_with_dependents  # type: ignore[method-assign]
    TaskDefinition.update_from_cloudformation_json = staticmethod(_replace_task_definition)  # type: ignore[assignment]


class Emulator:
    """moto's server on a free loopback port, in a background thread of this process."""

    def __init__(self, port: int = 0) -> None:
        install_extensions()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.port = port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Emulator:
        # The server's per-request access log would drown the deploy command's own progress lines.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stop()
