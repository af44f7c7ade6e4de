"""Connexion handlers: translate HTTP to use cases and back; domain errors become problems by `ERRORS`.

The spec has validated every input before these run; they execute in Flask's worker threads (Connexion
runs the WSGI app through a thread pool), so bcrypt never blocks the event loop.
"""

from __future__ import annotations

import uuid
from typing import Any

from connexion import NoContent, request
from connexion.exceptions import ProblemException

from pm.auth.adapters.keys import KeySet
from pm.auth.domain.model import (
    AuthError,
    DuplicateEmail,
    InvalidRefreshToken,
    OwnAccount,
    Role,
    TooManyAttempts,
    UnknownUser,
    User,
    WeakPassword,
    WrongCurrentPassword,
)
from pm.auth.service_layer.ports import IssuedSession, Revocation
from pm.auth.service_layer.services import AuthService
from pm.common.problems import AsProblem, ErrorTable
from pm.common.tokens import RevocationList, require_role

JWKS_MAX_AGE_SECONDS = 300
REVOCATION_PAGE = 1000

Response = tuple[Any, int, dict[str, str]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Operations also declare problem+json responses, so Connexion needs the content type spelled out.
    return body, status, {"Content-Type": "application/json", **(headers or {})}


def _client() -> str:
    # The peer address, or the X-Forwarded-For the gateway sets when the peer is one of
    # PM_TRUSTED_PROXIES (uvicorn applies it; nobody is trusted by default).
    client = request.client
    return client.host if client else "unknown"


WRONG_CURRENT = "The current password is not correct."

# The one place auth domain errors become HTTP problems (installed by spec_app); any other AuthError is a
# failed sign-in.
ERRORS: ErrorTable = {
    TooManyAttempts: AsProblem(
        429,
        "Too Many Requests",
        "Too many failed login attempts. Try again later.",
        headers=lambda error: {"Retry-After": str(error.retry_after_seconds)},
    ),
    DuplicateEmail: AsProblem(409, "Conflict", "A user with this email already exists."),
    UnknownUser: AsProblem(404, "Not Found", "No user has this id."),
    WeakPassword: AsProblem(400, "Bad Request", ext=lambda error: {"errors": {"password": str(error)}}),
    InvalidRefreshToken: AsProblem(401, "Unauthorized", "The refresh token is not valid."),
    WrongCurrentPassword: AsProblem(
        400,
        "Bad Request",
        WRONG_CURRENT,
        ext=lambda _: {"errors": {"currentPassword": WRONG_CURRENT}},
    ),
    OwnAccount: AsProblem(409, "Conflict", "Administrators cannot disable or demote their own account."),
    AuthError: AsProblem(401, "Unauthorized", "Invalid email or password."),
}


def _user_view(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "role": user.role.value,
        "createdAt": user.created_at.isoformat(),
        "disabled": user.disabled,
    }


def _session_view(issued: IssuedSession) -> dict[str, Any]:
    return {
        "token": issued.access.token,
        "tokenType": "Bearer",
        "expiresIn": issued.access.expires_in,
        "refreshToken": issued.refresh_token,
        "refreshExpiresIn": issued.refresh_expires_in,
    }


def _session_id(token_info: dict[str, Any]) -> uuid.UUID:
    # The verifier refuses tokens without `sid`; only a malformed one (never minted by auth) is left.
    try:
        return uuid.UUID(str(token_info["sid"]))
    except (KeyError, ValueError):
        raise ProblemException(
            status=401, title="Unauthorized", detail="The token does not belong to a session."
        ) from None


class AuthHandlers:
    """The operations of api/openapi.yaml, bound to the auth service by bootstrap (`handler_resolver`).

    `revoked` is this process's list of ended sessions: it refuses a session ended here at once, the
    other processes within their next poll."""

    def __init__(self, auth: AuthService, keys: KeySet, revoked: RevocationList) -> None:
        self.auth = auth
        self.keys = keys
        self.revoked = revoked

    def login(self, body: dict[str, Any]) -> Response:
        return _json(_session_view(self.auth.login(body["email"], body["password"], _client())))

    def refresh(self, body: dict[str, Any]) -> Response:
        try:
            issued = self.auth.refresh(body["refreshToken"])
        except AuthError:
            self.revoked.poll()  # a reused token may just have ended its session
            raise
        return _json(_session_view(issued))

    def logout(self, token_info: dict[str, Any]) -> tuple[Any, int]:
        self.auth.logout(_session_id(token_info))
        self.revoked.poll()
        return NoContent, 204

    def change_password(self, body: dict[str, Any], token_info: dict[str, Any]) -> tuple[Any, int]:
        self.auth.change_password(
            token_info["sub"],
            _session_id(token_info),
            body["currentPassword"],
            body["newPassword"],
            _client(),
        )
        self.revoked.poll()
        return NoContent, 204

    def update_user(self, id: str, body: dict[str, Any], token_info: dict[str, Any]) -> Response:
        require_role(token_info, "ADMIN")
        role = body.get("role")
        user = self.auth.update_user(
            uuid.UUID(id),
            caller=token_info["sub"],
            disabled=body.get("disabled"),
            role=Role(role) if role is not None else None,
        )
        self.revoked.poll()
        return _json(_user_view(user))

    def revocations(self, since: int = 0) -> Response:
        return _json(revocation_page(*self.auth.revocations(since, REVOCATION_PAGE)))

    def validate(self, token_info: dict[str, Any]) -> Response:
        return _json({"sub": token_info["sub"], "role": token_info["role"], "exp": token_info["exp"]})

    def jwks(self) -> Response:
        # Verifiers may cache the keys briefly; they refetch on an unknown kid anyway.
        return _json(self.keys.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"})

    def create_user(self, body: dict[str, Any], token_info: dict[str, Any]) -> Response:
        require_role(token_info, "ADMIN")
        user = self.auth.create_user(body["email"], body["password"], Role(body.get("role", "USER")))
        return _json(_user_view(user), 201)

    def list_users(self, token_info: dict[str, Any], limit: int = 100, offset: int = 0) -> Response:
        require_role(token_info, "ADMIN")
        users, total = self.auth.list_users(limit=limit, offset=offset)
        return _json([_user_view(user) for user in users], headers={"X-Total-Count": str(total)})

    def unlock_user(self, id: str, token_info: dict[str, Any]) -> Response:  # `id`: the name in the spec
        require_role(token_info, "ADMIN")
        try:
            # Not a UUID names no user: the same 404 as an unknown one.
            user_id = uuid.UUID(id)
        except ValueError:
            raise UnknownUser() from None
        self.auth.unlock(user_id)
        return None, 204, {}


def revocation_page(entries: list[Revocation], cursor: int, more: bool) -> dict[str, Any]:
    return {
        "cursor": cursor,
        "revoked": [{"sid": str(e.session_id), "until": int(e.until.timestamp())} for e in entries],
        "more": more,
    }
