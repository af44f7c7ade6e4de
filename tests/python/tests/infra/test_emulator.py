"""The emulator's replacements of moto internals (pm.infra.emulator) still fit the moto installed.

Each test fails when a moto release changes what a replacement assumes (a name, a signature), or starts
doing what the emulator adds (then the emulator's addition should be dropped, not kept beside moto's).
"""

from __future__ import annotations

import inspect

from moto.cloudformation import parsing
from moto.cloudformation.parsing import ResourceMap
from moto.core.common_models import CloudFormationModel
from moto.ecs.models import TaskDefinition
from moto.kafka.models import KafkaBackend
from moto.kafka.responses import KafkaResponse

from pm.infra import emulator

UPDATE_PARAMETERS = [
    "original_resource",
    "new_resource_name",
    "cloudformation_json",
    "account_id",
    "region_name",
]


def _moto_types() -> set[str]:
    """CloudFormation types moto itself implements (its own models, not the emulator's)."""
    found: set[str] = set()
    pending = list(CloudFormationModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model.__module__.startswith("moto."):
            try:
                found.add(model.cloudformation_type())
            except (NotImplementedError, TypeError):
                continue
    return found


def test_moto_still_lacks_the_cloudformation_types_the_emulator_adds() -> None:
    native = _moto_types()
    assert "AWS::ECS::Service" in native  # the scan does see moto's own models
    for model in emulator._EXTENSIONS:
        assert model.cloudformation_type() not in native, f"moto now supports {model.cloudformation_type()}"


def test_moto_keeps_its_model_map_as_one_cached_dict() -> None:
    # install_extensions adds the emulator's models to the dict this function returns, once per process.
    assert hasattr(parsing.get_model_map, "cache_info")
    assert parsing.get_model_map() is parsing.get_model_map()
    emulator.install_extensions()
    for model in emulator._EXTENSIONS:
        assert parsing.get_model_map()[model.cloudformation_type()] is model


def test_moto_still_lacks_get_bootstrap_brokers() -> None:
    assert emulator.MOTO_ORIGINALS["KafkaResponse.get_bootstrap_brokers"] is None
    assert not hasattr(KafkaBackend, "get_bootstrap_brokers")
    assert isinstance(inspect.getattr_static(KafkaResponse, "kafka_backend"), property)  # read by the answer


def test_the_replaced_moto_methods_keep_their_signatures() -> None:
    diff = emulator.MOTO_ORIGINALS["ResourceMap.build_resource_diff"]
    assert list(inspect.signature(diff).parameters) == ["self", "other_template", "parameters"]
    original = emulator.MOTO_ORIGINALS["TaskDefinition.update_from_cloudformation_json"]
    assert list(inspect.signature(original).parameters) == UPDATE_PARAMETERS
    emulator.install_extensions()
    assert ResourceMap.build_resource_diff is emulator._resource_diff_with_dependents
    assert inspect.getattr_static(TaskDefinition, "update_from_cloudformation_json").__func__ is (
        emulator._replace_task_definition
    )
