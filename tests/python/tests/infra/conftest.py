from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pm.infra.deploy import Options, client_factory, deploy
from pm.infra.emulator import Emulator

STACK = "pmtest"


@dataclass
class Deployed:
    outputs: dict[str, str]
    client: Any

    def __call__(self, service: str) -> Any:
        return self.client(service)


@pytest.fixture(scope="package")
def deployed() -> Iterator[Deployed]:
    """The stack deployed once to a fresh embedded emulator, as the deploy command does it."""
    with Emulator() as emulator:
        make_client = client_factory(
            emulator.endpoint_url,
            "us-east-1",
            {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"},
        )
        outputs = deploy(
            make_client, Options(stack_name=STACK, image_tag="1.2.3", poll_seconds=0.2, timeout_seconds=120)
        )
        yield Deployed(outputs, make_client)
