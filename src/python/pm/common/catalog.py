"""The five services as the tools that run them all see them (the devstack, the AWS stack): one list.

Each names its port variables with their defaults, and what it needs around it: a database of its own,
the broker, auth's keys, the peers it calls. Start order: the token issuer and billing first, then their
users, the public entry point last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port_var: str
    port: int
    extra_ports: Mapping[str, int] = field(default_factory=dict)
    owns_database: bool = False
    uses_kafka: bool = False
    verifies_tokens: bool = False
    peers: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.name.capitalize()

    @property
    def database_var(self) -> str:
        return f"PM_{self.name.upper()}_DATABASE_URL"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth", "PM_AUTH_PORT", 4005, owns_database=True),
    ServiceSpec(
        "billing", "PM_BILLING_PORT", 4001, extra_ports={"PM_BILLING_GRPC_PORT": 9001}, owns_database=True
    ),
    ServiceSpec(
        "patient",
        "PM_PATIENT_PORT",
        4000,
        owns_database=True,
        uses_kafka=True,
        verifies_tokens=True,
        peers=("auth", "billing"),
    ),
    ServiceSpec(
        "analytics",
        "PM_ANALYTICS_PORT",
        4002,
        owns_database=True,
        uses_kafka=True,
        verifies_tokens=True,
        peers=("auth",),
    ),
    ServiceSpec(
        "gateway",
        "PM_GATEWAY_PORT",
        4004,
        verifies_tokens=True,
        peers=("auth", "patient", "analytics"),
    ),
)
BY_NAME = {spec.name: spec for spec in SERVICES}
