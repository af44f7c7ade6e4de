"""No request stalls auth: a 100 KB hostile value in any field is refused quickly while /health answers."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.auth.conftest import DEMO, AuthServer, bearer, token_for
from tests.common.hostile import (
    BODY_LIMIT_VALUE,
    HOSTILE_VALUES,
    QUERY_VALUES,
    Hostile,
    Outcome,
    assert_refused_without_stall,
    get,
    header_safe,
    patch,
    post,
    query,
    send_while_probing,
)


@pytest.fixture
def base(auth_server: AuthServer) -> str:
    return auth_server()


def test_the_reported_login_payload_does_not_freeze_auth(base: str) -> None:
    email = "a@" + "a." * 32000 + " "
    outcome = send_while_probing(base, post("/login", {"email": email, "password": "password123"}))
    assert_refused_without_stall(outcome, "login with the reported email")
    assert outcome.response is not None
    assert outcome.response.status_code == 400
    assert outcome.response.json()["errors"] == {"email": "Email should be valid"}


NO_SUCH_USER = "00000000-0000-4000-8000-000000000000"


def cases(admin: str) -> dict[str, Hostile]:
    as_admin = bearer(admin)
    found: dict[str, Hostile] = {"login 1 MB email": post("/login", {**DEMO, "email": BODY_LIMIT_VALUE})}
    for shape, value in HOSTILE_VALUES.items():
        for field in ("email", "password"):
            found[f"login {field} {shape}"] = post("/login", {**DEMO, field: value})
        for field in ("email", "password", "role"):
            new_user = {"email": "new.user@test.com", "password": "password123", "role": "USER", field: value}
            found[f"create user {field} {shape}"] = post("/users", new_user, as_admin)
        found[f"validate token {shape}"] = get("/validate", bearer(header_safe(value)))
        found[f"refresh token {shape}"] = post("/token/refresh", {"refreshToken": value})
        for field in ("currentPassword", "newPassword"):
            change = {"currentPassword": "wrong-password", "newPassword": "new-password-456", field: value}
            found[f"change password {field} {shape}"] = post("/users/me/password", change, as_admin)
        found[f"update user role {shape}"] = patch(f"/users/{NO_SUCH_USER}", {"role": value}, as_admin)
    for shape, value in QUERY_VALUES.items():
        for param in ("limit", "offset"):
            found[f"list users {param} {shape}"] = query("/users", {param: value}, as_admin)
        found[f"unlock id {shape}"] = post(f"/users/{quote(value)}/unlock", None, as_admin)
        found[f"update user id {shape}"] = patch(f"/users/{quote(value)}", {"disabled": False}, as_admin)
    return found


def test_a_hostile_value_in_any_field_is_refused_quickly_while_auth_answers(
    base: str, http: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    admin = token_for(http, base)
    outcomes: dict[str, Outcome] = {}
    for what, hostile in cases(admin).items():
        outcomes[what] = send_while_probing(base, hostile)
        assert_refused_without_stall(outcomes[what], what)
    with capsys.disabled():
        slowest = max(outcomes.items(), key=lambda item: item[1].hostile_seconds)
        print(
            f"\nauth: {len(outcomes)} hostile requests; slowest hostile answer {slowest[1].hostile_seconds:.3f} s"
            f" ({slowest[0]}); slowest concurrent /health {max(o.slowest_probe for o in outcomes.values()):.3f} s"
        )


@pytest.mark.parametrize("path", ["/users/5%0Au/unlock", "/users/%11/unlock", "/users/a%0Ab"])
def test_a_control_character_in_a_user_path_names_no_user(base: str, http: httpx.Client, path: str) -> None:
    # Found by schemathesis: `/users/<newline>/unlock` reached the handler without its operation (a 500).
    admin = token_for(http, base)
    method = "PATCH" if path.count("/") == 2 else "POST"
    response = http.request(method, base + path, json={"disabled": False}, headers=bearer(admin))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
