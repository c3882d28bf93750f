"""Opening the database: URL resolution, SQLite pragmas, and write transactions."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_URL = "sqlite:///loyalty.db"
# How long a write waits for another writer's lock unless the caller states its own limit:
# on SQLite the busy timeout; on PostgreSQL no limit (a command-line import waits for tills).
DEFAULT_SQLITE_LOCK_TIMEOUT_S = 30.0


class DatabaseUrlError(ValueError):
    """A database URL the engine cannot use."""


class WriterTurnTimeoutError(sqlite3.OperationalError):
    """A write on SQLite waited its whole lock timeout for the writer before it: what SQLite
    itself reports as "database is locked", raised before a second wait in SQLite's own."""


def resolve_url(url: str | None = None) -> str:
    """The URL to use: the argument, else LOYALTY_DATABASE_URL, else ./loyalty.db.

    postgresql:// URLs are pointed at psycopg 3; relative SQLite paths are made absolute so
    that a message can say exactly which file was used.
    """
    raw = url or os.environ.get("LOYALTY_DATABASE_URL") or DEFAULT_URL
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            f"{raw!r} is not a database URL; use sqlite:///path/to/file.db or "
            "postgresql://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):  # postgres:// is how many hosts spell it
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            raise DatabaseUrlError("an in-memory SQLite database keeps nothing; give a file path")
        parsed = parsed.set(drivername="sqlite", database=str(Path(database).resolve()))
    else:
        raise DatabaseUrlError(f"{backend} is not supported; use SQLite or PostgreSQL")
    return parsed.render_as_string(hide_password=False)


def create_database(url: str) -> bool:
    """Create the PostgreSQL database a URL names if it does not exist (connecting to the
    server's `postgres` database with the same credentials); True when it was created.
    SQLite needs nothing: its file is created when the schema is."""
    parsed = make_url(resolve_url(url))
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    name = parsed.database
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s",
                                    {"n": name}).first() is not None:
                return False
            quoted = conn.dialect.identifier_preparer.quote_identifier(name)
            conn.exec_driver_sql(f"CREATE DATABASE {quoted}")
            return True
    finally:
        admin.dispose()


def describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def open_engine(url: str | None = None, lock_timeout: float | None = None,
                **kwargs: Any) -> Engine:
    """A SQLAlchemy engine; on SQLite with WAL, foreign keys, a busy timeout and real locking.

    `lock_timeout` (seconds) bounds how long a write waits for another transaction's lock
    before the driver gives up ("database is locked" on SQLite, LockNotAvailable on
    PostgreSQL); without it SQLite waits DEFAULT_SQLITE_LOCK_TIMEOUT_S and PostgreSQL as
    long as it takes."""
    resolved = resolve_url(url)
    if make_url(resolved).get_backend_name() == "sqlite":
        wait = DEFAULT_SQLITE_LOCK_TIMEOUT_S if lock_timeout is None else lock_timeout
        engine = create_engine(
            resolved, connect_args={"timeout": wait},
            execution_options={"loyalty_lock_timeout": wait}, **kwargs
        )
        _configure_sqlite(engine, round(wait * 1000))
        return engine
    if lock_timeout is not None:
        # A session setting of this engine's connections only (the server's pool): the same
        # bound as a SET LOCAL in every transaction, without its round trip per request.
        given = make_url(resolved).query.get("options")  # the URL's own, kept
        setting = f"-c lock_timeout={max(1, round(lock_timeout * 1000))}"
        kwargs.setdefault("connect_args", {})["options"] = " ".join(
            [*([given] if isinstance(given, str) else list(given or ())), setting])
    return create_engine(resolved, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin hook, not the driver, decide when transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB of page cache (the default is 2 MiB): big imports touch many index pages.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write transaction takes the write lock up front (BEGIN IMMEDIATE), so two writers
        # queue on the busy timeout instead of failing with "database is locked" mid-way.
        # Straight on the driver: SQLAlchemy's statement machinery would cost more than the
        # statement, on every transaction.
        raw: Any = conn.connection.dbapi_connection
        raw.execute("BEGIN IMMEDIATE" if conn.get_execution_options().get("loyalty_write")
                    else "BEGIN")


@contextmanager
def _writer_turn(engine: Engine) -> Iterator[None]:
    """On SQLite, wait for the writer before this one by a lock file beside the database.

    SQLite's own busy handler sleeps in steps of up to 100 ms, so writers that queue on it
    (two API workers, a till beside an import) lose most of their time asleep. The threads
    of one process queue on a lock of their own (woken at once), and the one at the front
    polls a flock every millisecond, which hands the turn between processes over at once.
    After the lock timeout it gives up as SQLite would ("database is locked"): going ahead
    would wait a second timeout in SQLite's handler behind the same writer."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # an in-memory database (a test's) has one connection and no file to lock
        return
    path = f"{database}.writer-lock"
    with _THREADS_LOCK:
        ours = _THREADS.setdefault(path, threading.Lock())
    wait = float(engine.get_execution_options().get("loyalty_lock_timeout",
                                                     DEFAULT_SQLITE_LOCK_TIMEOUT_S))
    deadline = time.monotonic() + wait
    queued = ours.acquire(timeout=wait)
    if not queued:
        raise _turn_timeout(wait)
    fd = -1
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise _turn_timeout(wait) from None
                    time.sleep(0.001)
        except OSError:
            pass  # no lock file here (read-only folder, a filesystem without flock): SQLite's
            # own locking still keeps writes apart, only more slowly
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # closing releases the flock
        if queued:
            ours.release()


def _turn_timeout(wait: float) -> WriterTurnTimeoutError:
    return WriterTurnTimeoutError(f"database is locked: another write held it for more than "
                                  f"the lock timeout ({wait:g} s)")


# One lock per SQLite file, for the threads of this process (see _writer_turn).
_THREADS: dict[str, threading.Lock] = {}
_THREADS_LOCK = threading.Lock()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one write transaction of its own: committed on success, rolled
    back on error. Only the owner of a unit of work opens one (store/unit_of_work.py):
    a use case handed a Connection writes in its caller's."""
    with _writer_turn(engine), engine.connect() as conn:
        conn = conn.execution_options(loyalty_write=True)
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one read-only transaction (a consistent snapshot)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def is_sqlite(engine: Engine | Connection) -> bool:
    """True when the database is SQLite."""
    return engine.dialect.name == "sqlite"
