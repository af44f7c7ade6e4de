"""No request stalls patient: a 100 KB hostile value in any field is refused quickly while /health answers."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from tests.common.hostile import (
    BODY_LIMIT_VALUE,
    HOSTILE_VALUES,
    QUERY_VALUES,
    Hostile,
    Outcome,
    assert_refused_without_stall,
    delete,
    get,
    header_safe,
    post,
    put,
    query,
    send_while_probing,
)
from tests.patient.conftest import Running, new_patient

BODY_FIELDS = ("name", "email", "address", "dateOfBirth", "registeredDate")


def cases(token: str, patient_id: str) -> dict[str, Hostile]:
    auth = {"Authorization": f"Bearer {token}"}
    one = f"/patients/{patient_id}"
    found: dict[str, Hostile] = {}
    for shape, value in HOSTILE_VALUES.items():
        for field in BODY_FIELDS:
            found[f"create {field} {shape}"] = post("/patients", new_patient(**{field: value}), auth)
            found[f"update {field} {shape}"] = put(one, new_patient(**{field: value}), auth)
        safe = header_safe(value)
        found[f"update If-Match {shape}"] = put(one, new_patient(), {**auth, "If-Match": safe})
        found[f"delete If-Match {shape}"] = delete(one, {**auth, "If-Match": safe})
        found[f"list token {shape}"] = get("/patients", {"Authorization": f"Bearer {safe}"})
    for field in ("name", "email"):
        found[f"create 1 MB {field}"] = post("/patients", new_patient(**{field: BODY_LIMIT_VALUE}), auth)
    for shape, value in QUERY_VALUES.items():
        for param in ("search", "sort", "page", "size", "cursor"):
            found[f"list {param} {shape}"] = query("/patients", {param: value}, auth)
        found[f"get id {shape}"] = get(f"/patients/{quote(value)}", auth)
    return found


def test_the_reported_email_does_not_freeze_patient(service: Running, mint: Callable[..., str]) -> None:
    body = new_patient(email="a@" + "a." * 32000 + " ")
    outcome = send_while_probing(service.url, post("/patients", body, {"Authorization": f"Bearer {mint()}"}))
    assert_refused_without_stall(outcome, "create with the reported email")
    assert outcome.response is not None
    assert outcome.response.json()["errors"] == {"email": "Email cannot exceed 254 characters"}


def test_a_hostile_value_in_any_field_is_refused_quickly_while_patient_answers(
    service: Running, client: httpx.Client, mint: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    created = client.post("/patients", json=new_patient())
    assert created.status_code == 201, created.text
    outcomes: dict[str, Outcome] = {}
    for what, hostile in cases(mint(), created.json()["id"]).items():
        outcomes[what] = send_while_probing(service.url, hostile)
        assert_refused_without_stall(outcomes[what], what)
    # Nothing hostile was stored: the one patient is unchanged.
    assert client.get(f"/patients/{created.json()['id']}").json() == created.json()
    with capsys.disabled():
        slowest = max(outcomes.items(), key=lambda item: item[1].hostile_seconds)
        print(
            f"\npatient: {len(outcomes)} hostile requests; slowest hostile answer"
            f" {slowest[1].hostile_seconds:.3f} s ({slowest[0]}); slowest concurrent /health"
            f" {max(o.slowest_probe for o in outcomes.values()):.3f} s"
        )
