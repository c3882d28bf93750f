"""Shared fixtures: real throw-away databases, SQLite and PostgreSQL.

`db_url` is parametrised over both databases. The PostgreSQL half runs when
LOYALTY_TEST_POSTGRES_URL is set or a server answers at 127.0.0.1:5432, and is skipped
(and the run's header says so) otherwise; LOYALTY_REQUIRE_POSTGRES=1 (as .ci/run sets)
turns a missing server into a failure. Each test gets a database of its own: a SQLite
file copied from a migrated template, or a PostgreSQL database cloned from one. Cloning
costs PostgreSQL a checkpoint-sized write and dropping one a checkpoint, which on a slow
disk is a second per test; so a PostgreSQL database a test is done with is emptied (its
rows deleted, its sequences restarted, after closing any connection left open) and
handed to the next test, unless its schema was changed, in which case it is dropped.
Either way tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from loyalty_engine.store import migrate
from loyalty_engine.store.database import open_engine
from loyalty_engine.store.tables import metadata

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = os.environ.get("LOYALTY_TEST_POSTGRES_URL") or DEFAULT_PG
REQUIRE_PG = os.environ.get("LOYALTY_REQUIRE_POSTGRES") == "1"
ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"


def _pg_conninfo(database: str | None = None) -> str:
    url = make_url(PG_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def _probe_postgres() -> str | None:
    """None when the server answers, else the reason it does not."""
    try:
        with psycopg.connect(_pg_conninfo(), connect_timeout=3, autocommit=True):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


PG_PROBLEM = _probe_postgres()
PG_TEMPLATE = f"loyalty_tpl_{uuid.uuid4().hex[:10]}"
# Migrated databases tests have finished with, emptied, ready for the next test.
_PG_POOL: list[str] = []
_PG_MADE: set[str] = set()


def pytest_report_header(config: pytest.Config) -> list[str]:
    where = make_url(PG_URL).render_as_string(hide_password=True)
    if PG_PROBLEM is None:
        return [f"PostgreSQL suite: RUNNING against {where}"]
    required = " (required: these tests will FAIL)" if REQUIRE_PG else ""
    return [f"PostgreSQL suite: SKIPPED{required} - no server at {where}: {PG_PROBLEM}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if PG_PROBLEM is not None:
        terminalreporter.write_line(
            "PostgreSQL suite was SKIPPED: set LOYALTY_TEST_POSTGRES_URL or start a server "
            "at 127.0.0.1:5432 to run it.", yellow=True, bold=True,
        )


def _admin(sql: str) -> None:
    with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def need_postgres() -> None:
    """Skip the test without a PostgreSQL server, or fail it when the server is required."""
    if PG_PROBLEM is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (LOYALTY_REQUIRE_POSTGRES=1) but: {PG_PROBLEM}")
        pytest.skip(f"no PostgreSQL server: {PG_PROBLEM}")


def drop_database(name: str) -> None:
    """Drop a throw-away PostgreSQL database a test made, even with sessions still open."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL template database that each test clones."""
    need_postgres()
    _admin(f'CREATE DATABASE "{PG_TEMPLATE}"')
    engine = open_engine(_pg_conninfo(PG_TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    yield PG_TEMPLATE
    for name in sorted(_PG_MADE):
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)')


def _emptied(name: str) -> bool:
    """Empty a database a test has finished with, for the next one; False (and nothing
    done) when the test changed its schema or left something that cannot be undone."""
    try:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
        with psycopg.connect(_pg_conninfo(name), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            tables = {row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
            version = conn.execute("SELECT version_num FROM alembic_version").fetchall() \
                if "alembic_version" in tables else []
            if version != [(migrate.SCHEMA_REVISION,)] or tables != {
                *metadata.tables, "alembic_version"}:
                return False
            # DELETE, not TRUNCATE: a test leaves a few rows, and TRUNCATE makes new files
            # for every table and index. The ledger's append-only triggers refuse it;
            # replica mode skips them (and the foreign keys' order).
            with conn.transaction():
                conn.execute("SET LOCAL session_replication_role = replica")
                for table in sorted(metadata.tables):
                    conn.execute(f'DELETE FROM "{table}"')  # type: ignore[arg-type]
                for (sequence,) in conn.execute(
                        "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
                ).fetchall():
                    conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')  # type: ignore[arg-type]
        return True
    except psycopg.Error:
        return False


def new_sqlite_url(tmp_path: Path, template: Path | None) -> str:
    """A fresh SQLite file URL, migrated when a template is given."""
    path = tmp_path / f"loyalty-{uuid.uuid4().hex[:8]}.db"
    if template is not None:
        shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """The database kind a test runs on."""
    return str(request.param)


def _fresh_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                    migrated: bool) -> Iterator[str]:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template") if migrated else None
        yield new_sqlite_url(tmp_path, template)
        return
    template = request.getfixturevalue("pg_template")
    if migrated and _PG_POOL:
        name = _PG_POOL.pop()
    else:
        name = f"loyalty_test_{uuid.uuid4().hex[:12]}"
        _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"' if migrated
               else f'CREATE DATABASE "{name}"')
        _PG_MADE.add(name)
    try:
        yield _pg_conninfo(name)
    finally:
        if migrated and _emptied(name):
            _PG_POOL.append(name)
        else:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            _PG_MADE.discard(name)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, migrated database of the current backend."""
    yield from _fresh_database(backend, tmp_path, request, migrated=True)


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh database with no tables at all."""
    yield from _fresh_database(backend, tmp_path, request, migrated=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh, migrated database."""
    eng = open_engine(db_url)
    yield eng
    eng.dispose()
