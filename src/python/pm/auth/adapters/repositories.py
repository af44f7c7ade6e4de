"""SQL implementations of the auth repositories and unit of work (PostgreSQL or SQLite)."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as OrmSession

from pm.auth.adapters.tables import login_failures, revocations, sessions, spent_refresh_tokens, users
from pm.auth.domain.model import DuplicateEmail, Role, Session, User
from pm.auth.domain.throttle import ACCOUNT, Key, account_prefix
from pm.auth.service_layer.ports import FailureLog, Revocation, SessionStore, UnitOfWork, UserRepository
from pm.common import db
from pm.common.db import from_row


def _user(row: Any) -> User:
    return from_row(User, row, password_hash=row.password, role=Role(row.role), disabled=bool(row.disabled))


class SqlUserRepository(UserRepository):
    def __init__(self, session: OrmSession) -> None:
        self.session = session

    def get_by_email(self, email: str) -> User | None:
        row = self.session.execute(sa.select(users).where(users.c.email == email)).first()
        return _user(row) if row else None

    def get(self, user_id: uuid.UUID) -> User | None:
        row = db.row_by_id(self.session, users, user_id)
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

    def lock(self, user_id: uuid.UUID) -> User | None:
        row = db.row_by_id(self.session, users, user_id, for_update=True)
        return _user(row) if row else None

    def update(self, user_id: uuid.UUID, *, disabled: bool | None = None, role: Role | None = None) -> None:
        values: dict[str, Any] = {}
        if disabled is not None:
            values["disabled"] = disabled
        if role is not None:
            values["role"] = role.value
        if values:
            self.session.execute(users.update().where(users.c.id == user_id).values(**values))


def _session(row: Any) -> Session:
    return from_row(Session, row)


class SqlSessionStore(SessionStore):
    def __init__(self, session: OrmSession) -> None:
        self.session = session

    def add(self, session: Session) -> None:
        self.session.execute(sessions.insert().values(**asdict(session)))

    def by_refresh_hash(self, token_hash: str) -> Session | None:
        # FOR UPDATE: of two refreshes with one token, the second waits, then no longer finds it current
        # (PostgreSQL re-checks the condition on the updated row) and is treated as a reuse.
        query = sa.select(sessions).where(sessions.c.refresh_token_hash == token_hash).with_for_update()
        row = self.session.execute(query).first()
        return _session(row) if row else None

    def spent(self, token_hash: str) -> uuid.UUID | None:
        query = sa.select(spent_refresh_tokens.c.session_id).where(
            spent_refresh_tokens.c.token_hash == token_hash
        )
        value = self.session.execute(query).scalar()
        return cast(uuid.UUID, value) if value is not None else None

    def rotate(self, session: Session, new_hash: str, access_expires_at: datetime) -> None:
        self.session.execute(
            spent_refresh_tokens.insert().values(
                token_hash=session.refresh_token_hash, session_id=session.id, expires_at=session.expires_at
            )
        )
        self.session.execute(
            sessions.update()
            .where(sessions.c.id == session.id)
            .values(
                refresh_token_hash=new_hash,
                refreshed_at=sa.func.now(),
                access_expires_at=access_expires_at,
            )
        )

    def _feed_lock(self) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            # Revocations are written one transaction at a time, so their ids become visible in order
            # and a reader's cursor never skips one committed late. They are rare (logout, disable).
            self.session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('auth:revocations'))"))

    def _revoke(self, condition: Any, at: datetime, reason: str) -> int:
        self._feed_lock()
        ended = self.session.execute(
            sessions.update()
            .where(condition, sessions.c.revoked_at.is_(None), sessions.c.expires_at > at)
            .values(revoked_at=at, revoked_reason=reason)
            .returning(sessions.c.id, sessions.c.access_expires_at)
        ).all()
        if ended:
            self.session.execute(
                revocations.insert(),
                [{"session_id": row.id, "revoked_at": at, "until": row.access_expires_at} for row in ended],
            )
        return len(ended)

    def revoke(self, session_id: uuid.UUID, at: datetime, reason: str) -> bool:
        return self._revoke(sessions.c.id == session_id, at, reason) > 0

    def revoke_user(
        self, user_id: uuid.UUID, at: datetime, reason: str, *, keep: uuid.UUID | None = None
    ) -> int:
        condition = sessions.c.user_id == user_id
        if keep is not None:
            condition = sa.and_(condition, sessions.c.id != keep)
        return self._revoke(condition, at, reason)

    def revocations(self, after: int, now: datetime, limit: int) -> tuple[list[Revocation], int, bool]:
        query = (
            sa.select(revocations).where(revocations.c.id > after).order_by(revocations.c.id).limit(limit + 1)
        )
        rows = self.session.execute(query).all()
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = int(rows[-1].id) if rows else after
        found = [Revocation(int(row.id), row.session_id, row.until) for row in rows]
        return [entry for entry in found if entry.until > now], cursor, more

    def prune(self, now: datetime) -> None:
        self.session.execute(spent_refresh_tokens.delete().where(spent_refresh_tokens.c.expires_at <= now))
        self.session.execute(sessions.delete().where(sessions.c.expires_at <= now))
        # A day after its last access token expired, no verifier can need a revocation any more.
        self.session.execute(revocations.delete().where(revocations.c.until <= now - timedelta(days=1)))


class SqlFailureLog(FailureLog):
    def __init__(self, session: OrmSession) -> None:
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
        return int(count), latest

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


class SqlUnitOfWork(db.UnitOfWork, UnitOfWork):
    def attach(self, session: OrmSession) -> None:
        self.users = SqlUserRepository(session)
        self.failures = SqlFailureLog(session)
        self.sessions = SqlSessionStore(session)
