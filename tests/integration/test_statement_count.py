"""How many statements (SQLite) and round trips (PostgreSQL) a known member's purchase
costs through the HTTP API, and a ceiling on both (issue 15, item 7: it was 22).

Counted below the ORM, at the driver, because the hot path sends most of its SQL straight to
the driver (store/bulk.py), where SQLAlchemy's cursor events never see it: on SQLite every
statement the library runs (its trace callback, BEGIN and COMMIT included), on PostgreSQL
every wait for the server (libpq's protocol trace: each turn from messages sent to messages
received is one round trip, so a pipeline of statements counts once)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Engine, event

from tests.api_support import bearer, purchase
from tests.integration.conftest import Api

# The ceilings this design reaches for a known member's second purchase at a coffee till
# (bean-there-coffee: points per spend, a stamp card, a first-visit bonus). Before issue 15:
# 22 statements on SQLite and about 22 round trips on PostgreSQL for the write alone.
MAX_WRITE = {"sqlite": 16, "postgresql": 16}
# The whole request: the key's look-up (one statement or round trip) and the write.
MAX_REQUEST = {name: limit + 1 for name, limit in MAX_WRITE.items()}


@dataclass
class Count:
    """What one connection checkout sent: statements (SQLite) or round trips."""

    per_checkout: list[int] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.per_checkout)


def _round_trips(trace: str) -> tuple[int, list[str]]:
    """Round trips in a libpq protocol trace: each run of frontend messages that the server
    then answers is one; with the statements (Query/Parse) each carried."""
    trips = 0
    sent: list[str] = []
    last = "B"
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        side, kind = parts[0], parts[2]
        if side == "F" and kind in ("Query", "Parse"):
            sent.append(parts[3].strip() if len(parts) > 3 else kind)
        if side == "B" and last == "F":
            trips += 1
        last = side
    return trips, sent


@contextmanager
def counting(engine: Engine) -> Iterator[Count]:
    """Count what every connection checked out of engine's pool sends meanwhile."""
    count = Count()
    traces: dict[int, Any] = {}

    def checkout(dbapi: Any, _record: Any, _proxy: Any) -> None:
        if engine.dialect.name == "sqlite":
            seen: list[str] = []
            traces[id(dbapi)] = seen
            dbapi.set_trace_callback(seen.append)
            return
        handle = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed at checkin
        traces[id(dbapi)] = handle
        dbapi.pgconn.trace(handle.fileno())
        dbapi.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    def checkin(dbapi: Any, _record: Any) -> None:
        found = traces.pop(id(dbapi), None)
        if found is None:
            return
        if engine.dialect.name == "sqlite":
            dbapi.set_trace_callback(None)
            count.per_checkout.append(len(found))
            count.statements.extend(found)
            return
        dbapi.pgconn.untrace()
        found.flush()
        os.fsync(found.fileno())
        found.seek(0)
        trips, sent = _round_trips(found.read())
        found.close()
        count.per_checkout.append(trips)
        count.statements.extend(sent)

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield count
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)


def test_a_known_members_second_purchase_stays_under_its_statement_ceiling(api: Api) -> None:
    headers = bearer(api.keys.ams)
    first = api.client.post("/v1/purchases", json=purchase("T-1"), headers=headers)
    assert first.status_code == 201, first.text
    with counting(api.engine) as count:
        second = api.client.post("/v1/purchases", json=purchase("T-2"), headers=headers)
    assert second.status_code == 201, second.text
    assert second.json()["points"], second.json()  # it earned: the whole path ran
    backend = api.engine.dialect.name
    # The key's look-up has a connection of its own (before the body is read), the write
    # its unit of work: stored response and purchase in one transaction.
    assert len(count.per_checkout) == 2, count
    write = count.per_checkout[-1]
    detail = "\n".join(count.statements)
    print(f"{backend}: request {count.total}, write {write}\n{detail}")
    assert write <= MAX_WRITE[backend], detail
    assert count.total <= MAX_REQUEST[backend], detail


def test_a_replay_is_detected_once(api: Api) -> None:
    headers = bearer(api.keys.ams)
    assert api.client.post("/v1/purchases", json=purchase("T-1"),
                           headers=headers).status_code == 201
    with counting(api.engine) as count:
        again = api.client.post("/v1/purchases", json=purchase("T-1"), headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    detail = "\n".join(count.statements)
    # The stored response answers it, found with the key's purchase in one look-up (after
    # the key's advisory lock, in the same round trip, on PostgreSQL): begin, look up,
    # commit; nothing written, no second look-up of the purchase.
    assert count.per_checkout[-1] <= 3, detail
    assert not any("INSERT" in s.upper() for s in count.statements), detail
