"""The auth use cases: log in, sessions (refresh, logout, revocation feed), users, the demo user."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pm.auth.domain.model import (
    DuplicateEmail,
    InvalidCredentials,
    InvalidRefreshToken,
    OwnAccount,
    Role,
    Session,
    TooManyAttempts,
    UnknownUser,
    User,
    WrongCurrentPassword,
    check_new_password,
    normalize_email,
)
from pm.auth.domain.throttle import Key, ThrottlePolicy, account_key, client_key
from pm.auth.service_layer.ports import (
    IssuedSession,
    PasswordHasher,
    Revocation,
    TokenIssuer,
    UnitOfWork,
)

log = logging.getLogger(__name__)

DEMO_EMAIL = "testuser@test.com"
DEMO_PASSWORD = "password123"  # noqa: S105 - the documented demo account of the product contract

Clock = Callable[[], datetime]

REFRESH_TOKEN_BYTES = 32


def refresh_token_hash(token: str) -> str:
    # The token is 256 random bits, so a fast unsalted hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(kw_only=True, eq=False)
class AuthService:
    """Use cases sharing one set of collaborators; each call opens its own unit(s) of work."""

    uow: Callable[[], UnitOfWork]
    hasher: PasswordHasher
    issuer: TokenIssuer
    policy: ThrottlePolicy
    clock: Clock
    session_ttl: timedelta = timedelta(hours=12)

    def login(self, email: str, password: str, client: str) -> IssuedSession:
        email = normalize_email(email)
        now = self.clock()
        since = self.policy.window_start(now)
        # Never a key for the account alone: a stranger's failures must not lock the owner out.
        pair, whole_client = account_key(email, client), client_key(client)
        # Attempts on one key are checked and charged one at a time: each sees every failure and every
        # attempt still in flight, so a burst of parallel guesses cannot slip past the schedule.
        with self.uow() as uow:
            uow.failures.lock([pair, whole_client])
            uow.failures.prune(since)
            retry_after = self._retry_after(uow, [pair, whole_client], now)
            if retry_after is not None:
                # Refused attempts are not charged: waiting, not hammering, is what lifts the delay.
                log.warning("login refused: too many failures", extra={"client": client})
                raise TooManyAttempts(retry_after)
            charged = [
                uow.failures.record(pair, now, pending=True),
                uow.failures.record(whole_client, now, pending=True),
            ]
            uow.commit()
        with self.uow() as uow:
            user = uow.users.get_by_email(email)
        # Unknown emails are checked against a dummy hash so both failures cost the same time.
        matches = self.hasher.verify(password, user.password_hash if user else self.hasher.dummy_hash)
        # A disabled account answers exactly like a wrong password (and is charged like one).
        if user is None or not matches or user.disabled:
            with self.uow() as uow:
                uow.failures.confirm(charged)
                uow.commit()
            log.info("login failed", extra={"client": client})
            raise InvalidCredentials()
        # Moving old hashes to the current cost keeps them as slow as the dummy check (and as strong).
        rehashed = self.hasher.hash(password) if self.hasher.needs_rehash(user.password_hash) else None
        with self.uow() as uow:
            # This client's record on this account is clean again; its failures on others still count.
            uow.failures.clear(pair)
            uow.failures.delete(charged)
            if rehashed is not None:
                uow.users.set_password_hash(user.id, rehashed)
            uow.commit()
        if rehashed is not None:
            log.info("password rehashed at the current cost", extra={"user_id": str(user.id)})
        log.info("login succeeded", extra={"user_id": str(user.id), "role": user.role.value})
        return self._start_session(user.id)

    def _start_session(self, user_id: uuid.UUID) -> IssuedSession:
        now = self.clock()
        refresh_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
        with self.uow() as uow:
            # Locked: a session cannot start while the user is being disabled, so none escapes that.
            user = uow.users.lock(user_id)
            if user is None or user.disabled:
                raise InvalidCredentials()
            uow.sessions.prune(now)
            session_id = uuid.uuid4()
            expires_at = now + self.session_ttl
            access = self.issuer.issue(user.email, user.role, session_id, expires_at)
            uow.sessions.add(
                Session(
                    id=session_id,
                    user_id=user.id,
                    refresh_token_hash=refresh_token_hash(refresh_token),
                    created_at=now,
                    expires_at=expires_at,
                    access_expires_at=access.expires_at,
                )
            )
            uow.commit()
        return IssuedSession(access, refresh_token, _seconds(expires_at - now))

    def refresh(self, refresh_token: str) -> IssuedSession:
        """A new access token and refresh token; the presented one is spent. Reusing a spent one ends
        the session (RFC 9700 4.14.2: one of its holders is not its owner)."""
        now = self.clock()
        presented = refresh_token_hash(refresh_token)
        with self.uow() as uow:
            session = uow.sessions.by_refresh_hash(presented)
            if session is None:
                reused = uow.sessions.spent(presented)
                if reused is not None and uow.sessions.revoke(reused, now, "refresh-token-reuse"):
                    uow.commit()
                    log.warning(
                        "spent refresh token presented again: session ended",
                        extra={"session_id": str(reused)},
                    )
                raise InvalidRefreshToken()
            user = uow.users.get(session.user_id)
            if not session.active(now) or user is None or user.disabled:
                raise InvalidRefreshToken()
            new_token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
            access = self.issuer.issue(user.email, user.role, session.id, session.expires_at)
            uow.sessions.rotate(session, refresh_token_hash(new_token), access.expires_at)
            uow.commit()
        return IssuedSession(access, new_token, _seconds(session.expires_at - now))

    def logout(self, session_id: uuid.UUID) -> None:
        with self.uow() as uow:
            ended = uow.sessions.revoke(session_id, self.clock(), "logout")
            uow.commit()
        if ended:
            log.info("session ended", extra={"session_id": str(session_id), "reason": "logout"})

    def update_user(
        self, user_id: uuid.UUID, *, caller: str, disabled: bool | None, role: Role | None
    ) -> User:
        """Disable, enable or change the role of a user; disabling or a new role ends their sessions
        (tokens carry the role, so the old one must not outlive the change)."""
        with self.uow() as uow:
            user = uow.users.lock(user_id)
            if user is None:
                raise UnknownUser()
            turned_off = disabled is True and not user.disabled
            new_role = role is not None and role != user.role
            if user.email == caller and (turned_off or new_role):
                raise OwnAccount()
            uow.users.update(user_id, disabled=disabled, role=role)
            ended = 0
            if turned_off or new_role:
                ended = uow.sessions.revoke_user(
                    user_id, self.clock(), "disabled" if turned_off else "role-changed"
                )
            uow.commit()
            updated = uow.users.get(user_id)
        assert updated is not None
        log.info(
            "user updated",
            extra={
                "user_id": str(user_id),
                "disabled": updated.disabled,
                "role": updated.role.value,
                "sessions_ended": ended,
            },
        )
        return updated

    def change_password(self, email: str, session_id: uuid.UUID, current: str, new: str, client: str) -> None:
        """Set a new password after checking the current one; every other session of the user ends.

        Wrong current passwords count as failed logins for the email and client, so a stolen access
        token does not open an unthrottled way to guess the password.
        """
        check_new_password(new)
        email = normalize_email(email)
        now = self.clock()
        pair, whole_client = account_key(email, client), client_key(client)
        with self.uow() as uow:
            uow.failures.lock([pair, whole_client])
            retry_after = self._retry_after(uow, [pair, whole_client], now)
            if retry_after is not None:
                raise TooManyAttempts(retry_after)
            user = uow.users.get_by_email(email)
        if user is None or user.disabled:
            raise InvalidCredentials()
        if not self.hasher.verify(current, user.password_hash):
            with self.uow() as uow:
                uow.failures.record(pair, now)
                uow.failures.record(whole_client, now)
                uow.commit()
            log.info("password change refused: wrong current password", extra={"user_id": str(user.id)})
            raise WrongCurrentPassword()
        new_hash = self.hasher.hash(new)
        with self.uow() as uow:
            uow.users.lock(user.id)
            uow.users.set_password_hash(user.id, new_hash)
            ended = uow.sessions.revoke_user(user.id, self.clock(), "password-changed", keep=session_id)
            uow.commit()
        log.info("password changed", extra={"user_id": str(user.id), "sessions_ended": ended})

    def revocations(self, after: int, limit: int) -> tuple[list[Revocation], int, bool]:
        with self.uow() as uow:
            return uow.sessions.revocations(after, self.clock(), limit)

    def _retry_after(self, uow: UnitOfWork, keys: list[Key], now: datetime) -> int | None:
        """Seconds the caller must wait before this attempt, or None if it may proceed."""
        since = self.policy.window_start(now)
        waits = []
        for key in keys:
            failures, latest = uow.failures.tally(key, since)
            if self.policy.retry_after(key, failures, latest, now) is None:
                continue
            failures, latest = uow.failures.tally(key, since, include_pending=False)
            # Held back by real failures: until their delay has passed. Held back only by attempts still
            # in flight: those end within a bcrypt check, so a second is enough.
            waits.append(self.policy.retry_after(key, failures, latest, now) or 1)
        return max(waits) if waits else None

    def unlock(self, user_id: uuid.UUID) -> None:
        """Forget every client's failures on this user's account (an ADMIN's remedy for its owner)."""
        with self.uow() as uow:
            user = uow.users.get(user_id)
            if user is None:
                raise UnknownUser()
            uow.failures.clear_account(user.email)
            uow.commit()
        log.info("login throttle cleared", extra={"user_id": str(user_id)})

    def create_user(self, email: str, password: str, role: Role) -> User:
        return create_user(email, password, role, uow=self.uow, hasher=self.hasher, clock=self.clock)

    def list_users(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        with self.uow() as uow:
            return uow.users.list(limit=limit, offset=offset), uow.users.count()


def _seconds(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds()))


def create_user(
    email: str,
    password: str,
    role: Role,
    *,
    uow: Callable[[], UnitOfWork],
    hasher: PasswordHasher,
    clock: Clock,
) -> User:
    check_new_password(password)
    email = normalize_email(email)
    with uow() as work:
        if work.users.get_by_email(email) is not None:
            raise DuplicateEmail(email)
    # Hashing happens outside any transaction: it is the slow part and needs no connection.
    user = User(
        id=uuid.uuid4(), email=email, password_hash=hasher.hash(password), role=role, created_at=clock()
    )
    with uow() as work:
        work.users.add(user)
        work.commit()
    log.info("user created", extra={"user_id": str(user.id), "role": role.value})
    return user


def seed_demo_user(*, uow: Callable[[], UnitOfWork], hasher: PasswordHasher, clock: Clock) -> bool:
    """Create the demo ADMIN unless it exists; True if it was created. Safe to run twice or concurrently."""
    try:
        create_user(DEMO_EMAIL, DEMO_PASSWORD, Role.ADMIN, uow=uow, hasher=hasher, clock=clock)
    except DuplicateEmail:
        return False
    return True
