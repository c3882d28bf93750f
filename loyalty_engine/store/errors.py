"""Database failures as one error type, so that the entry points (api/, cli/) recognise them
without importing a driver: what failed, in one line, and whether it is "busy or
unreachable now" (the transaction was rolled back; the same request may be sent again)."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from loyalty_engine.store.retry import is_unavailable

# Every error that comes from the database layer: SQLAlchemy's (which wrap the drivers'),
# and the drivers' own, raised raw where code talks to the driver directly (the catalog's
# signature read, SQLite's BEGIN, psycopg's COPY).
DATABASE_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, psycopg.Error)


class DatabaseError(Exception):
    """A failure of the database, not of the request: the driver's error class (`name`),
    its first line (`detail`; PostgreSQL puts the offending values on later lines), and
    whether the database could not serve it now (`unavailable`: a lock waited for past
    the lock timeout, a connection lost or refused, no pooled connection free in time)."""

    def __init__(self, name: str, detail: str, unavailable: bool) -> None:
        self.name = name
        self.detail = detail
        self.unavailable = unavailable
        super().__init__(f"{name}: {detail}" if detail else name)


def as_database_error(exc: BaseException) -> DatabaseError | None:
    """exc as a DatabaseError when the database raised it: a driver's error, raw or wrapped
    by SQLAlchemy, or the pool's timeout; None for anything else (SQLAlchemy's own usage
    errors are our bugs, not the database's)."""
    if isinstance(exc, DatabaseError):
        return exc
    if not isinstance(exc, DBAPIError | PoolTimeoutError | sqlite3.Error | psycopg.Error):
        return None
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    lines = str(cause).strip().splitlines()
    return DatabaseError(type(cause).__name__, lines[0] if lines else "", is_unavailable(exc))
