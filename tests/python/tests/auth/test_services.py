"""Unit tests of the auth use cases with in-memory fakes (no database, no HTTP, no bcrypt)."""

from __future__ import annotations

import copy
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pm.auth.domain.model import (
    DuplicateEmail,
    InvalidCredentials,
    Role,
    Session,
    TooManyAttempts,
    User,
    WeakPassword,
)
from pm.auth.domain.throttle import ThrottlePolicy
from pm.auth.service_layer.ports import (
    FailureLog,
    IssuedToken,
    Revocation,
    SessionStore,
    UnitOfWork,
    UserRepository,
)
from pm.auth.service_layer.services import AuthService, seed_demo_user


class FakeUsers(UserRepository):
    def __init__(self) -> None:
        self.rows: dict[str, User] = {}

    def get_by_email(self, email: str) -> User | None:
        return self.rows.get(email)

    def add(self, user: User) -> None:
        if user.email in self.rows:
            raise DuplicateEmail(user.email)
        self.rows[user.email] = user

    def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        email = next(e for e, u in self.rows.items() if u.id == user_id)
        self.rows[email] = dataclasses.replace(self.rows[email], password_hash=password_hash)

    def list(self, *, limit: int, offset: int) -> list[User]:
        return sorted(self.rows.values(), key=lambda u: (u.created_at, u.email))[offset : offset + limit]

    def count(self) -> int:
        return len(self.rows)

    def get_by_id(self, user_id: uuid.UUID) -> User | None:
        return next((u for u in self.rows.values() if u.id == user_id), None)

    def lock(self, user_id: uuid.UUID) -> User | None:
        return self.get_by_id(user_id)

    def update(self, user_id: uuid.UUID, *, disabled: bool | None = None, role: Role | None = None) -> None:
        user = self.get_by_id(user_id)
        assert user is not None
        self.rows[user.email] = dataclasses.replace(
            user,
            disabled=user.disabled if disabled is None else disabled,
            role=user.role if role is None else role,
        )


class FakeSessions(SessionStore):
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, Session] = {}
        self.spent_hashes: dict[str, uuid.UUID] = {}
        self.feed: list[Revocation] = []

    def add(self, session: Session) -> None:
        self.rows[session.id] = session

    def by_refresh_hash(self, token_hash: str) -> Session | None:
        return next((s for s in self.rows.values() if s.refresh_token_hash == token_hash), None)

    def spent(self, token_hash: str) -> uuid.UUID | None:
        return self.spent_hashes.get(token_hash)

    def rotate(self, session: Session, new_hash: str, access_expires_at: datetime) -> None:
        self.spent_hashes[session.refresh_token_hash] = session.id
        self.rows[session.id] = dataclasses.replace(
            session, refresh_token_hash=new_hash, access_expires_at=access_expires_at
        )

    def revoke(self, session_id: uuid.UUID, at: datetime, reason: str) -> bool:
        session = self.rows[session_id]
        if session.revoked_at is not None:
            return False
        self.rows[session_id] = dataclasses.replace(session, revoked_at=at)
        self.feed.append(Revocation(len(self.feed) + 1, session_id, session.access_expires_at))
        return True

    def revoke_user(
        self, user_id: uuid.UUID, at: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> int:
        mine = [s.id for s in self.rows.values() if s.user_id == user_id and s.id != keep]
        return sum(self.revoke(session_id, at, reason) for session_id in mine)

    def revocations(self, after: int, now: datetime, limit: int) -> tuple[list[Revocation], int, bool]:
        later = [r for r in self.feed if r.cursor > after]
        found = later[:limit]
        return [r for r in found if r.until > now], found[-1].cursor if found else after, len(later) > limit

    def prune(self, now: datetime) -> None:
        pass


class FakeFailures(FailureLog):
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, datetime]] = []
        self.ids: list[int] = []
        self.pending: set[int] = set()

    def lock(self, keys: list[tuple[str, str]]) -> None:
        pass  # one thread: nothing runs in between

    def record(self, scope: str, subject: str, at: datetime, *, pending: bool = False) -> int:
        self.rows.append((scope, subject, at))
        self.ids.append(max(self.ids, default=0) + 1)
        if pending:
            self.pending.add(self.ids[-1])
        return self.ids[-1]

    def confirm(self, ids: list[int]) -> None:
        self.pending -= set(ids)

    def delete(self, ids: list[int]) -> None:
        kept = [(i, r) for i, r in zip(self.ids, self.rows, strict=True) if i not in ids]
        self.ids, self.rows = [i for i, _ in kept], [r for _, r in kept]

    def nth_most_recent(
        self, scope: str, subject: str, n: int, since: datetime, *, include_pending: bool = True
    ) -> datetime | None:
        times = sorted(
            (
                t
                for i, (s, k, t) in zip(self.ids, self.rows, strict=True)
                if s == scope and k == subject and t > since and (include_pending or i not in self.pending)
            ),
            reverse=True,
        )
        return times[n - 1] if len(times) >= n else None

    def clear(self, scope: str, subject: str) -> None:
        self.delete([i for i, r in zip(self.ids, self.rows, strict=True) if (r[0], r[1]) == (scope, subject)])

    def prune(self, before: datetime) -> None:
        self.delete([i for i, r in zip(self.ids, self.rows, strict=True) if r[2] <= before])


