"""Sessions across the whole system (devstack processes on PostgreSQL): an ended session's access token
is refused by the gateway and directly by each service within 5 s, a disabled user's too, and
revocations already known keep working while auth is down.

Each service verifies tokens locally and learns ended sessions by polling auth's revocation feed every
2 s; the figures printed here are what docs/reliability.md quotes.
"""

from __future__ import annotations

import signal
import time
import uuid

import httpx

from tests.reliability.harness import DEMO_LOGIN, System, wait_until

LIMIT_SECONDS = 5.0


def _session(
    base: str, email: str = DEMO_LOGIN["email"], password: str = DEMO_LOGIN["password"]
) -> dict[str, str]:
    response = httpx.post(f"{base}/login", json={"email": email, "password": password}, timeout=15.0)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _doors(system: System) -> dict[str, str]:
    """Where a token is checked: the gateway's proxied routes and each service called directly."""
    return {
        "gateway patients": system.gateway + "/api/patients",
        "gateway analytics": system.gateway + "/api/analytics/summary",
        "patient": system.url("patient") + "/patients",
        "analytics": system.url("analytics") + "/analytics/summary",
    }


def _statuses(system: System, token: str) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}"}
    return {
        name: httpx.get(url, headers=headers, timeout=10.0).status_code
        for name, url in _doors(system).items()
    }


def _refused_everywhere_within(system: System, token: str, limit: float) -> float:
    """Seconds until every door answers 401 to `token` (fails past `limit`)."""
    started = time.monotonic()
    wait_until(
        lambda: set(_statuses(system, token).values()) == {401}, limit, "token refused everywhere", 0.1
    )
    return time.monotonic() - started


def test_the_internal_revocation_feed_is_not_routed_by_the_gateway(system: System) -> None:
    assert httpx.get(system.gateway + "/auth/revocations", timeout=10.0).status_code == 404
    assert httpx.get(system.url("auth") + "/revocations", timeout=10.0).status_code == 200


def test_logout_through_the_gateway_ends_the_session_everywhere_within_5s(system: System) -> None:
    auth = system.gateway + "/auth"
    ending, staying = _session(auth), _session(auth)
    assert set(_statuses(system, ending["token"]).values()) == {200}  # the gateway now caches it as valid

    logout = httpx.post(
        f"{auth}/logout", headers={"Authorization": f"Bearer {ending['token']}"}, timeout=10.0
    )
    assert logout.status_code == 204
    seconds = _refused_everywhere_within(system, ending["token"], LIMIT_SECONDS)
    print(f"logout -> refused at the gateway, patient and analytics after {seconds:.2f} s")

    refreshed = httpx.post(
        f"{auth}/token/refresh", json={"refreshToken": ending["refreshToken"]}, timeout=10.0
    )
    assert refreshed.status_code == 401
    assert set(_statuses(system, staying["token"]).values()) == {200}


def test_refresh_through_the_gateway_rotates_and_reuse_ends_the_session_everywhere(system: System) -> None:
    auth = system.gateway + "/auth"
    first = _session(auth)
    rotated = httpx.post(f"{auth}/token/refresh", json={"refreshToken": first["refreshToken"]}, timeout=10.0)
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert set(_statuses(system, second["token"]).values()) == {200}
    reused = httpx.post(f"{auth}/token/refresh", json={"refreshToken": first["refreshToken"]}, timeout=10.0)
    assert reused.status_code == 401
    _refused_everywhere_within(system, second["token"], LIMIT_SECONDS)


def test_a_disabled_user_is_refused_within_5s_and_their_login_looks_like_a_wrong_password(
    system: System,
) -> None:
    auth = system.gateway + "/auth"
    admin = {"Authorization": f"Bearer {_session(auth)['token']}"}
    email, password = f"nurse.{uuid.uuid4().hex[:8]}@clinic.org", "nurse-password-1"
    created = httpx.post(
        f"{auth}/users", json={"email": email, "password": password}, headers=admin, timeout=10.0
    )
    assert created.status_code == 201, created.text
    user = _session(auth, email, password)
    assert set(_statuses(system, user["token"]).values()) == {200}
    wrong = httpx.post(f"{auth}/login", json={"email": email, "password": "wrong-password-1"}, timeout=15.0)

    disabled = httpx.patch(
        f"{auth}/users/{created.json()['id']}", json={"disabled": True}, headers=admin, timeout=10.0
    )
    assert disabled.status_code == 200, disabled.text
    seconds = _refused_everywhere_within(system, user["token"], LIMIT_SECONDS)
    print(f"disable -> refused at the gateway, patient and analytics after {seconds:.2f} s")
    refused = httpx.post(f"{auth}/login", json={"email": email, "password": password}, timeout=15.0)
    assert refused.status_code == wrong.status_code == 401
    assert refused.json() == wrong.json()
    assert refused.headers["content-type"] == wrong.headers["content-type"]


def test_password_change_ends_the_other_sessions_everywhere(system: System) -> None:
    auth = system.gateway + "/auth"
    admin = {"Authorization": f"Bearer {_session(auth)['token']}"}
    email, password = f"clerk.{uuid.uuid4().hex[:8]}@clinic.org", "clerk-password-1"
    created = httpx.post(
        f"{auth}/users", json={"email": email, "password": password}, headers=admin, timeout=10.0
    )
    assert created.status_code == 201, created.text
    here, elsewhere = _session(auth, email, password), _session(auth, email, password)
    changed = httpx.post(
        f"{auth}/users/me/password",
        json={"currentPassword": password, "newPassword": "clerk-password-2"},
        headers={"Authorization": f"Bearer {here['token']}"},
        timeout=15.0,
    )
    assert changed.status_code == 204, changed.text
    _refused_everywhere_within(system, elsewhere["token"], LIMIT_SECONDS)
    assert set(_statuses(system, here["token"]).values()) == {200}


def test_known_revocations_hold_while_auth_is_down(system: System) -> None:
    auth = system.gateway + "/auth"
    ended, live = _session(auth), _session(auth)
    logout = httpx.post(f"{auth}/logout", headers={"Authorization": f"Bearer {ended['token']}"}, timeout=10.0)
    assert logout.status_code == 204
    _refused_everywhere_within(system, ended["token"], LIMIT_SECONDS)

    system.stack.stop_service("auth", signal.SIGTERM)
    try:
        time.sleep(5)  # two failed polls everywhere: what was known must still hold
        assert set(_statuses(system, ended["token"]).values()) == {401}
        assert set(_statuses(system, live["token"]).values()) == {200}
    finally:
        system.stack.start_service("auth")
        system.wait_healthy("auth")
    assert set(_statuses(system, ended["token"]).values()) == {401}
