"""No request stalls analytics: a 100 KB hostile value in any input is refused quickly while /health answers."""

from __future__ import annotations

import pytest

from tests.common.hostile import (
    HOSTILE_VALUES,
    QUERY_VALUES,
    SIZE,
    Hostile,
    Outcome,
    assert_refused_without_stall,
    get,
    header_safe,
    query,
    send_while_probing,
)
from tests.support.servers import LiveServer


def cases(token: str) -> dict[str, Hostile]:
    auth = {"Authorization": f"Bearer {token}"}
    found: dict[str, Hostile] = {}
    for shape, value in QUERY_VALUES.items():
        found[f"events limit {shape}"] = query("/analytics/events", {"limit": value}, auth)
        found[f"summary unknown parameter {shape}"] = query("/analytics/summary", {"filter": value}, auth)
    for shape, value in HOSTILE_VALUES.items():
        for path in ("/analytics/summary", "/analytics/events"):
            found[f"{path} token {shape}"] = get(path, {"Authorization": f"Bearer {header_safe(value)}"})
    return found


def test_a_hostile_value_in_any_input_is_refused_quickly_while_analytics_answers(
    api: LiveServer, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes: dict[str, Outcome] = {}
    for what, hostile in cases(token).items():
        outcomes[what] = send_while_probing(api.url, hostile)
        assert_refused_without_stall(outcomes[what], what)
    with capsys.disabled():
        slowest = max(outcomes.items(), key=lambda item: item[1].hostile_seconds)
        print(
            f"\nanalytics: {len(outcomes)} hostile requests; slowest hostile answer"
            f" {slowest[1].hostile_seconds:.3f} s ({slowest[0]}); slowest concurrent /health"
            f" {max(o.slowest_probe for o in outcomes.values()):.3f} s"
        )


def test_a_query_longer_than_the_http_server_takes_is_refused_before_the_app(
    api: LiveServer, token: str
) -> None:
    outcome = send_while_probing(
        api.url, query("/analytics/events", {"limit": "1" * SIZE}, {"Authorization": f"Bearer {token}"})
    )
    assert_refused_without_stall(outcome, "a 100 KB query", problem=False)