class FakeUnitOfWork(UnitOfWork):
    """Shared state; writes become visible only on commit, like a real transaction."""

    def __init__(self, users: FakeUsers, failures: FakeFailures, sessions: FakeSessions) -> None:
        self._users, self._failures, self._sessions = users, failures, sessions
        self.commits = 0

    def __enter__(self) -> UnitOfWork:
        self.users = copy.deepcopy(self._users)
        self.failures = copy.deepcopy(self._failures)
        self.sessions = copy.deepcopy(self._sessions)
        return self

    def commit(self) -> None:
        assert isinstance(self.users, FakeUsers) and isinstance(self.failures, FakeFailures)
        assert isinstance(self.sessions, FakeSessions)
        self._users.rows = self.users.rows
        self._sessions.__dict__.update(copy.deepcopy(self.sessions.__dict__))
        self._failures.rows, self._failures.ids = self.failures.rows, self.failures.ids
        self._failures.pending = self.failures.pending
        self.commits += 1

    def rollback(self) -> None:
        pass


class FakeHasher:
    """`hashed:<password>` is current; `old:<password>` stands for a hash made at an older cost."""

    dummy_hash = "hashed:<dummy>"

    def __init__(self) -> None:
        self.checked: list[str] = []

    def hash(self, password: str) -> str:
        return f"hashed:{password}"

    def verify(self, password: str, password_hash: str) -> bool:
        self.checked.append(password_hash)
        return password_hash in (f"hashed:{password}", f"old:{password}")

    def needs_rehash(self, password_hash: str) -> bool:
        return password_hash.startswith("old:")


class FakeIssuer:
    def issue(self, subject: str, role: Role, session_id: uuid.UUID, not_after: datetime) -> IssuedToken:
        return IssuedToken(token=f"token-for:{subject}:{role.value}", expires_in=60, expires_at=not_after)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def world() -> dict[str, Any]:
    users, failures, hasher, clock = FakeUsers(), FakeFailures(), FakeHasher(), Clock()
    sessions = FakeSessions()
    service = AuthService(
        uow=lambda: FakeUnitOfWork(users, failures, sessions),
        hasher=hasher,
        issuer=FakeIssuer(),
        policy=ThrottlePolicy(
            max_failures_per_email=3, max_failures_per_client=5, window=timedelta(minutes=5)
        ),
        clock=clock,
    )
    service.create_user("Alice@Example.com", "alice-password", Role.ADMIN)
    return {"service": service, "users": users, "failures": failures, "hasher": hasher, "clock": clock}


def test_login_issues_a_token_for_the_stored_role(world: dict[str, Any]) -> None:
    issued = world["service"].login("ALICE@example.com", "alice-password", "10.0.0.1")
    assert issued.access.token == "token-for:alice@example.com:ADMIN"


