import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from pm.common.db import Database, StoreUnavailable, UnitOfWork, downgrade, from_row, migrate, timestamp

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


def test_a_timestamp_column_reads_back_the_same_instant_in_utc(database_url: str) -> None:
    """SQLite keeps no zone: without the column type an instant came back naive, and one written in
    another zone came back as the wrong instant."""
    metadata = sa.MetaData()
    stamps = sa.Table(
        "stamps", metadata, sa.Column("id", sa.Integer, primary_key=True), timestamp("at", nullable=True)
    )
    db = Database(database_url)
    metadata.create_all(db.engine)
    in_tokyo = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=9)))
    with db.transaction() as session:
        session.execute(stamps.insert(), [{"id": 1, "at": in_tokyo}, {"id": 2, "at": None}])
    with db.engine.connect() as conn:
        read = dict(conn.execute(sa.select(stamps.c.id, stamps.c.at)).all())
        latest = conn.execute(sa.select(sa.func.max(stamps.c.at))).scalar_one()
    assert read[1] == in_tokyo and read[1].tzinfo is not None and read[1].utcoffset() == timedelta(0)
    assert read[1] == datetime(2026, 12, 3, 0, 30, tzinfo=UTC)
    assert read[2] is None
    # An aggregate keeps the column's type, so it is read back in UTC too.
    assert latest == in_tokyo and latest.utcoffset() == timedelta(0)
    metadata.drop_all(db.engine)
    db.dispose()


@dataclass(frozen=True)
class _Widget:
    id: int
    name: str
    colour: str | None


def test_from_row_copies_the_columns_named_like_the_fields_and_takes_the_converted_ones(
    database_url: str,
) -> None:
    migrate(database_url, MIGRATIONS)
    db = Database(database_url)
    with db.transaction() as session:
        session.execute(sa.text("INSERT INTO widget (id, name, colour) VALUES (7, 'cog', 'red')"))
        row = session.execute(sa.text("SELECT id, name, colour FROM widget")).one()
        assert from_row(_Widget, row) == _Widget(7, "cog", "red")
        assert from_row(_Widget, row, colour=row.colour.upper()) == _Widget(7, "cog", "RED")
        narrow = session.execute(sa.text("SELECT id, name FROM widget")).one()
        # A field with neither a column nor a converted value is an error, not a silent default.
        with pytest.raises(KeyError, match="colour"):
            from_row(_Widget, narrow)
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


def _backend_pid(connection: sa.Connection) -> int:
    """The server process behind a checked-out connection, asked of libpq (no round trip)."""
    return int(connection.connection.dbapi_connection.get_backend_pid())  # type: ignore[union-attr]


def _activity(monitor: sa.Engine, pid: int) -> tuple[str, object] | None:
    """The last statement and state change of backend `pid` (a new monitor connection each time: the
    statistics are a snapshot per transaction)."""
    with monitor.connect() as conn:
        row = conn.execute(
            sa.text("SELECT query, state_change FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).first()
    return (row.query, row.state_change) if row else None


def _monitor(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")


def test_checking_out_a_pooled_connection_sends_nothing_to_the_server(postgres_url: str) -> None:
    # pool_pre_ping sent `SELECT 1` on every checkout: a round trip per transaction.
    db, monitor = Database(postgres_url), _monitor(postgres_url)
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT 'first use'"))
        pid = _backend_pid(conn)
    before = _activity(monitor, pid)
    assert before is not None
    with db.engine.connect() as conn:
        assert _backend_pid(conn) == pid  # the same pooled connection
        assert _activity(monitor, pid) == before
        assert conn.execute(sa.text("SELECT 2")).scalar_one() == 2
    db.dispose()
    monitor.dispose()


def test_pooled_connections_the_server_ended_are_replaced_before_anyone_uses_them(postgres_url: str) -> None:
    db, monitor = Database(postgres_url), _monitor(postgres_url)
    held = [db.engine.connect() for _ in range(3)]
    pids = [_backend_pid(conn) for conn in held]
    for conn in held:
        conn.execute(sa.text("SELECT 1"))
        conn.close()
    with monitor.connect() as conn:
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    deadline = time.monotonic() + 10
    while any(_activity(monitor, pid) is not None for pid in pids):
        assert time.monotonic() < deadline, "the backends did not end"
        time.sleep(0.05)
    # Every one of the three pooled connections is dead; none of them reaches a caller.
    for _ in range(4):
        with UnitOfWork(db) as uow:
            assert uow.session.execute(sa.text("SELECT 1")).scalar_one() == 1
    db.ping()
    with db.engine.connect() as conn:
        assert _backend_pid(conn) not in pids
    db.dispose()
    monitor.dispose()


def test_a_connection_cut_in_use_fails_its_own_unit_of_work_only(postgres_url: str) -> None:
    db, monitor = Database(postgres_url), _monitor(postgres_url)
    idle = [db.engine.connect() for _ in range(2)]
    idle_pids = [_backend_pid(conn) for conn in idle]
    for conn in idle:
        conn.close()
    with pytest.raises(StoreUnavailable):
        with UnitOfWork(db) as uow:
            pid = int(uow.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
            with monitor.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            uow.session.execute(sa.text("SELECT pg_sleep(0.2)"))
            uow.session.execute(sa.text("SELECT 1"))
    # The failure invalidated the pool: the next units of work get new connections and succeed.
    for _ in range(3):
        with UnitOfWork(db) as uow:
            assert int(uow.session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()) not in idle_pids
    db.dispose()
    monitor.dispose()
