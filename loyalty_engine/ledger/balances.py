"""The cached balances: changes gathered per (member, program), written in one upsert."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, case, func, or_, select

from loyalty_engine.ledger.lots import HELD, expired_by, has_expired, held
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows

_balances = tables.balances
_lots = tables.point_lots


class BalanceChanges:
    """(spendable, pending, lifetime earned) deltas per (member, program), until flushed.

    A long import keeps them to the end: on PostgreSQL, updating the same balance row once
    per batch in one transaction grows a chain of row versions every later update walks."""

    def __init__(self) -> None:
        self._deltas: dict[tuple[str, str], list[int]] = {}
        self._activity: dict[tuple[str, str], _Activity] = {}

    def active(self, member_id: str, program_id: str, at: datetime,
               lapses_at: datetime | None) -> None:
        """Record an activity (points earned by a purchase, or spent by a redemption) at
        `at`, whose program lapses the whole balance at lapses_at without another (None:
        the program has no inactivity expiry). Activities in time order; a deadline an
        activity finds already passed is a lapse (lots earned before it went with it)."""
        found = self._activity.get((member_id, program_id))
        if found is None:
            self._activity[(member_id, program_id)] = _Activity(at, at, lapses_at, None)
            return
        if found.lapses_at is not None and found.lapses_at <= at:
            found.lapsed_at = found.lapses_at
        found.last = max(found.last, at)
        found.lapses_at = None if lapses_at is None else max(lapses_at, found.lapses_at
                                                              or lapses_at)

    def add(self, member_id: str, program_id: str, points: int = 0, pending: int = 0,
            lifetime: int = 0) -> None:
        """Add to one balance (zeros only make sure its row exists)."""
        found = self._deltas.get((member_id, program_id))
        if found is None:
            self._deltas[(member_id, program_id)] = [points, pending, lifetime]
        else:
            found[0] += points
            found[1] += pending
            found[2] += lifetime

    def __bool__(self) -> bool:
        return bool(self._deltas) or bool(self._activity)

    def flush(self, conn: Connection, now: datetime) -> None:
        """Write every change in one statement, rows in key order (a global lock order)."""
        deltas, self._deltas = self._deltas, {}
        activity, self._activity = self._activity, {}
        for key in activity:
            deltas.setdefault(key, [0, 0, 0])  # an activity's balance row exists
        if not deltas:
            return
        when = Converters(conn).when(now)
        insert_rows(
            conn, _balances,
            ("member_id", "program_id", "points", "pending", "lifetime_earned", "updated_at"),
            [(m, p, d[0], d[1], d[2], when) for (m, p), d in sorted(deltas.items())],
            on_conflict=["member_id", "program_id"],
            update={
                "points": "balances.points + excluded.points",
                "pending": "balances.pending + excluded.pending",
                "lifetime_earned": "balances.lifetime_earned + excluded.lifetime_earned",
                "updated_at": "excluded.updated_at",
            },
        )
        if activity:
            _record_activity(conn, activity)


@dataclass(slots=True)
class _Activity:
    first: datetime
    last: datetime
    lapses_at: datetime | None
    lapsed_at: datetime | None  # a lapse between two activities of the same batch


def _record_activity(conn: Connection, activity: dict[tuple[str, str], _Activity]) -> None:
    """Move each balance's deadline on (one executemany, in key order): a deadline already
    passed at the batch's first activity is recorded as the last lapse."""
    kind = _balances.c.lapses_at.type

    def param(name: str) -> Any:
        return bindparam(name, type_=kind)

    old = _balances.c.lapses_at
    conn.execute(
        _balances.update()
        .where(_balances.c.member_id == bindparam("m"), _balances.c.program_id == bindparam("p"))
        .values(
            lapsed_at=func.coalesce(param("lapsed"), case((old <= param("first"), old),
                                                          else_=_balances.c.lapsed_at)),
            lapses_at=case((param("deadline").is_(None), None),
                           (or_(old.is_(None), old < param("deadline")), param("deadline")),
                           else_=old),
            last_activity_at=case(
                (or_(_balances.c.last_activity_at.is_(None),
                     _balances.c.last_activity_at < param("last")), param("last")),
                else_=_balances.c.last_activity_at)),
        [{"m": m, "p": p, "lapsed": a.lapsed_at, "first": a.first, "deadline": a.lapses_at,
          "last": a.last} for (m, p), a in sorted(activity.items())])


def change_balances(conn: Connection, deltas: dict[tuple[str, str], tuple[int, int]],
                    now: datetime) -> None:
    """Add (spendable, pending) deltas to many balances, one statement."""
    changes = BalanceChanges()
    for (member_id, program_id), (points, pending) in deltas.items():
        changes.add(member_id, program_id, points, pending)
    changes.flush(conn, now)


def shown_at(balance: tuple[int, int], lots: Iterable[Any], as_of: datetime) -> tuple[int, int]:
    """(spendable, pending) at as_of: the cached balance less what remains of lots expired
    by then, whether or not the expire step has recorded it yet (the step takes exactly
    that from the balance when it runs). lots: rows with remaining, expires_at,
    pending_until and activated_at."""
    points, pending = balance
    for lot in lots:
        if lot.remaining and has_expired(lot.expires_at, as_of):
            if held(lot.pending_until, lot.activated_at):
                pending -= lot.remaining
            else:
                points -= lot.remaining
    return points, pending


def shown_columns(as_of: datetime) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """shown_at in SQL, for a query over `balances`: (spendable, pending) columns, each the
    cached figure less what remains of the row's lots expired by as_of (a correlated
    subquery, so no statement more)."""

    def expired(pending: bool) -> Any:
        return (select(func.coalesce(func.sum(_lots.c.remaining), 0))
                .where(_lots.c.member_id == _balances.c.member_id,
                       _lots.c.program_id == _balances.c.program_id, _lots.c.remaining > 0,
                       expired_by(as_of), HELD if pending else ~HELD)
                .scalar_subquery())

    return _balances.c.points - expired(False), _balances.c.pending - expired(True)


def end_inactivity_deadlines(conn: Connection, program_id: str, from_: datetime) -> None:
    """A program version without inactivity expiry takes effect at from_: the deadlines
    still ahead then are dropped (one statement); one passed by then stays a lapse."""
    conn.execute(
        _balances.update()
        .where(_balances.c.program_id == program_id, _balances.c.lapses_at.is_not(None))
        .values(lapsed_at=case((_balances.c.lapses_at <= from_, _balances.c.lapses_at),
                               else_=_balances.c.lapsed_at),
                lapses_at=None))


def has_inactivity_deadlines(conn: Connection, program_id: str) -> bool:
    """Whether any balance of the program has an inactivity deadline still ahead."""
    return conn.execute(select(_balances.c.member_id).where(
        _balances.c.program_id == program_id, _balances.c.lapses_at.is_not(None))
        .limit(1)).first() is not None