def test_unknown_email_is_checked_against_the_dummy_hash(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        world["service"].login("bob@example.com", "whatever-pw", "10.0.0.1")
    assert world["hasher"].checked == [FakeHasher.dummy_hash]


def test_failures_are_recorded_for_the_email_and_the_client(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        world["service"].login("alice@example.com", "wrong", "10.0.0.1")
    assert {(s, k) for s, k, _ in world["failures"].rows} == {
        ("email", "alice@example.com"),
        ("client", "10.0.0.1"),
    }


def test_email_lock_refuses_the_right_password_until_the_window_passes(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.login("alice@example.com", "wrong", "10.0.0.1")
        clock.advance(10)
    with pytest.raises(TooManyAttempts) as locked:
        service.login("alice@example.com", "alice-password", "10.0.0.2")
    # The first of the three failures leaves the 300 s window 300 - 30 s after it happened.
    assert locked.value.retry_after_seconds == 270
    hashes_checked = len(world["hasher"].checked)
    clock.advance(270)
    assert service.login("alice@example.com", "alice-password", "10.0.0.2").access.token
    assert len(world["hasher"].checked) == hashes_checked + 1


def test_locked_attempts_do_not_extend_the_lock(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            service.login("alice@example.com", "wrong", "10.0.0.1")
    for _ in range(5):
        clock.advance(30)
        with pytest.raises(TooManyAttempts):
            service.login("alice@example.com", "wrong", "10.0.0.1")
    clock.advance(150)
    assert service.login("alice@example.com", "alice-password", "10.0.0.1").access.token


def test_attempts_in_flight_count_but_ask_for_a_short_wait(world: dict[str, Any]) -> None:
    failures, clock = world["failures"], world["clock"]
    for _ in range(3):
        failures.record("email", "alice@example.com", clock(), pending=True)
    with pytest.raises(TooManyAttempts) as locked:
        world["service"].login("alice@example.com", "alice-password", "10.0.0.1")
    assert locked.value.retry_after_seconds == 1
    failures.delete(list(failures.ids))
    assert world["service"].login("alice@example.com", "alice-password", "10.0.0.1").access.token


def test_failed_attempts_are_no_longer_pending(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        world["service"].login("alice@example.com", "wrong", "10.0.0.1")
    assert world["failures"].pending == set()


def test_client_lock_covers_every_email(world: dict[str, Any]) -> None:
    service = world["service"]
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            service.login(f"guess{n}@example.com", "wrong", "10.0.0.9")
    with pytest.raises(TooManyAttempts):
        service.login("alice@example.com", "alice-password", "10.0.0.9")
    assert service.login("alice@example.com", "alice-password", "10.0.0.10").access.token


def test_success_resets_the_email_counter_but_not_the_client_counter(world: dict[str, Any]) -> None:
    service, failures = world["service"], world["failures"]
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            service.login("alice@example.com", "wrong", "10.0.0.1")
    service.login("alice@example.com", "alice-password", "10.0.0.1")
    assert [(s, k) for s, k, _ in failures.rows] == [("client", "10.0.0.1")] * 2


def test_old_failures_are_pruned(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    with pytest.raises(InvalidCredentials):
        service.login("alice@example.com", "wrong", "10.0.0.1")
    clock.advance(301)
    with pytest.raises(InvalidCredentials):
        service.login("alice@example.com", "wrong", "10.0.0.2")
    assert [k for _, k, _ in world["failures"].rows] == ["alice@example.com", "10.0.0.2"]


def test_login_moves_an_old_hash_to_the_current_cost(world: dict[str, Any]) -> None:
    users = world["users"]
    users.rows["alice@example.com"] = dataclasses.replace(
        users.rows["alice@example.com"], password_hash="old:alice-password"
    )
    assert world["service"].login("alice@example.com", "alice-password", "10.0.0.1").access.token
    assert users.rows["alice@example.com"].password_hash == "hashed:alice-password"


def test_create_user_normalizes_the_email_and_stores_only_the_hash(world: dict[str, Any]) -> None:
    user = world["service"].create_user("  Bob@Example.COM ", "bob-password", Role.USER)
    assert user.email == "bob@example.com"
    assert world["users"].rows["bob@example.com"].password_hash == "hashed:bob-password"


def test_create_user_refuses_duplicates_case_insensitively(world: dict[str, Any]) -> None:
    with pytest.raises(DuplicateEmail):
        world["service"].create_user("ALICE@EXAMPLE.COM", "another-password", Role.USER)


@pytest.mark.parametrize("password", ["short", "\u00e9" * 37])
def test_create_user_refuses_passwords_bcrypt_cannot_take(world: dict[str, Any], password: str) -> None:
    with pytest.raises(WeakPassword):
        world["service"].create_user("carol@example.com", password, Role.USER)
    assert "carol@example.com" not in world["users"].rows


def test_list_users_pages_in_creation_order(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    for name in ("zed", "amy"):
        clock.advance(1)
        service.create_user(f"{name}@example.com", "password-123", Role.USER)
    users, total = service.list_users(limit=2, offset=1)
    assert total == 3
    assert [u.email for u in users] == ["zed@example.com", "amy@example.com"]


def test_seed_demo_user_is_idempotent(world: dict[str, Any]) -> None:
    def seed() -> bool:
        return seed_demo_user(
            uow=lambda: FakeUnitOfWork(world["users"], world["failures"], FakeSessions()),
            hasher=world["hasher"],
            clock=world["clock"],
        )

    assert seed() is True
    assert seed() is False
    assert world["users"].rows["testuser@test.com"].role is Role.ADMIN


def test_throttle_policy_rounds_up_and_never_says_zero() -> None:
    policy = ThrottlePolicy(max_failures_per_email=1, max_failures_per_client=1, window=timedelta(seconds=60))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.retry_after(None, now) is None
    assert policy.retry_after(now - timedelta(seconds=60), now) is None
    assert policy.retry_after(now - timedelta(seconds=59.9), now) == 1
    assert policy.retry_after(now - timedelta(seconds=0.5), now) == 60
