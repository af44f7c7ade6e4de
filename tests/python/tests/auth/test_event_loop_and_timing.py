"""bcrypt runs off the event loop, unknown emails cost as much as wrong passwords, costs can be raised."""

from __future__ import annotations

import statistics
import threading
import time

import httpx
import sqlalchemy as sa

from tests.auth.conftest import DEMO, AuthServer, login


def test_slow_logins_do_not_block_other_requests(http: httpx.Client, auth_server: AuthServer) -> None:
    # Cost 13 makes each check take hundreds of milliseconds; /health must answer meanwhile.
    base = auth_server(PM_AUTH_BCRYPT_ROUNDS="13")
    finished: list[float] = []

    def slow_login() -> None:
        with httpx.Client(timeout=30) as client:
            assert login(client, base, DEMO["email"], "wrong-password").status_code == 401
        finished.append(time.monotonic())

    logins = [threading.Thread(target=slow_login) for _ in range(2)]
    for thread in logins:
        thread.start()
    health_done: list[float] = []
    while not finished and len(health_done) < 5:
        assert http.get(f"{base}/health").status_code == 200
        health_done.append(time.monotonic())
    for thread in logins:
        thread.join(30)
    assert len(finished) == 2
    # Several health answers came back before the first login finished: the loop was never blocked.
    assert sum(t < min(finished) for t in health_done) >= 3


def test_unknown_email_costs_as_much_as_a_wrong_password(http: httpx.Client, auth_server: AuthServer) -> None:
    base = auth_server(
        PM_AUTH_BCRYPT_ROUNDS="10",
        PM_AUTH_MAX_FAILURES_PER_EMAIL="100",
        PM_AUTH_MAX_FAILURES_PER_CLIENT="100",
    )
    # The demo user is seeded at this cost too, so both paths should run one equally slow check.
    unknown: list[float] = []
    wrong: list[float] = []
    login(http, base, "warmup@test.com", "wrong-password")
    for _ in range(8):
        for email, samples in (("nobody@test.com", unknown), (DEMO["email"], wrong)):
            started = time.perf_counter()
            assert login(http, base, email, "wrong-password").status_code == 401
            samples.append(time.perf_counter() - started)
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert (
        0.5 < ratio < 2.0
    ), f"unknown {statistics.median(unknown):.4f}s vs wrong {statistics.median(wrong):.4f}s"


def test_raising_the_cost_rehashes_passwords_at_the_next_login(
    http: httpx.Client, auth_server: AuthServer, postgres_url: str
) -> None:
    def stored_cost() -> str:
        engine = sa.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                stored = conn.execute(sa.text("SELECT password FROM users")).scalar_one()
        finally:
            engine.dispose()
        return str(stored.split("$")[2])

    auth_server(PM_AUTH_BCRYPT_ROUNDS="4")
    assert stored_cost() == "04"
    stronger = auth_server(PM_AUTH_BCRYPT_ROUNDS="6")
    assert login(http, stronger, DEMO["email"], DEMO["password"]).status_code == 200
    assert stored_cost() == "06"
    assert login(http, stronger, DEMO["email"], DEMO["password"]).status_code == 200
