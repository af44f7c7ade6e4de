"""Database plumbing: an engine from a SQLAlchemy URL (PostgreSQL or SQLite), the unit of work, Alembic, and
the column shapes the services' tables share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pm.common.errors import DATABASE_UNAVAILABLE as DATABASE_UNAVAILABLE
from pm.common.errors import StoreUnavailable as StoreUnavailable

log = logging.getLogger(__name__)


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
# INTEGER PRIMARY KEY, and its INTEGER holds 64 bits anyway.
BIGINT_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def timestamp(name: str, *, nullable: bool = False) -> sa.Column[datetime]:
    """A column holding an instant, with its zone (timestamptz on PostgreSQL; SQLite drops it, `utc` puts
    it back on reading)."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def utc(value: datetime) -> datetime:
    """A timestamp read back from the database, in UTC: SQLite returns them without a zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def row_by_id(session: Session, table: sa.Table, key: Any, *, for_update: bool = False) -> Any:
    """The row of `table` whose `id` is `key`, or None; `for_update` locks it until the transaction ends."""
    query = sa.select(table).where(table.c.id == key)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).first()


def make_engine(url: str, *, pool_size: int = 5, statement_timeout_ms: int = 15000) -> Engine:
    """An engine with bounded waits: connect, statement and pool checkout all time out.

    `hide_parameters`: SQLAlchemy's error messages would otherwise carry the bound values (names,
    emails, password hashes) into every log line and traceback that mentions them."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 15},
            pool_pre_ping=True,
            hide_parameters=True,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        # Connections killed under us (restarts, pg_terminate_backend) are detected and replaced.
        pool_pre_ping=True,
        pool_recycle=1800,
        hide_parameters=True,
        connect_args={
            "connect_timeout": 5,
            "options": f"-c statement_timeout={statement_timeout_ms}",
            "application_name": "pm",
        },
    )


class Database:
    """An engine plus a session factory. Use cases work through a `UnitOfWork`; background jobs (outbox
    relay, retention) that own their statements use `with db.transaction() as session:`."""

    def __init__(self, url: str, **engine_options: int) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_options)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> Session:
        return self._sessions()

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


class UnitOfWork:
    """One transaction: `with uow:` opens it, `uow.commit()` keeps it, leaving without a commit rolls it
    back. A service's unit of work subclasses this and attaches its repositories in `attach(session)`.
    A database that cannot be reached surfaces as StoreUnavailable (mapped to 503 / UNAVAILABLE)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._session: Session | None = None

    def attach(self, session: Session) -> None:
        """Build the repositories over `session` (one transaction for all of them)."""

    @property
    def session(self) -> Session:
        assert self._session is not None, "use the unit of work inside `with`"
        return self._session

    def __enter__(self) -> Any:
        self._session = self.database.session()
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
