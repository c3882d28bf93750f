"""Retrying short write transactions that PostgreSQL aborted to break a deadlock.

Two writers that touch the same members can deadlock on PostgreSQL (a long import holds a
member's balance row while a till inserts a purchase the import reaches later). The
database aborts one of them; every write here is idempotent, so running the whole
transaction again is always safe and, once the other writer commits, turns into a replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy.exc import DBAPIError

from loyalty_engine.store.database import joined_plainly

T = TypeVar("T")
ATTEMPTS = 6


def is_transient(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure, raw from psycopg or wrapped."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(cause, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure)


def retry_transient(work: Callable[[], T], attempts: int = ATTEMPTS) -> T:
    """Run work, again after a deadlock or serialization failure, up to `attempts` times.
    Inside a transaction joined without savepoints, once: its owner retries the whole."""
    if joined_plainly():
        return work()
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except (DBAPIError, psycopg.Error) as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")
