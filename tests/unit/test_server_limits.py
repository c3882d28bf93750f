"""Which database errors are "busy or unreachable now" (a 503 the till may retry) rather than
faults (a 500), and the server's limits read from the environment its workers inherit."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from loyalty_engine.api.limits import LimitError, Limits, from_environment, to_environment
from loyalty_engine.store.database import WriterTurnTimeoutError
from loyalty_engine.store.retry import is_unavailable


def _wrapped(orig: Exception, invalidated: bool = False) -> OperationalError:
    return OperationalError("INSERT ...", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(("error", "unavailable"), [
    (sqlite3.OperationalError("database is locked"), True),
    (_wrapped(sqlite3.OperationalError("database is locked")), True),
    (WriterTurnTimeoutError("database is locked: another write held it"), True),
    (sqlite3.OperationalError("no such table: members"), False),
    (psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), True),
    (_wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),
    (_wrapped(psycopg.OperationalError("server closed the connection unexpectedly")), True),
    (_wrapped(psycopg.OperationalError("x"), invalidated=True), True),
    (psycopg.errors.TooManyConnections("too many clients"), True),
    (psycopg.errors.DeadlockDetected("deadlock detected"), True),
    (PoolTimeoutError("QueuePool limit of size 8 overflow 16 reached"), True),
    # Faults: a full disk, a limit, a bug are not cured by sending the request again.
    (psycopg.errors.DiskFull("could not extend file"), False),
    (psycopg.errors.ProgramLimitExceeded("index row size exceeds maximum"), False),
    (ProgrammingError("SELECT", {}, psycopg.errors.UndefinedTable("no such")), False),
    (ValueError("database is locked"), False),
])
def test_only_busy_or_lost_databases_are_unavailable(error: Exception,
                                                     unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable


def test_the_limits_come_from_the_environment_the_server_sets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOYALTY_LOCK_TIMEOUT", "LOYALTY_MAX_HEADER_BYTES",
                 "LOYALTY_HEADER_TIMEOUT", "LOYALTY_BODY_TIMEOUT"):
        monkeypatch.setenv(name, "")  # unset, and restored after to_environment below
    assert from_environment() == Limits(10.0, 16384, 10.0, 30.0)
    monkeypatch.setenv("LOYALTY_LOCK_TIMEOUT", "2.5")
    assert from_environment().lock_timeout == 2.5
    to_environment(Limits(1.0, 4096, 0.5, 3.0))
    assert from_environment() == Limits(1.0, 4096, 0.5, 3.0)


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan"])
def test_a_limit_that_is_not_a_positive_number_is_refused(
        monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LOYALTY_HEADER_TIMEOUT", raw)
    with pytest.raises(LimitError, match=r"LOYALTY_HEADER_TIMEOUT=.* must be a positive number"):
        from_environment()


def test_a_header_limit_must_be_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_MAX_HEADER_BYTES", "1.5")
    with pytest.raises(LimitError, match="positive whole number"):
        from_environment()
