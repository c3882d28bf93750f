"""Idempotent HTTP writes: the first response is stored with its effect, in the request's one
unit of work, and every replay of the same key gets it back unchanged."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, Lookup, insert_rows, lock_then_look_up
from loyalty_engine.store.unit_of_work import in_write_unit

_responses = tables.api_responses
_COLUMNS = ("endpoint", "idem_key", "request_hash", "status", "body", "created_at")


class IdempotencyConflictError(LoyaltyError):
    """The key of a write was already used with a different request."""


@dataclass(frozen=True, slots=True)
class Response:
    """A write's response: its HTTP status, its JSON body as first sent, and whether this
    is a replay of an earlier request."""

    status: int
    body: str
    replayed: bool


# What an effect returns: the status, the JSON body, and whether the service itself found the
# write already done (a purchase imported from a file and then posted, say). It runs inside
# the request's transaction, and gets the rows of the look-ups it asked for (`also`), found
# in the same statement as the stored response.
Effect = Callable[[Connection, list[list[tuple[Any, ...]]]], tuple[int, str, bool]]


def respond_once(conn: Connection, endpoint: str, key: str, request_hash: str, effect: Effect,
                 now: datetime, conflict: str, also: Sequence[Lookup] = ()) -> Response:
    """Run effect once per (endpoint, key) inside conn's transaction (the request's unit of
    work, which its caller commits and retries whole): its writes and its response commit
    together, so a replay (sequential or concurrent) returns the stored response and a
    request that reuses the key with another body is refused with `conflict` as the message.

    An effect that raises leaves the transaction to be rolled back: nothing is stored, and
    the same request may be sent again once the cause is fixed (an unknown member enrolled,
    say)."""
    # On PostgreSQL twins queue on an advisory lock of the key until the first commits, then
    # find its response: without it both would run the effect, and the second could be
    # refused by it (a charge already paid) or write again. (SQLite's write lock queues them.)
    found = lock_then_look_up(
        conn, f"{endpoint}\x1f{key}",
        [Lookup(_responses, ("endpoint", "idem_key"), (endpoint, key),
                ("request_hash", "status", "body")), *also])
    stored = found[0][0] if found[0] else None
    if stored is None:
        status, body, replayed = effect(conn, found[1:])
        inserted = insert_rows(
            conn, _responses, _COLUMNS,
            [(endpoint, key, request_hash, status, body, Converters(conn).when(now))],
            on_conflict=["endpoint", "idem_key"])
        if not inserted:  # pragma: no cover - the twin lock above prevents it
            raise AssertionError(f"a response for {endpoint} {key!r} appeared")
        return Response(status, body, replayed)
    stored_hash, stored_status, stored_body = stored
    if stored_hash != request_hash:
        raise IdempotencyConflictError(conflict)
    return Response(int(stored_status), stored_body, True)


def answer_once(engine: Engine, endpoint: str, key: str, request_hash: str, effect: Effect,
                now: datetime, conflict: str, also: Sequence[Lookup] = ()) -> Response:
    """respond_once as the request's unit of work: one write transaction, committed with
    the response, run again whole after a deadlock (the only retry there is)."""
    return in_write_unit(engine, lambda conn: respond_once(
        conn, endpoint, key, request_hash, effect, now, conflict, also))
