"""Database errors as one type (store/errors.py): the drivers' errors, raw or wrapped by
SQLAlchemy, recognised with their first line and whether they mean "busy or unreachable
now"; anything else is not a database error."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError, InvalidRequestError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from loyalty_engine.store.errors import DATABASE_ERRORS, DatabaseError, as_database_error


def test_a_locked_sqlite_database_is_unavailable_raw_or_wrapped() -> None:
    raw = sqlite3.OperationalError("database is locked")
    wrapped = OperationalError("INSERT INTO members ...", {}, raw)
    for error in (raw, wrapped):
        failure = as_database_error(error)
        assert failure is not None
        assert (failure.name, failure.detail, failure.unavailable) == (
            "OperationalError", "database is locked", True)


def test_a_lost_postgresql_connection_and_a_pool_timeout_are_unavailable() -> None:
    lost = as_database_error(psycopg.OperationalError("server closed the connection"))
    assert lost is not None and lost.unavailable and lost.name == "OperationalError"
    pool = as_database_error(PoolTimeoutError("QueuePool limit of size 5 reached"))
    assert pool is not None and pool.unavailable and pool.name == "TimeoutError"


def test_a_constraint_failure_is_a_database_error_that_is_not_unavailable() -> None:
    cause = sqlite3.IntegrityError("UNIQUE constraint failed: members.member_id\nDETAIL")
    failure = as_database_error(IntegrityError("INSERT ...", {}, cause))
    assert failure is not None and not failure.unavailable
    # The first line only: PostgreSQL puts the offending values on the lines after it.
    assert failure.detail == "UNIQUE constraint failed: members.member_id"
    assert str(failure) == "IntegrityError: UNIQUE constraint failed: members.member_id"


@pytest.mark.parametrize("error", [ValueError("no"), InvalidRequestError("a bug of ours"),
                                   KeyError("x")])
def test_what_the_database_did_not_raise_is_no_database_error(error: Exception) -> None:
    assert as_database_error(error) is None


def test_the_one_type_is_itself_and_the_catch_list_covers_the_drivers() -> None:
    failure = DatabaseError("OperationalError", "database is locked", True)
    assert as_database_error(failure) is failure
    for error in (sqlite3.Error(), psycopg.Error(), OperationalError("s", {}, Exception())):
        assert isinstance(error, DATABASE_ERRORS)
