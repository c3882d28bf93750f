"""Retrying short write transactions that PostgreSQL aborted to break a deadlock, and
telling the errors that mean "the database is busy or unreachable now" from the rest.

Two writers that touch the same members can deadlock on PostgreSQL (a long import holds a
member's balance row while a till inserts a purchase the import reaches later). The
database aborts one of them; every write here is idempotent, so running the whole
transaction again is always safe and, once the other writer commits, turns into a replay.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

T = TypeVar("T")
ATTEMPTS = 6


def is_transient(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure, raw from psycopg or wrapped."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def is_unavailable(exc: BaseException) -> bool:
    """True when a request failed only because the database could not serve it now: a lock
    waited for beyond the lock timeout (SQLite's "database is locked", PostgreSQL's
    lock_timeout), a connection lost or refused, or no pooled connection free in time. The
    transaction was rolled back, so the same request may be sent again."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    # No SQLSTATE: the client lost the connection. Else by class: 08 connection exception,
    # 57P operator intervention (shutdown, restart), 53300 too many connections, 55P03 lock
    # not available (lock_timeout), 57014 cancelled (a statement_timeout), 40 rollback (a
    # deadlock still there after retry_transient's retries). Not a full disk or a limit hit.
    return state is None or state.startswith(("08", "57P", "40")) or state in (
        "53300", "55P03", "57014")


def retry_transient(work: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run work, again after a deadlock or serialization failure, up to `attempts` times.
    Only the owner of a unit of work retries, and only the whole of it
    (store/unit_of_work.in_write_unit): a retry inside a transaction PostgreSQL has
    aborted would fail again."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except (DBAPIError, psycopg.Error) as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")
