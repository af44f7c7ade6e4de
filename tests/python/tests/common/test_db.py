import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from pm.common.db import Database, downgrade, migrate

MIGRATIONS = Path(__file__).parent / "sample_migrations"


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'test.db'}"
    return request.getfixturevalue("postgres_url")


def tables(db: Database) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names())


def columns(db: Database, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(db.engine).get_columns(table)}


def test_migrate_applies_every_revision_and_is_idempotent(database_url: str) -> None:
    migrate(database_url, MIGRATIONS)
    migrate(database_url, MIGRATIONS)
    db = Database(database_url)
    assert "widget" in tables(db)
    assert columns(db, "widget") == {"id", "name", "colour"}
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    db.dispose()


def test_downgrade_step_by_step_then_to_base(database_url: str) -> None:
    migrate(database_url, MIGRATIONS)
    downgrade(database_url, MIGRATIONS, "0001")
    db = Database(database_url)
    assert columns(db, "widget") == {"id", "name"}
    db.dispose()
    downgrade(database_url, MIGRATIONS, "base")
    db = Database(database_url)
    assert "widget" not in tables(db)
    db.dispose()


def test_transaction_rolls_back_everything_on_error(database_url: str) -> None:
    migrate(database_url, MIGRATIONS)
    db = Database(database_url)
    with db.transaction() as session:
        session.execute(sa.text("INSERT INTO widget (name) VALUES ('a')"))
    with pytest.raises(IntegrityError):
        with db.transaction() as session:
            session.execute(sa.text("INSERT INTO widget (name) VALUES ('b')"))
            session.execute(sa.text("INSERT INTO widget (name) VALUES ('a')"))
    with db.engine.connect() as conn:
        names = conn.execute(sa.text("SELECT name FROM widget ORDER BY name")).scalars().all()
    assert names == ["a"]
    db.dispose()


def test_ping_fails_when_the_server_is_unreachable() -> None:
    db = Database("postgresql+psycopg2://postgres@127.0.0.1:1/none")
    with pytest.raises(Exception):
        db.ping()
    db.dispose()


def test_a_slow_statement_is_cut_off_by_the_statement_timeout(postgres_url: str) -> None:
    db = Database(postgres_url, statement_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="statement timeout"):
        with db.transaction() as session:
            session.execute(sa.text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 2
    db.ping()
    db.dispose()


def test_migrate_accepts_a_url_whose_password_contains_percent_signs(postgres_url: str) -> None:
    # The local server trusts every login, so the password only has to survive Alembic's config parser.
    url = make_url(postgres_url).set(password="p%ss w0rd").render_as_string(hide_password=False)
    assert "%25" in url
    migrate(url, MIGRATIONS)
    db = Database(url)
    assert "widget" in tables(db)
    db.dispose()
