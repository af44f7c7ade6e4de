"""What the use cases need from the outside world; adapters implement it, unit tests fake it."""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol

from pm.auth.domain.model import Role, Session, User
from pm.auth.domain.throttle import Key


class UserRepository(abc.ABC):
    @abc.abstractmethod
    def get_by_email(self, email: str) -> User | None: ...

    @abc.abstractmethod
    def get(self, user_id: uuid.UUID) -> User | None: ...

    @abc.abstractmethod
    def add(self, user: User) -> None:
        """Store a new user; raise DuplicateEmail if the (normalized) email is taken."""

    @abc.abstractmethod
    def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None: ...

    @abc.abstractmethod
    def list(self, *, limit: int, offset: int) -> list[User]:
        """Users in creation order."""

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def lock(self, user_id: uuid.UUID) -> User | None:
        """The user, locked until the transaction ends: sessions are started and ended one at a time per
        user, so a session cannot start while the user is being disabled."""

    @abc.abstractmethod
    def update(
        self, user_id: uuid.UUID, *, disabled: bool | None = None, role: Role | None = None
    ) -> None: ...


@dataclass(frozen=True)
class Revocation:
    """An ended session, and when the last access token it issued expires (after which it is moot)."""

    cursor: int
    session_id: uuid.UUID
    until: datetime


class SessionStore(abc.ABC):
    @abc.abstractmethod
    def add(self, session: Session) -> None: ...

    @abc.abstractmethod
    def by_refresh_hash(self, token_hash: str) -> Session | None:
        """The session whose current refresh token has this hash, locked until the transaction ends."""

    @abc.abstractmethod
    def spent(self, token_hash: str) -> uuid.UUID | None:
        """The session a spent (already rotated) refresh token belonged to."""

    @abc.abstractmethod
    def rotate(self, session: Session, new_hash: str, access_expires_at: datetime) -> None:
        """Make `new_hash` the session's refresh token; the old one is kept as spent."""

    @abc.abstractmethod
    def revoke(self, session_id: uuid.UUID, at: datetime, reason: str) -> bool:
        """End a session (publishing it on the revocation feed); False if it had already ended."""

    @abc.abstractmethod
    def revoke_user(
        self, user_id: uuid.UUID, at: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> int:
        """End every active session of a user but `keep`; the number ended."""

    @abc.abstractmethod
    def revocations(self, after: int, now: datetime, limit: int) -> tuple[list[Revocation], int, bool]:
        """Up to `limit` revocations after cursor `after` (those still relevant at `now`), the cursor to
        ask from next, and whether more follow."""

    @abc.abstractmethod
    def prune(self, now: datetime) -> None:
        """Forget expired sessions, their spent tokens and revocations nobody needs any more."""


class FailureLog(abc.ABC):
    """Failed logins per throttle key (see pm.auth.domain.throttle), kept in shared storage."""

    @abc.abstractmethod
    def lock(self, keys: list[Key]) -> None:
        """Serialise attempts on these keys until the transaction ends."""

    @abc.abstractmethod
    def record(self, key: Key, at: datetime, *, pending: bool = False) -> int:
        """Store a failure (pending: an attempt whose outcome is not known yet); returns its id."""

    @abc.abstractmethod
    def confirm(self, ids: list[int]) -> None:
        """Pending attempts turned out to be failures."""

    @abc.abstractmethod
    def delete(self, ids: list[int]) -> None: ...

    @abc.abstractmethod
    def tally(
        self, key: Key, since: datetime, *, include_pending: bool = True
    ) -> tuple[int, datetime | None]:
        """How many failures `key` has after `since`, and the time of the latest (None if there is none)."""

    @abc.abstractmethod
    def clear(self, key: Key) -> None: ...

    @abc.abstractmethod
    def clear_account(self, email: str) -> None:
        """Forget the failures of every client on this account."""

    @abc.abstractmethod
    def prune(self, before: datetime) -> None:
        """Forget failures older than any window can look at."""


class UnitOfWork(abc.ABC):
    """One transaction: commit explicitly, everything else is rolled back on exit."""

    users: UserRepository
    failures: FailureLog
    sessions: SessionStore

    def __enter__(self) -> UnitOfWork:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.rollback()

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def rollback(self) -> None: ...


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password: str, password_hash: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool:
        """True if the hash was made with other settings (e.g. a lower cost) than new hashes get."""

    @property
    def dummy_hash(self) -> str:
        """A hash of no real password with the current cost, checked for unknown emails."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    """What a login or a refresh hands out: an access token and the refresh token that continues it."""

    access: IssuedToken
    refresh_token: str = field(repr=False)
    refresh_expires_in: int


class TokenIssuer(Protocol):
    def issue(self, subject: str, role: Role, session_id: uuid.UUID, not_after: datetime) -> IssuedToken:
        """An access token for a session; it never outlives `not_after` (the session's end)."""
