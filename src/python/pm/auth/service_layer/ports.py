"""What the use cases need from the outside world; adapters implement it, unit tests fake it."""

from __future__ import annotations

import abc
import uuid
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol

from pm.auth.domain.model import Role, User
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


class TokenIssuer(Protocol):
    def issue(self, subject: str, role: Role) -> IssuedToken: ...
