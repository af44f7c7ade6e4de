"""Validation errors as clients see them: every invalid field at once, with the original messages."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.patient.conftest import Running, new_patient


def errors_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 400 and body["title"] and body["detail"]
    errors: dict[str, str] = body["errors"]
    return errors


def test_an_empty_body_reports_every_required_field(client: httpx.Client, service: Running) -> None:
    assert errors_of(client.post("/patients", json={})) == {
        "name": "Name is required",
        "email": "Email is required",
        "address": "Address is required",
        "dateOfBirth": "Date of birth is required",
        "registeredDate": "Registered date is required",
    }
    with service.database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "", "Name is required"),
        ("name", "   ", "Name is required"),
        ("name", "x" * 101, "Name cannot exceed 100 characters"),
        ("email", "", "Email is required"),
        ("email", "not-an-email", "Email should be valid"),
        ("email", "a@b", "Email should be valid"),
        ("address", "", "Address is required"),
        ("dateOfBirth", "", "Date of birth is required"),
        ("dateOfBirth", "1990-02-30", "Date of birth must be a valid date (YYYY-MM-DD)"),
        ("dateOfBirth", "15/06/1985", "Date of birth must be a valid date (YYYY-MM-DD)"),
        ("registeredDate", "", "Registered date is required"),
        ("registeredDate", "yesterday", "Registered date must be a valid date (YYYY-MM-DD)"),
    ],
)
def test_each_field_has_its_message(client: httpx.Client, field: str, value: Any, message: str) -> None:
    assert errors_of(client.post("/patients", json=new_patient(**{field: value}))) == {field: message}


def test_a_name_of_exactly_100_characters_is_accepted(client: httpx.Client) -> None:
    assert client.post("/patients", json=new_patient(name="x" * 100)).status_code == 201


def test_several_bad_fields_are_reported_together(client: httpx.Client) -> None:
    body = new_patient(name="y" * 150, email="nope")
    del body["address"]
    assert errors_of(client.post("/patients", json=body)) == {
        "name": "Name cannot exceed 100 characters",
        "email": "Email should be valid",
        "address": "Address is required",
    }


def test_date_of_birth_in_the_future_is_refused(client: httpx.Client, service: Running) -> None:
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    assert errors_of(client.post("/patients", json=new_patient(dateOfBirth=tomorrow))) == {
        "dateOfBirth": "Date of birth cannot be in the future"
    }
    patient_id = client.post("/patients", json=new_patient()).json()["id"]
    assert errors_of(client.put(f"/patients/{patient_id}", json=new_patient(dateOfBirth=tomorrow))) == {
        "dateOfBirth": "Date of birth cannot be in the future"
    }


def test_update_requires_all_but_registered_date(client: httpx.Client) -> None:
    patient_id = client.post("/patients", json=new_patient()).json()["id"]
    assert errors_of(client.put(f"/patients/{patient_id}", json={"registeredDate": "2024-01-01"})) == {
        "name": "Name is required",
        "email": "Email is required",
        "address": "Address is required",
        "dateOfBirth": "Date of birth is required",
    }


def test_wrong_types_and_malformed_json_are_bad_requests(client: httpx.Client) -> None:
    assert errors_of(client.post("/patients", json=new_patient(name=42))) == {"name": "Name must be a string"}
    assert "body" in errors_of(client.post("/patients", json=["a", "list"]))
    garbled = client.post("/patients", content=b"{not json", headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
    assert garbled.headers["Content-Type"] == "application/problem+json"


def test_bodies_that_are_not_utf8_or_carry_lone_surrogates_are_bad_requests(
    client: httpx.Client, service: Running
) -> None:
    raw = b'{"name": "\xff\xfe", "email": "a@b.co"}'
    assert (
        client.post("/patients", content=raw, headers={"Content-Type": "application/json"}).status_code == 400
    )
    surrogate = new_patient(name="placeholder")
    text = json.dumps(surrogate).replace("placeholder", "\\ud800")
    response = client.post("/patients", content=text.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    with service.database.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM patients")).scalar_one() == 0


@pytest.mark.parametrize("blank", ["\u00a0", "\t", "\u3000", "\u2028"])
def test_unicode_whitespace_is_blank_for_every_text_field(client: httpx.Client, blank: str) -> None:
    body = new_patient(name=blank, address=blank, email=f"a{blank}b@example.com")
    assert errors_of(client.post("/patients", json=body)) == {
        "name": "Name is required",
        "address": "Address is required",
        "email": "Email should be valid",
    }
