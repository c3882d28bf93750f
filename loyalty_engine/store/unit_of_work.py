"""The unit of work: the one transaction a use case receives from its caller.

A use case is written against a `Connection` that is already inside a transaction, and
never opens, commits or retries one itself. Its caller decides the unit: the CLI command,
the HTTP request (whose stored idempotent response joins the same transaction), the
scheduler's fire time (the jobs and the watermark). Callers that want "this use case, in a
transaction of its own" pass the `Engine` instead; the decorators below then open the
outermost transaction and retry it whole after a deadlock, the only retry there is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine

from loyalty_engine.store.database import read_transaction, write_transaction
from loyalty_engine.store.retry import retry_transient

P = ParamSpec("P")
T = TypeVar("T")

# What a use case may be handed: a transaction to join, or an engine to open one on.
Unit = Engine | Connection


def in_write_unit(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run work in one write transaction of its own, committed on success and run again
    whole after a deadlock or serialization failure (every write here is idempotent)."""

    def once() -> T:
        with write_transaction(engine) as conn:
            return work(conn)

    return retry_transient(once)


def in_read_unit(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run work in one read-only transaction (a consistent snapshot)."""
    with read_transaction(engine) as conn:
        return work(conn)


def write_use_case(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Unit, P], T]:
    """A writing use case: given a Connection it runs inside the caller's transaction;
    given an Engine, in a write unit of its own (`in_write_unit`)."""

    @wraps(fn)
    def run(unit: Unit, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if isinstance(unit, Connection):
            return fn(unit, *args, **kwargs)
        return in_write_unit(unit, lambda conn: fn(conn, *args, **kwargs))

    return run


def read_use_case(
    fn: Callable[Concatenate[Connection, P], T],
) -> Callable[Concatenate[Unit, P], T]:
    """A reading use case: given a Connection it reads in the caller's transaction (so a
    dry run's later steps see what its earlier ones would have written); given an Engine,
    in a read-only transaction of its own."""

    @wraps(fn)
    def run(unit: Unit, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if isinstance(unit, Connection):
            return fn(unit, *args, **kwargs)
        return in_read_unit(unit, lambda conn: fn(conn, *args, **kwargs))

    return run
