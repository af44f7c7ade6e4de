"""SQL implementations of the auth repositories and unit of work (PostgreSQL or SQLite)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pm.auth.adapters.tables import login_failures, users
from pm.auth.domain.model import DuplicateEmail, Role, User
from pm.auth.domain.throttle import ACCOUNT, Key, account_prefix
from pm.auth.service_layer.ports import FailureLog, UnitOfWork, UserRepository
from pm.common.db import Database


def _utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        email=row.email,
        password_hash=row.password,
        role=Role(row.role),
        created_at=_utc(row.created_at),
    )


class SqlUserRepository(UserRepository):
    def __init__(self, session: Session) -> None:
        self.session = session

    def get_by_email(self, email: str) -> User | None:
        row = self.session.execute(sa.select(users).where(users.c.email == email)).first()
        return _user(row) if row else None

    def get(self, user_id: uuid.UUID) -> User | None:
        row = self.session.execute(sa.select(users).where(users.c.id == user_id)).first()
        return _user(row) if row else None

    def add(self, user: User) -> None:
        try:
            self.session.execute(
                users.insert().values(
                    id=user.id,
                    email=user.email,
                    password=user.password_hash,
                    role=user.role.value,
                    created_at=user.created_at,
                )
            )
        except IntegrityError:
            raise DuplicateEmail(user.email) from None

    def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        self.session.execute(users.update().where(users.c.id == user_id).values(password=password_hash))

    def list(self, *, limit: int, offset: int) -> list[User]:
        query = sa.select(users).order_by(users.c.created_at, users.c.email).limit(limit).offset(offset)
        return [_user(row) for row in self.session.execute(query)]

    def count(self) -> int:
        return int(self.session.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())


class SqlFailureLog(FailureLog):
    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self, keys: list[Key]) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            # Transaction-scoped advisory locks, taken in one order so two attempts never deadlock.
            for scope, subject in sorted({(key.scope, key.subject) for key in keys}):
                self.session.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                    {"key": f"login:{scope}:{subject}"},
                )
        else:
            # SQLite allows one writer at a time: a write takes the database lock until commit.
            self.session.execute(login_failures.delete().where(sa.false()))

    def record(self, key: Key, at: datetime, *, pending: bool = False) -> int:
        inserted = self.session.execute(
            login_failures.insert().values(
                scope=key.scope, subject=key.subject, failed_at=at, pending=pending
            )
        )
        # An INSERT yields a CursorResult; its key works on SQLite (lastrowid) and PostgreSQL alike.
        primary_key = cast(CursorResult[Any], inserted).inserted_primary_key
        assert primary_key is not None
        return int(primary_key[0])

    def confirm(self, ids: list[int]) -> None:
        self.session.execute(
            login_failures.update().where(login_failures.c.id.in_(ids)).values(pending=False)
        )

    def delete(self, ids: list[int]) -> None:
        self.session.execute(login_failures.delete().where(login_failures.c.id.in_(ids)))

    def tally(
        self, key: Key, since: datetime, *, include_pending: bool = True
    ) -> tuple[int, datetime | None]:
        query = sa.select(sa.func.count(), sa.func.max(login_failures.c.failed_at)).where(
            login_failures.c.scope == key.scope,
            login_failures.c.subject == key.subject,
            login_failures.c.failed_at > since,
        )
        if not include_pending:
            query = query.where(login_failures.c.pending.is_(False))
        count, latest = self.session.execute(query).one()
        return int(count), _utc(latest) if latest is not None else None

    def clear(self, key: Key) -> None:
        self.session.execute(
            login_failures.delete().where(
                login_failures.c.scope == key.scope, login_failures.c.subject == key.subject
            )
        )

    def clear_account(self, email: str) -> None:
        self.session.execute(
            login_failures.delete().where(
                login_failures.c.scope == ACCOUNT,
                login_failures.c.subject.startswith(account_prefix(email), autoescape=True),
            )
        )

    def prune(self, before: datetime) -> None:
        self.session.execute(login_failures.delete().where(login_failures.c.failed_at <= before))


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, database: Database) -> None:
        self.database = database
        self.session: Session | None = None

    def __enter__(self) -> UnitOfWork:
        self.session = Session(self.database.engine, expire_on_commit=False)
        self.users = SqlUserRepository(self.session)
        self.failures = SqlFailureLog(self.session)
        return self

    def __exit__(self, *args: Any) -> None:
        assert self.session is not None
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self.session = None

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()

    def rollback(self) -> None:
        assert self.session is not None
        self.session.rollback()
