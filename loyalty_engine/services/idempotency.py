"""Idempotent writes for the HTTP API: the first response is stored with its effect, in one
transaction, and every replay of the same key gets it back unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from loyalty_engine.services.errors import LoyaltyError
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows, select_by_keys
from loyalty_engine.store.database import enclosing
from loyalty_engine.store.retry import retry_transient

_responses = tables.api_responses
_COLUMNS = ("endpoint", "idem_key", "request_hash", "status", "body", "created_at")


class IdempotencyConflictError(LoyaltyError):
    """The key of a write was already used with a different request."""


@dataclass(frozen=True, slots=True)
class Response:
    """A write's response: its status, its JSON body as first sent, and whether this is a
    replay of an earlier request."""

    status: int
    body: str
    replayed: bool


# What an effect returns: the status, the JSON body, and whether the service itself found the
# write already done (a purchase imported from a file and then posted, say).
Effect = Callable[[], tuple[int, str, bool]]


def respond_once(engine: Engine, endpoint: str, key: str, request_hash: str, effect: Effect,
                 now: datetime, conflict: str) -> Response:
    """Run effect once per (endpoint, key): its writes and its response commit together, so a
    replay (sequential or concurrent) returns the stored response and a request that reuses
    the key with another body is refused with `conflict` as the message.

    An effect that raises writes nothing and stores nothing: the same request may be sent
    again once the cause is fixed (an unknown member enrolled, say)."""

    def attempt() -> Response:
        # The services join without savepoints: any failure abandons the whole request.
        with enclosing(engine, savepoints=False) as conn:
            if conn.dialect.name == "postgresql":
                # Twins queue here until the first commits, then find its response: without
                # this both would run the effect, and the second could be refused by it (a
                # charge already paid) or write again. (SQLite's write lock queues them.)
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                     (f"{endpoint}\x1f{key}",))
            stored = _stored(conn, endpoint, key)
            if stored is None:
                status, body, replayed = effect()
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

    return retry_transient(attempt)


def _stored(conn: Connection, endpoint: str, key: str) -> tuple[Any, ...] | None:
    # The driver's path (store/bulk.py): this runs on every HTTP write.
    rows = select_by_keys(conn, _responses, ("endpoint", "idem_key"), [(endpoint, key)],
                          ("request_hash", "status", "body"))
    return rows[0] if rows else None
