"""Database plumbing: an engine from a SQLAlchemy URL (PostgreSQL or SQLite), transactions, Alembic."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from pm.common import tracing
from pm.common.logs import scrub

log = logging.getLogger(__name__)


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
    """An engine plus a session factory; the unit of work is `with db.transaction() as session:`."""

    def __init__(self, url: str, **engine_options: int) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_options)
        tracing.trace_statements(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

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


def migrate_or_exit(service: str, variable: str, url: str, migrations_dir: Path) -> None:
    """Migrate at start; an unusable database stops the service with one line naming the variable."""
    try:
        migrate(url, migrations_dir)
    except SQLAlchemyError as exc:
        reason = scrub(str(exc).strip().splitlines()[0])[:200]
        sys.stderr.write(f"{service}: cannot migrate {variable}: {reason}\n")
        sys.exit(1)


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
