"""Connexion handlers: translate HTTP to use cases and domain errors to problems.

The spec has validated every input before these run; they execute in Flask's worker threads (Connexion
runs the WSGI app through a thread pool), so bcrypt never blocks the event loop.
"""

from __future__ import annotations

import uuid
from typing import Any

from connexion import NoContent, request

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
from pm.common.problems import Problem
from pm.common.tokens import require_role

JWKS_MAX_AGE_SECONDS = 300
REVOCATION_PAGE = 1000

Response = tuple[Any, int, dict[str, str]]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Operations also declare problem+json responses, so Connexion needs the content type spelled out.
    return body, status, {"Content-Type": "application/json", **(headers or {})}


def _auth() -> AuthService:
    service: AuthService = request.state.auth
    return service


def _client() -> str:
    # The peer address, or the X-Forwarded-For the gateway sets when the peer is one of
    # PM_TRUSTED_PROXIES (uvicorn applies it; nobody is trusted by default).
    client = request.client
    return client.host if client else "unknown"


def to_problem(error: AuthError) -> Problem:
    """The one place auth domain errors become HTTP problems."""
    if isinstance(error, TooManyAttempts):
        return Problem(
            429,
            "Too Many Requests",
            "Too many failed login attempts. Try again later.",
            headers={"Retry-After": str(error.retry_after_seconds)},
        )
    if isinstance(error, DuplicateEmail):
        return Problem(409, "Conflict", "A user with this email already exists.")
    if isinstance(error, UnknownUser):
        return Problem(404, "Not Found", "No user has this id.")
    if isinstance(error, WeakPassword):
        return Problem(400, "Bad Request", str(error), errors={"password": str(error)})
    if isinstance(error, InvalidRefreshToken):
        return Problem(401, "Unauthorized", "The refresh token is not valid.")
    if isinstance(error, WrongCurrentPassword):
        message = "The current password is not correct."
        return Problem(400, "Bad Request", message, errors={"currentPassword": message})
    if isinstance(error, OwnAccount):
        return Problem(409, "Conflict", "Administrators cannot disable or demote their own account.")
    return Problem(401, "Unauthorized", "Invalid email or password.")


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
        raise Problem(401, "Unauthorized", "The token does not belong to a session.") from None


def _revocations_now() -> None:
    # This process refuses the ended session at once; the others within their next poll.
    request.state.revocations.poll()


def login(body: dict[str, Any]) -> Response:
    try:
        issued = _auth().login(body["email"], body["password"], _client())
    except AuthError as error:
        raise to_problem(error) from None
    return _json(_session_view(issued))


def refresh(body: dict[str, Any]) -> Response:
    try:
        issued = _auth().refresh(body["refreshToken"])
    except AuthError as error:
        _revocations_now()  # a reused token may just have ended its session
        raise to_problem(error) from None
    return _json(_session_view(issued))


def logout(token_info: dict[str, Any]) -> tuple[Any, int]:
    _auth().logout(_session_id(token_info))
    _revocations_now()
    return NoContent, 204


def change_password(body: dict[str, Any], token_info: dict[str, Any]) -> tuple[Any, int]:
    try:
        _auth().change_password(
            token_info["sub"],
            _session_id(token_info),
            body["currentPassword"],
            body["newPassword"],
            _client(),
        )
    except AuthError as error:
        raise to_problem(error) from None
    _revocations_now()
    return NoContent, 204


def update_user(id: str, body: dict[str, Any], token_info: dict[str, Any]) -> Response:
    require_role(token_info, "ADMIN")
    role = body.get("role")
    try:
        user = _auth().update_user(
            uuid.UUID(id),
            caller=token_info["sub"],
            disabled=body.get("disabled"),
            role=Role(role) if role is not None else None,
        )
    except AuthError as error:
        raise to_problem(error) from None
    _revocations_now()
    return _json(_user_view(user))


def revocations(since: int = 0) -> Response:
    return _json(revocation_page(*_auth().revocations(since, REVOCATION_PAGE)))


def validate(token_info: dict[str, Any]) -> Response:
    return _json({"sub": token_info["sub"], "role": token_info["role"], "exp": token_info["exp"]})


def jwks() -> Response:
    # Verifiers may cache the keys briefly; they refetch on an unknown kid anyway.
    return _json(
        request.state.keys.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_SECONDS}"}
    )


def create_user(body: dict[str, Any], token_info: dict[str, Any]) -> Response:
    require_role(token_info, "ADMIN")
    try:
        user = _auth().create_user(body["email"], body["password"], Role(body.get("role", "USER")))
    except AuthError as error:
        raise to_problem(error) from None
    return _json(_user_view(user), 201)


def list_users(token_info: dict[str, Any], limit: int = 100, offset: int = 0) -> Response:
    require_role(token_info, "ADMIN")
    users, total = _auth().list_users(limit=limit, offset=offset)
    return _json([_user_view(user) for user in users], headers={"X-Total-Count": str(total)})


def unlock_user(id: str, token_info: dict[str, Any]) -> Response:  # `id`: the name in the spec
    require_role(token_info, "ADMIN")
    try:
        # Not a UUID names no user: the same 404 as an unknown one.
        user_id = uuid.UUID(id)
    except ValueError:
        raise to_problem(UnknownUser()) from None
    try:
        _auth().unlock(user_id)
    except AuthError as error:
        raise to_problem(error) from None
    return None, 204, {}


def revocation_page(entries: list[Revocation], cursor: int, more: bool) -> dict[str, Any]:
    return {
        "cursor": cursor,
        "revoked": [{"sid": str(e.session_id), "until": int(e.until.timestamp())} for e in entries],
        "more": more,
    }
