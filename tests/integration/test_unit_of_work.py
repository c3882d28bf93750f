"""The unit of work on both databases: a use case handed a Connection joins its caller's
transaction (committed or rolled back whole by the caller, never retried inside); handed an
Engine it runs in a transaction of its own, retried whole after a deadlock."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import OperationalError

from loyalty_engine.services.enrolment import enrol_member, set_consent
from loyalty_engine.services.outbox import list_events
from loyalty_engine.store import tables
from loyalty_engine.store.database import write_transaction
from loyalty_engine.store.unit_of_work import in_write_unit, read_use_case, write_use_case

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
_members = tables.members


def _members_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(_members)).scalar_one())


def _deadlock() -> OperationalError:
    """What SQLAlchemy raises when PostgreSQL breaks a deadlock by aborting us."""
    return OperationalError("UPDATE balances ...", {}, psycopg.errors.DeadlockDetected(
        "deadlock detected"))


class Flaky:
    """A use case that fails with a deadlock on its first `fails` runs, then enrols."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.runs = 0

    def __call__(self, conn: Connection, member_id: str) -> str:
        self.runs += 1
        enrol_member(conn, member_id, {}, {}, AT, AT)  # written, then thrown away on failure
        if self.runs <= self.fails:
            raise _deadlock()
        return member_id


def test_a_caller_commits_two_use_cases_together_or_neither(engine: Engine) -> None:
    def both(conn: Connection) -> None:
        enrol_member(conn, "M-1", {"name": "Ada"}, {}, AT, AT)
        set_consent(conn, "M-1", "email", True, AT)

    in_write_unit(engine, both)
    assert _members_count(engine) == 1

    def half_then_fail(conn: Connection) -> None:
        enrol_member(conn, "M-2", {}, {}, AT, AT)
        set_consent(conn, "M-2", "email", True, AT)
        raise RuntimeError("the caller gives up after the first use case")

    with pytest.raises(RuntimeError):
        in_write_unit(engine, half_then_fail)
    assert _members_count(engine) == 1  # M-2 and its consent are both gone


def test_a_use_case_given_a_connection_never_commits_for_its_caller(engine: Engine) -> None:
    with engine.connect() as conn:
        transaction = conn.begin()
        enrol_member(conn, "M-1", {}, {}, AT, AT)
        assert conn.execute(select(func.count()).select_from(_members)).scalar_one() == 1
        transaction.rollback()
    assert _members_count(engine) == 0


def test_given_an_engine_a_deadlock_is_retried_whole_once_per_attempt(engine: Engine) -> None:
    flaky = Flaky(fails=2)
    assert write_use_case(flaky)(engine, "M-1") == "M-1"
    assert flaky.runs == 3
    assert _members_count(engine) == 1  # the two aborted attempts left nothing


def test_given_a_connection_a_deadlock_goes_to_the_caller(engine: Engine) -> None:
    # The caller owns the transaction, so only the caller may run it again: an inner retry
    # would repeat half a unit inside a transaction PostgreSQL has already aborted.
    flaky = Flaky(fails=1)
    with pytest.raises(OperationalError), write_transaction(engine) as conn:
        write_use_case(flaky)(conn, "M-1")
    assert flaky.runs == 1
    assert _members_count(engine) == 0


def test_an_error_that_is_not_transient_is_not_retried(engine: Engine) -> None:
    runs = []

    @write_use_case
    def broken(conn: Connection) -> None:
        runs.append(1)
        enrol_member(conn, "M-1", {}, {}, AT, AT)
        raise ValueError("a bug, not a busy database")

    with pytest.raises(ValueError):
        broken(engine)
    assert runs == [1]
    assert _members_count(engine) == 0


def test_a_read_given_the_callers_connection_sees_its_uncommitted_writes(
        engine: Engine) -> None:
    # What a dry run relies on: its later steps read what its earlier ones would write.
    @read_use_case
    def members(conn: Connection) -> list[str]:
        return list(conn.execute(select(_members.c.member_id)).scalars())

    with engine.connect() as conn:
        transaction = conn.begin()
        enrol_member(conn, "M-1", {}, {}, AT, AT)
        set_consent(conn, "M-1", "email", True, AT)
        assert members(conn) == ["M-1"]
        assert members(engine) == []  # another transaction sees nothing yet
        transaction.rollback()
    assert list_events(engine) == []
