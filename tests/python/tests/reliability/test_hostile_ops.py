"""Operators' incidents on the running system (issue 12, findings 4 and 5): a broker outage does not take
the public entry point out of service, and database errors put no personal data or secret in any log."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.reliability.harness import Load, System, wait_until, write_figures

pytestmark = pytest.mark.slow

CANARY_NAME = "Zebulon Canarywing"
CANARY_PASSWORD = "Canary-Pass-7731"
BCRYPT_PREFIXES = ("$2b$", "$2a$", "$2y$")


def canary_email(tag: str) -> str:
    return f"zebulon.canary.{tag}@leak-check.example"


def _health(url: str, path: str = "/health") -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(url + path, timeout=5.0)
    except httpx.HTTPError:
        return 0, {}
    return response.status_code, response.json()


def test_broker_down_degrades_patient_and_analytics_and_the_gateway_stays_in_service(
    system: System, token: str
) -> None:
    with Load(system.gateway, token) as load:
        time.sleep(1.0)
        down_at = time.monotonic()
        system.stack.stop_broker()
        try:
            # Readiness comes from background rounds (every 3 s by default): give it a few.
            wait_until(
                lambda: _health(system.url("analytics"))[1].get("status") == "DEGRADED",
                20.0,
                "analytics DEGRADED",
            )
            wait_until(
                lambda: _health(system.url("patient"))[1].get("status") == "DEGRADED",
                20.0,
                "patient DEGRADED",
            )
            gateway_seen = [_health(system.gateway) for _ in range(20)]
            analytics = _health(system.url("analytics"))
            patient = _health(system.url("patient"))
            time.sleep(2.0)
            up_at = time.monotonic()
        finally:
            system.stack.start_broker()
        system.wait_healthy(timeout=60.0)
    assert {status for status, _ in gateway_seen} == {200}
    assert {body["status"] for _, body in gateway_seen} <= {"UP", "DEGRADED"}
    assert analytics[0] == 200 and analytics[1]["degraded"] == ["kafka"]
    assert analytics[1]["components"]["database"] == {"status": "UP"}
    assert patient[0] == 200 and patient[1]["degraded"] == ["relay"]
    while_down = load.between(down_at, up_at)
    assert while_down and all(o.status == 201 for o in while_down), sorted({o.status for o in while_down})
    for service in ("gateway", "auth", "patient", "billing", "analytics"):
        assert _health(system.url(service), "/health/live")[0] == 200, service
    write_figures(
        "hostile_broker_down_health",
        {
            "gateway_health_answers_while_broker_down": len(gateway_seen),
            "gateway_health_statuses": sorted({body["status"] for _, body in gateway_seen}),
            "creates_while_broker_down": len(while_down),
            "created_201_while_broker_down": sum(1 for o in while_down if o.status == 201),
        },
    )


@contextmanager
def rows_locked(system: System, service: str, table: str) -> Iterator[Callable[[], int]]:
    """Hold a SHARE lock on `table` (reads pass, writes wait); yields a function that ends every write
    waiting on it with a database error (its backend is terminated), returning how many it ended."""
    database = system.database_urls[service].rsplit("/", 1)[1]
    engine = sa.create_engine(system.database_urls[service], poolclass=sa.pool.NullPool)
    other = "auth" if service != "auth" else "patient"

    def break_waiting_writes() -> int:
        (ended,) = system.sql(
            other,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :db AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            db=database,
        )[0]
        return int(ended)

    with engine.connect() as connection:
        connection.execute(sa.text(f"LOCK TABLE {table} IN SHARE MODE"))
        try:
            yield break_waiting_writes
        finally:
            connection.rollback()
    engine.dispose()


def _while_breaking(
    request: Callable[[], httpx.Response], break_writes: Callable[[], int], timeout: float = 30.0
) -> tuple[httpx.Response, int]:
    """Send `request` on a thread and end its database writes until it has answered."""
    answer: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answer.append(request()), daemon=True)
    thread.start()
    ended = 0
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        assert time.monotonic() < deadline, "the request never answered"
        ended += break_writes()
        time.sleep(0.2)
    return answer[0], ended


def test_database_errors_in_every_service_leave_no_personal_data_or_secret_in_any_log(
    system: System, token: str
) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    client = httpx.Client(base_url=system.gateway, headers=bearer, timeout=25.0)
    errors_forced: dict[str, int] = {}

    def new_patient(tag: str) -> dict[str, str]:
        return {
            "name": CANARY_NAME,
            "email": canary_email(tag),
            "address": "7 Canary Row",
            "dateOfBirth": "1971-07-07",
            "registeredDate": "2024-03-01",
        }

    # auth: the user insert (email, bcrypt hash of the password) fails.
    with rows_locked(system, "auth", "users") as break_writes:
        response, errors_forced["auth"] = _while_breaking(
            lambda: client.post(
                "/auth/users", json={"email": canary_email("auth"), "password": CANARY_PASSWORD}
            ),
            break_writes,
        )
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"

    # patient: the patient insert (name, email, address, date of birth) fails after billing said yes.
    with rows_locked(system, "patient", "patients") as break_writes:
        response, errors_forced["patient"] = _while_breaking(
            lambda: client.post("/api/patients", json=new_patient("patient")), break_writes
        )
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"

    # billing: the account insert (name, email) fails; patient answers 503, nothing stored.
    with rows_locked(system, "billing", "billing_account") as break_writes:
        response, errors_forced["billing"] = _while_breaking(
            lambda: client.post("/api/patients", json=new_patient("billing")), break_writes
        )
    assert response.status_code == 503, response.text

    # analytics: the consumer's batch insert (names, emails) fails and is redelivered, several times.
    with rows_locked(system, "analytics", "patient_event") as break_writes:
        created = client.post("/api/patients", json=new_patient("analytics"))
        assert created.status_code == 201, created.text
        ended = 0
        deadline = time.monotonic() + 30.0
        while ended < 3:
            assert time.monotonic() < deadline, "the consumer never tried to record the event"
            ended += break_writes()
            time.sleep(0.3)
        errors_forced["analytics"] = ended
    wait_until(
        lambda: bool(
            system.sql(
                "analytics", "SELECT 1 FROM patient_event WHERE patient_id = :p", p=created.json()["id"]
            )
        ),
        30.0,
        "the event recorded once the table is writable again",
    )
    client.close()

    text = system.log_text()
    # The run did log the errors (a scan of silent services would prove nothing).
    assert "database unavailable" in text
    assert "batch failed" in text
    canaries = {
        "name": CANARY_NAME,
        "email": "zebulon.canary.",
        "password": CANARY_PASSWORD,
        "address": "7 Canary Row",
        "bcrypt hash": BCRYPT_PREFIXES,
    }
    leaks = {
        what: sum(text.count(v) for v in (values if isinstance(values, tuple) else (values,)))
        for what, values in canaries.items()
    }
    write_figures(
        "hostile_log_scan",
        {
            "database_errors_forced": errors_forced,
            "log_lines_scanned": len(text.splitlines()),
            "leaks_found": leaks,
        },
    )
    assert all(n >= 1 for n in errors_forced.values()), errors_forced
    assert leaks == {what: 0 for what in canaries}, leaks


@pytest.mark.parametrize("service", ["auth", "patient", "billing", "analytics"])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://pm:Canary-Db-Secret@127.0.0.1:1/nowhere",  # nothing listens
        "postgresql+psycopg2://pm:Canary-Db-Secret@127.0.0.1:notaport/nowhere",  # unparsable port
        "postgres://pm:Canary-Db-Secret@127.0.0.1:5432/nowhere",  # not a SQLAlchemy URL
    ],
)
def test_a_bad_database_url_is_reported_without_its_password(service: str, url: str, tmp_path: Any) -> None:
    env = {
        **os.environ,
        f"PM_{service.upper()}_DATABASE_URL": url,
        "PM_DATA_DIR": str(tmp_path),
        "PM_ENV": "dev",
    }
    result = subprocess.run(
        [sys.executable, "-m", f"pm.{service}.main", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Canary-Db-Secret" not in output, output
    assert "Traceback" not in output, output
    assert f"PM_{service.upper()}_DATABASE_URL" in output or "database" in output.lower(), output
