"""Database failures as one error type, so that the entry points (api/, cli/) recognise them
without importing a driver: what failed, in one line, and whether it is "busy or
unreachable now" (the transaction was rolled back; the same request may be sent again)."""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from loyalty_engine.domain.errors import LoyaltyError
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


def describe_failure(error: BaseException) -> str:
    """A failure as it is stored and logged: a stable code and one sentence, never the SQL,
    its parameters or a traceback (they name members, and run to kilobytes)."""
    if isinstance(error, LoyaltyError):
        return f"{error.code}: {_first_line(str(error))}"
    if isinstance(error, DBAPIError) and error.orig is not None:
        # The driver's own first line ("UNIQUE constraint failed: t.c", "deadlock
        # detected"); PostgreSQL puts the offending values on a DETAIL line after it.
        cause = error.orig
        return f"database_error: {type(cause).__name__}: {_first_line(str(cause))}"
    if isinstance(error, SQLAlchemyError):
        return f"database_error: {type(error).__name__}"
    if isinstance(error, OverflowError):
        return "out_of_range: a date or number is out of range"
    return (f"internal_error: {type(error).__name__} (run with LOYALTY_DEBUG=1 to log the "
            "details)")


def _first_line(text: str, limit: int = 300) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit - 1] + "…"
