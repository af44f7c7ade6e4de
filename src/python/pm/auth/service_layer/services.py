"""The auth use cases: log in, create and list users, seed the demo user."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from pm.auth.domain.model import (
    DuplicateEmail,
    InvalidCredentials,
    Role,
    TooManyAttempts,
    UnknownUser,
    User,
    check_new_password,
    normalize_email,
)
from pm.auth.domain.throttle import Key, ThrottlePolicy, account_key, client_key
from pm.auth.service_layer.ports import IssuedToken, PasswordHasher, TokenIssuer, UnitOfWork

log = logging.getLogger(__name__)

DEMO_EMAIL = "testuser@test.com"
DEMO_PASSWORD = "password123"  # noqa: S105 - the documented demo account of the product contract

Clock = Callable[[], datetime]


class AuthService:
    """Use cases sharing one set of collaborators; each call opens its own unit(s) of work."""

    def __init__(
        self,
        *,
        uow: Callable[[], UnitOfWork],
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        policy: ThrottlePolicy,
        clock: Clock,
    ) -> None:
        self.uow = uow
        self.hasher = hasher
        self.issuer = issuer
        self.policy = policy
        self.clock = clock

    def login(self, email: str, password: str, client: str) -> IssuedToken:
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
        if user is None or not matches:
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
        return self.issuer.issue(user.email, user.role)

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
