"""Login defence over HTTP: growing delays per (account, client) and per client, never per account alone.

The servers here trust X-Forwarded-For from loopback, as auth does behind a gateway on the same host, so
each test can speak as several client addresses.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.auth.conftest import DEMO, AuthServer, bearer, login, token_for

LIMITS = {
    "PM_AUTH_MAX_FAILURES_PER_EMAIL": "3",
    "PM_AUTH_MAX_FAILURES_PER_CLIENT": "6",
    "PM_AUTH_THROTTLE_BASE_SECONDS": "1",
    "PM_AUTH_FAILURE_WINDOW_SECONDS": "300",
}
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


def _as(client: str) -> dict[str, str]:
    return {"X-Forwarded-For": client}


def _fail(http: httpx.Client, base: str, email: str, times: int, client: str = ATTACKER) -> None:
    for _ in range(times):
        response = login(http, base, email, "wrong-password", **_as(client))
        assert response.status_code == 401, response.text


def test_a_failing_client_waits_longer_after_each_failure(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    base = auth_server(**LIMITS)
    _fail(http, base, DEMO["email"], 3)
    waits = []
    for _ in range(2):
        refused = login(http, base, DEMO["email"], DEMO["password"], **_as(ATTACKER))
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert "token" not in refused.json()
        waits.append(int(refused.headers["retry-after"]))
        time.sleep(waits[-1] + 0.1)
        _fail(http, base, DEMO["email"], 1)
    assert waits == [1, 2]
    assert (
        int(login(http, base, DEMO["email"], "wrong-password", **_as(ATTACKER)).headers["retry-after"]) == 4
    )


def test_the_owner_logs_in_while_an_attacker_hammers_the_admin_account(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    """Issue 12, finding 2: five wrong passwords from anywhere used to refuse the owner for five minutes."""
    base = auth_server(PM_AUTH_THROTTLE_BASE_SECONDS="1")
    stop = threading.Event()
    attacker_statuses: list[int] = []

    def hammer() -> None:
        with httpx.Client(timeout=30) as attacker:
            while not stop.is_set():
                response = login(attacker, base, DEMO["email"], f"guess-{uuid.uuid4().hex}", **_as(ATTACKER))
                attacker_statuses.append(response.status_code)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while attacker_statuses.count(429) < 20:
            assert time.monotonic() < deadline, attacker_statuses
            time.sleep(0.05)
        owner = [
            login(http, base, DEMO["email"], DEMO["password"], **_as(OWNER)).status_code for _ in range(5)
        ]
    finally:
        stop.set()
        thread.join(30)
    print(
        f"FIGURES owner {owner}; attacker 401={attacker_statuses.count(401)} 429={attacker_statuses.count(429)}"
    )
    assert owner == [200] * 5
    # Five free failures with the default settings, then at most one per (doubling) delay.
    assert 5 <= attacker_statuses.count(401) <= 7, attacker_statuses


def test_unknown_emails_are_slowed_the_same_way(http: httpx.Client, auth_server: AuthServer) -> None:
    base = auth_server(**LIMITS)
    _fail(http, base, "nobody@test.com", 3, client="203.0.113.1")
    _fail(http, base, DEMO["email"], 3, client="203.0.113.2")
    unknown = login(http, base, "nobody@test.com", "wrong-password", **_as("203.0.113.1"))
    known = login(http, base, DEMO["email"], "wrong-password", **_as("203.0.113.2"))
    assert unknown.status_code == known.status_code == 429
    assert unknown.content == known.content


def test_successful_login_resets_that_clients_count_on_the_account(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    base = auth_server(**LIMITS)
    _fail(http, base, DEMO["email"], 2)
    assert login(http, base, DEMO["email"], DEMO["password"], **_as(ATTACKER)).status_code == 200
    _fail(http, base, DEMO["email"], 2)
    assert login(http, base, DEMO["email"], DEMO["password"], **_as(ATTACKER)).status_code == 200


def test_one_client_trying_many_emails_is_slowed_but_others_are_not(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    base = auth_server(**LIMITS)
    for n in range(6):
        _fail(http, base, f"victim{n}@test.com", 1, client="203.0.113.50")
    refused = login(http, base, DEMO["email"], DEMO["password"], **_as("203.0.113.50"))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert login(http, base, DEMO["email"], DEMO["password"], **_as("203.0.113.51")).status_code == 200


def test_failures_count_across_workers_sharing_the_database(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    first, second = auth_server(**LIMITS), auth_server(**LIMITS)
    _fail(http, first, DEMO["email"], 2)
    _fail(http, second, DEMO["email"], 1)
    assert login(http, first, DEMO["email"], DEMO["password"], **_as(ATTACKER)).status_code == 429
    assert login(http, second, DEMO["email"], DEMO["password"], **_as(ATTACKER)).status_code == 429
    assert login(http, second, DEMO["email"], DEMO["password"], **_as(OWNER)).status_code == 200


def test_delay_lifts_when_retry_after_has_passed(http: httpx.Client, auth_server: AuthServer) -> None:
    base = auth_server(**LIMITS)
    _fail(http, base, DEMO["email"], 3)
    refused = login(http, base, DEMO["email"], DEMO["password"], **_as(ATTACKER))
    assert refused.status_code == 429
    retry_after = int(refused.headers["retry-after"])
    deadline = time.monotonic() + retry_after + 3
    time.sleep(retry_after)
    while (status := login(http, base, DEMO["email"], DEMO["password"], **_as(ATTACKER)).status_code) == 429:
        assert time.monotonic() < deadline, "still refused well after Retry-After"
        time.sleep(0.2)
    assert status == 200


def test_a_parallel_burst_gets_no_more_guesses_than_the_free_ones(auth_server: AuthServer) -> None:
    # A long first delay: however slowly the burst is served, no delay runs out during it.
    base = auth_server(**{**LIMITS, "PM_AUTH_THROTTLE_BASE_SECONDS": "60"})

    def guess(n: int) -> int:
        with httpx.Client(timeout=30) as client:
            return login(client, base, DEMO["email"], f"guess-{n:04d}", **_as(ATTACKER)).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(guess, range(12)))
    # Attempts are charged before they are checked, so concurrent ones count against each other.
    assert statuses.count(401) <= 3
    assert statuses.count(401) + statuses.count(429) == 12


def test_parallel_correct_logins_beyond_the_free_ones_are_asked_to_retry_at_once(
    auth_server: AuthServer,
) -> None:
    base = auth_server(**LIMITS)

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            return login(client, base, DEMO["email"], DEMO["password"], **_as(OWNER))

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(attempt, range(8)))
    assert any(r.status_code == 200 for r in responses)
    # Refused only because other attempts were in flight: a short wait, not a delay.
    assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)
    with httpx.Client(timeout=30) as client:
        assert login(client, base, DEMO["email"], DEMO["password"], **_as(OWNER)).status_code == 200


def _user_id(http: httpx.Client, base: str, admin: str, email: str) -> str:
    users = http.get(f"{base}/users", headers=bearer(admin)).json()
    return str(next(user["id"] for user in users if user["email"] == email))


def test_admin_unlock_lets_every_client_try_the_account_again(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    base = auth_server(**{**LIMITS, "PM_AUTH_THROTTLE_BASE_SECONDS": "600"})
    admin = token_for(http, base)
    nurse = {"email": "nurse@clinic.org", "password": "nurse-password"}
    assert http.post(f"{base}/users", json=nurse, headers=bearer(admin)).status_code == 201
    _fail(http, base, nurse["email"], 3, client="203.0.113.7")
    assert login(http, base, nurse["email"], nurse["password"], **_as("203.0.113.7")).status_code == 429

    unlocked = http.post(
        f"{base}/users/{_user_id(http, base, admin, nurse['email'])}/unlock", headers=bearer(admin)
    )
    assert unlocked.status_code == 204
    assert login(http, base, nurse["email"], nurse["password"], **_as("203.0.113.7")).status_code == 200


def test_unlock_is_for_admins_and_known_users_only(http: httpx.Client, auth_server: AuthServer) -> None:
    base = auth_server(**LIMITS)
    admin = token_for(http, base)
    nurse = {"email": "nurse@clinic.org", "password": "nurse-password"}
    assert http.post(f"{base}/users", json=nurse, headers=bearer(admin)).status_code == 201
    user = token_for(http, base, nurse["email"], nurse["password"])
    target = f"{base}/users/{_user_id(http, base, admin, DEMO['email'])}/unlock"

    forbidden = http.post(target, headers=bearer(user))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert http.post(target).status_code == 401
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        missing = http.post(f"{base}/users/{unknown}/unlock", headers=bearer(admin))
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


def test_a_forged_x_forwarded_for_from_an_untrusted_peer_is_not_believed(
    http: httpx.Client, auth_server: AuthServer
) -> None:
    """Issue 12, finding 3: uvicorn believed X-Forwarded-For from loopback, so rotating it escaped the
    per-client throttle. With PM_TRUSTED_PROXIES unset, the peer is the client."""
    base = auth_server(**{**LIMITS, "PM_TRUSTED_PROXIES": ""})
    for n in range(6):
        _fail(http, base, f"victim{n}@test.com", 1, client=f"203.0.113.{n}")
    refused = login(http, base, DEMO["email"], DEMO["password"], **_as("198.51.100.99"))
    assert refused.status_code == 429
