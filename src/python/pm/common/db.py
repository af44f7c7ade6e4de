"""Database plumbing: an engine from a SQLAlchemy URL (PostgreSQL or SQLite), the unit of work, Alembic, and
the column shapes the services' tables share."""

from __future__ import annotations

import logging
import select
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pm.common.errors import DATABASE_UNAVAILABLE as DATABASE_UNAVAILABLE
from pm.common.errors import StoreUnavailable as StoreUnavailable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)
T = TypeVar("T", bound="DataclassInstance")


@contextmanager
def unavailable_as_store_unavailable() -> Iterator[None]:
    """Turn the database's own failures into StoreUnavailable (the class name only: the driver's message
    may quote the statement and its values)."""
    try:
        yield
    except DATABASE_UNAVAILABLE as exc:
        raise StoreUnavailable(type(exc).__name__) from exc


def dialect_insert(session: Session) -> Any:
    """`insert` with ON CONFLICT clauses for the dialect the session talks to (PostgreSQL or SQLite)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


# A 64-bit integer key: SQLite only makes a column the rowid (auto-incremented) when it is declared exactly
# INTEGER PRIMARY KEY, and its INTEGER holds 64 bits anyway. Migrations use it too: never change it (that
# would change what the old migrations create).
BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """An instant, stored with its zone (timestamptz on PostgreSQL) and always read back in UTC: SQLite keeps
    no zone, so an instant is written to it in UTC and given the zone again on reading. SQLAlchemy's own
    recipe for zone-aware timestamps ("TypeDecorator Recipes"), so no reader has to remember it."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    """A column holding an instant, read back in UTC whatever the database (`UtcDateTime`)."""
    return sa.Column(name, UtcDateTime(), nullable=nullable)


def from_row(cls: type[T], row: Any, **converted: Any) -> T:
    """The dataclass `cls` made from a row: each field is the column of its name, except the fields in
    `converted`, given by the caller (a column of another name or one that needs converting)."""
    columns = row._mapping  # Row's public mapping view (named with "_" so that no column can hide it)
    copied = {f.name: columns[f.name] for f in fields(cls) if f.name not in converted}
    return cls(**copied, **converted)


def row_by_id(session: Session, table: sa.Table, key: Any, *, for_update: bool = False) -> Any:
    """The row of `table` whose `id` is `key`, or None; `for_update` locks it until the transaction ends."""
    query = sa.select(table).where(table.c.id == key)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).first()


def make_engine(
    url: str, *, pool_size: int = 5, statement_timeout_ms: int = 15000, autocommit: bool = False
) -> Engine:
    """An engine with bounded waits: connect, statement and pool checkout all time out.

    `hide_parameters`: SQLAlchemy's error messages would otherwise carry the bound values (names,
    emails, password hashes) into every log line and traceback that mentions them.

    `autocommit`: every connection of the pool stays in autocommit (each statement commits on its own;
    no BEGIN, COMMIT or ROLLBACK is sent). A pool of its own: switching a pooled connection in and out
    of autocommit costs a `SET default_transaction_isolation` round trip with psycopg2."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, hide_parameters=True, **options
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        # No `pool_pre_ping`: it costs a `SELECT 1` round trip on every checkout (three per patient create).
        # Disconnects are handled as SQLAlchemy's "optimistic" approach describes, plus a free check:
        # - a connection the server closed while it sat in the pool (pg_terminate_backend, a restart: the
        #   server sends a FATAL message and closes the socket) is found at checkout by `_server_spoke`,
        #   which only looks at the socket, and replaced before anyone uses it;
        # - a connection that fails in use raises a disconnect error (StoreUnavailable: 503 / UNAVAILABLE
        #   for the request in flight); SQLAlchemy then invalidates every connection of the pool that is
        #   older than the failure, so the next checkouts reconnect;
        # - `pool_recycle` retires connections after 30 minutes (firewalls, idle timeouts on the way).
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "pm",
        },
        **options,
    )
    event.listen(engine, "checkout", _server_spoke)
    return engine


def _server_spoke(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """On checkout: a pooled connection at rest has nothing to read. If its socket is readable, the server
    has said something (almost always its termination notice, or the end of the stream): ping it, and if
    the ping fails have the pool replace it and every connection older than it (they were most likely
    ended by the same restart). No round trip in the usual case."""
    try:
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        if not poller.poll(0):
            return
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as error:  # noqa: BLE001 - any failure here means the connection is unusable
        raise exc.InvalidatePoolError(type(error).__name__) from None


class Database:
    """An engine plus a session factory. Use cases work through a `UnitOfWork`; background jobs (outbox
    relay, retention) that own their statements use `with db.transaction() as session:`."""

    def __init__(self, url: str, *, pool_size: int = 5, statement_timeout_ms: int = 15000) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, statement_timeout_ms=statement_timeout_ms)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Lone reads: a small pool of autocommit connections (no connection is made until one is used).
        self.autocommit_engine = make_engine(
            url, pool_size=max(1, pool_size // 2), statement_timeout_ms=statement_timeout_ms, autocommit=True
        )
        self._autocommit_sessions = sessionmaker(self.autocommit_engine, expire_on_commit=False)

    def session(self, *, autocommit: bool = False) -> Session:
        return (self._autocommit_sessions if autocommit else self._sessions)()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Commit on success, roll back on any exception, always close."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
        self.autocommit_engine.dispose()


class UnitOfWork:
    """One transaction: `with uow:` opens it, `uow.commit()` keeps it, leaving without a commit rolls it
    back. A service's unit of work subclasses this and attaches its repositories in `attach(session)`.
    A database that cannot be reached surfaces as StoreUnavailable (mapped to 503 / UNAVAILABLE).

    `autocommit=True`: no transaction, each statement stands alone. For a lone read (one round trip
    instead of BEGIN, the read and ROLLBACK); never for writes that must commit together."""

    def __init__(self, database: Database, *, autocommit: bool = False) -> None:
        self.database = database
        self.autocommit = autocommit
        self._session: Session | None = None

    def attach(self, session: Session) -> None:
        """Build the repositories over `session` (one transaction for all of them)."""

    @property
    def session(self) -> Session:
        assert self._session is not None, "use the unit of work inside `with`"
        return self._session

    def __enter__(self) -> Any:
        self._session = self.database.session(autocommit=self.autocommit)
        self.attach(self._session)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        session, self._session = self._session, None
        assert session is not None
        try:
            session.rollback()
        finally:
            session.close()
        if isinstance(exc, DATABASE_UNAVAILABLE):
            raise StoreUnavailable(type(exc).__name__) from exc

    def commit(self) -> None:
        with unavailable_as_store_unavailable():
            self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()


def alembic_config(url: str, migrations_dir: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Alembic interpolates %; escape it so passwords with % survive.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, migrations_dir: Path, revision: str = "head") -> None:
    """Bring the schema up to `revision` (idempotent)."""
    log.info("applying migrations", extra={"target": revision, "migrations": migrations_dir.parent.name})
    command.upgrade(alembic_config(url, migrations_dir), revision)


def downgrade(url: str, migrations_dir: Path, revision: str = "base") -> None:
    command.downgrade(alembic_config(url, migrations_dir), revision)


def run_alembic_env() -> None:
    """The body of every service's `migrations/env.py`: online migrations on the configured URL."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            context.configure(connection=connection, render_as_batch=engine.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
