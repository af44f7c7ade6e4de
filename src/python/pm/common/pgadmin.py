"""Whole PostgreSQL databases made and dropped over an admin connection (the benchmark runners, the tests).

The services never call this: each is given its database URL and migrates it.
"""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"

_DISCONNECT = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n AND pid <> pg_backend_pid()"
)


def create_database(admin_url: str, name: str) -> str:
    """A new, empty database `name` (dropped first if it exists); its URL, with the admin's credentials."""
    _admin(admin_url, name, f'CREATE DATABASE "{name}"')
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    """Drop `name`, disconnecting whoever still uses it."""
    _admin(admin_url, name)


def _admin(admin_url: str, name: str, *then: str) -> None:
    """Disconnect whoever uses `name`, drop it if it exists, then run `then` (autocommit)."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(_DISCONNECT), {"n": name})
            for statement in (f'DROP DATABASE IF EXISTS "{name}"', *then):
                conn.execute(text(statement))
    finally:
        engine.dispose()
