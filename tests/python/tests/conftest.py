import os

import pytest

from pm.common.testing import kafka_bootstrap, kafka_broker, postgres_databases, postgres_url  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long test (fault injection, whole system); PM_SKIP_SLOW=1 skips"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PM_SKIP_SLOW") != "1":
        return
    skip = pytest.mark.skip(reason="PM_SKIP_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
