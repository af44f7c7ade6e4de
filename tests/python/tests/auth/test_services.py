"""Unit tests of the auth use cases with in-memory fakes (no database, no HTTP, no bcrypt)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pm.auth.bootstrap import throttle_policy
from pm.auth.domain.model import (
    DuplicateEmail,
    InvalidCredentials,
    Role,
    Session,
    TooManyAttempts,
    UnknownUser,
    User,
    WeakPassword,
)
from pm.auth.domain.throttle import ACCOUNT, Key, ThrottlePolicy, account_key, account_prefix, client_key
from pm.auth.service_layer.ports import (
    FailureLog,
    IssuedToken,
    Revocation,
    SessionStore,
    UnitOfWork,
    UserRepository,
)
from pm.auth.service_layer.services import AuthService, seed_demo_user
from tests.auth.conftest import make_settings


class FakeUsers(UserRepository):
    def __init__(self) -> None:
        self.rows: dict[str, User] = {}

    def get_by_email(self, email: str) -> User | None:
        return self.rows.get(email)

    def get(self, user_id: uuid.UUID) -> User | None:
        return next((u for u in self.rows.values() if u.id == user_id), None)

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

    def lock(self, user_id: uuid.UUID) -> User | None:
        return self.get(user_id)

    def update(self, user_id: uuid.UUID, *, disabled: bool | None = None, role: Role | None = None) -> None:
        user = self.get(user_id)
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

    def lock(self, keys: list[Key]) -> None:
        pass  # one thread: nothing runs in between

    def record(self, key: Key, at: datetime, *, pending: bool = False) -> int:
        self.rows.append((key.scope, key.subject, at))
        self.ids.append(max(self.ids, default=0) + 1)
        if pending:
            self.pending.add(self.ids[-1])
        return self.ids[-1]

    def confirm(self, ids: list[int]) -> None:
        self.pending -= set(ids)

    def delete(self, ids: list[int]) -> None:
        kept = [(i, r) for i, r in zip(self.ids, self.rows, strict=True) if i not in ids]
        self.ids, self.rows = [i for i, _ in kept], [r for _, r in kept]

    def tally(
        self, key: Key, since: datetime, *, include_pending: bool = True
    ) -> tuple[int, datetime | None]:
        times = [
            t
            for i, (s, k, t) in zip(self.ids, self.rows, strict=True)
            if (s, k) == (key.scope, key.subject) and t > since and (include_pending or i not in self.pending)
        ]
        return len(times), max(times, default=None)

    def clear(self, key: Key) -> None:
        self.delete(
            [i for i, r in zip(self.ids, self.rows, strict=True) if (r[0], r[1]) == (key.scope, key.subject)]
        )

    def clear_account(self, email: str) -> None:
        prefix = account_prefix(email)
        self.delete(
            [
                i
                for i, r in zip(self.ids, self.rows, strict=True)
                if r[0] == ACCOUNT and r[1].startswith(prefix)
            ]
        )

    def prune(self, before: datetime) -> None:
        self.delete([i for i, r in zip(self.ids, self.rows, strict=True) if r[2] <= before])


POLICY = ThrottlePolicy(
    free_per_account=3,
    free_per_client=5,
    base_delay=timedelta(seconds=1),
    max_delay=timedelta(seconds=8),
    window=timedelta(hours=1),
)


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
        policy=POLICY,
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


def test_failures_are_recorded_for_the_account_client_pair_and_the_client(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        world["service"].login("alice@example.com", "wrong", "10.0.0.1")
    pair = account_key("alice@example.com", "10.0.0.1")
    assert {(s, k) for s, k, _ in world["failures"].rows} == {
        (pair.scope, pair.subject),
        ("client", "10.0.0.1"),
    }
    assert all("alice" not in k for _, k, _ in world["failures"].rows)


def _fail(service: AuthService, email: str, client: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentials):
            service.login(email, "wrong", client)


def test_a_strangers_failures_never_refuse_the_owner(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    _fail(service, "alice@example.com", "203.0.113.66", 3)
    with pytest.raises(TooManyAttempts):
        service.login("alice@example.com", "alice-password", "203.0.113.66")
    # The owner, from an address that has not been failing, is checked as if nothing had happened.
    assert service.login("alice@example.com", "alice-password", "10.0.0.1").access.token
    _fail(service, "alice@example.com", "10.0.0.1", 1)
    with pytest.raises(TooManyAttempts):
        service.login("alice@example.com", "alice-password", "203.0.113.66")
    clock.advance(1)
    assert service.login("alice@example.com", "alice-password", "10.0.0.1").access.token


def test_delays_double_after_the_free_failures_up_to_the_cap(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    _fail(service, "alice@example.com", "10.0.0.1", 3)
    waits = []
    for _ in range(6):
        with pytest.raises(TooManyAttempts) as refused:
            service.login("alice@example.com", "alice-password", "10.0.0.1")
        waits.append(refused.value.retry_after_seconds)
        clock.advance(refused.value.retry_after_seconds)
        _fail(service, "alice@example.com", "10.0.0.1", 1)
    assert waits == [1, 2, 4, 8, 8, 8]


def test_refused_attempts_do_not_extend_the_delay(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    _fail(service, "alice@example.com", "10.0.0.1", 3)
    clock.advance(0.5)
    for _ in range(5):
        with pytest.raises(TooManyAttempts):
            service.login("alice@example.com", "wrong", "10.0.0.1")
    clock.advance(0.5)
    assert service.login("alice@example.com", "alice-password", "10.0.0.1").access.token


def test_attempts_in_flight_count_but_ask_for_a_short_wait(world: dict[str, Any]) -> None:
    failures, clock = world["failures"], world["clock"]
    for _ in range(3):
        failures.record(account_key("alice@example.com", "10.0.0.1"), clock(), pending=True)
    with pytest.raises(TooManyAttempts) as refused:
        world["service"].login("alice@example.com", "alice-password", "10.0.0.1")
    assert refused.value.retry_after_seconds == 1
    failures.delete(list(failures.ids))
    assert world["service"].login("alice@example.com", "alice-password", "10.0.0.1").access.token


def test_failed_attempts_are_no_longer_pending(world: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        world["service"].login("alice@example.com", "wrong", "10.0.0.1")
    assert world["failures"].pending == set()


def test_client_delay_covers_every_email(world: dict[str, Any]) -> None:
    service = world["service"]
    for n in range(5):
        _fail(service, f"guess{n}@example.com", "10.0.0.9", 1)
    with pytest.raises(TooManyAttempts):
        service.login("alice@example.com", "alice-password", "10.0.0.9")
    assert service.login("alice@example.com", "alice-password", "10.0.0.10").access.token


def test_success_resets_the_pair_but_not_the_client_counter(world: dict[str, Any]) -> None:
    service, failures = world["service"], world["failures"]
    _fail(service, "alice@example.com", "10.0.0.1", 2)
    service.login("alice@example.com", "alice-password", "10.0.0.1")
    assert [(s, k) for s, k, _ in failures.rows] == [("client", "10.0.0.1")] * 2


def test_old_failures_are_pruned(world: dict[str, Any]) -> None:
    service, clock = world["service"], world["clock"]
    _fail(service, "alice@example.com", "10.0.0.1", 1)
    clock.advance(3601)
    _fail(service, "alice@example.com", "10.0.0.2", 1)
    pair = account_key("alice@example.com", "10.0.0.2")
    assert [(s, k) for s, k, _ in world["failures"].rows] == [(ACCOUNT, pair.subject), ("client", "10.0.0.2")]


def test_unlock_frees_every_client_on_that_account_only(world: dict[str, Any]) -> None:
    service, users = world["service"], world["users"]
    service.create_user("bob@example.com", "bob-password", Role.USER)
    for client in ("203.0.113.1", "203.0.113.2"):
        _fail(service, "alice@example.com", client, 3)
    _fail(service, "bob@example.com", "203.0.113.3", 3)
    service.unlock(users.rows["alice@example.com"].id)
    for client in ("203.0.113.1", "203.0.113.2"):
        _fail(service, "alice@example.com", client, 1)
    with pytest.raises(TooManyAttempts):
        service.login("bob@example.com", "bob-password", "203.0.113.3")
    # A client's failures on any account still count: unlocking one account frees no sprayer.
    assert sum(1 for s, k, _ in world["failures"].rows if (s, k) == ("client", "203.0.113.1")) == 4


def test_unlock_of_an_unknown_user_says_so(world: dict[str, Any]) -> None:
    with pytest.raises(UnknownUser):
        world["service"].unlock(uuid.uuid4())


def _attacker_failures(service: AuthService, clock: Clock, emails: Iterator[str], hours: int) -> list[float]:
    """Hours (since the start) of each failure an attacker gets by retrying as soon as Retry-After says."""
    start, end = clock(), clock() + timedelta(hours=hours)
    failed: list[float] = []
    email = next(emails)
    while clock() < end:
        try:
            service.login(email, "wrong-guess", "198.51.100.1")
        except TooManyAttempts as refused:
            clock.advance(refused.retry_after_seconds)
            continue
        except InvalidCredentials:
            failed.append((clock() - start) / timedelta(hours=1))
            email = next(emails)
    return failed


@pytest.mark.parametrize(
    ("spray", "first_hour", "per_hour_later"),
    [(False, 17, 4), (True, 32, 4)],
    ids=["one-account", "every-account"],
)
def test_failed_attempts_an_attacker_gets_per_hour_with_the_default_settings(
    world: dict[str, Any], spray: bool, first_hour: int, per_hour_later: int
) -> None:
    """The figures docs/reliability.md gives: one client against one account (the per-(account, client)
    schedule), and one client trying a new account each time (the per-client schedule)."""
    clock = world["clock"]
    service = AuthService(
        uow=lambda: FakeUnitOfWork(world["users"], world["failures"], FakeSessions()),
        hasher=world["hasher"],
        issuer=FakeIssuer(),
        policy=throttle_policy(make_settings(Path("unused"), "sqlite:///unused.db")),
        clock=clock,
    )
    emails = (
        (f"victim{n}@example.com" for n in itertools.count())
        if spray
        else itertools.repeat("alice@example.com")
    )
    failed = _attacker_failures(service, clock, emails, hours=26)
    assert sum(1 for hour in failed if hour < 1) == first_hour
    # A day later the window holds a day of failures: one attempt per longest delay (900 s).
    assert sum(1 for hour in failed if 25 <= hour < 26) == per_hour_later


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
    key = client_key("10.0.0.1")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert POLICY.retry_after(key, 9, None, now) is None
    assert POLICY.retry_after(key, 4, now, now) is None
    # Five failures (the free ones): the next attempt waits one base delay after the latest.
    assert POLICY.retry_after(key, 5, now - timedelta(seconds=1), now) is None
    assert POLICY.retry_after(key, 5, now - timedelta(seconds=0.9), now) == 1
    assert POLICY.retry_after(key, 7, now - timedelta(seconds=0.5), now) == 4
    assert POLICY.retry_after(key, 10_000, now, now) == 8
