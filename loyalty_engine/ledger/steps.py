"""The time-driven ledger steps, set-based over all members: activating pending lots and
recording the expiry of lots whose expiry came. Both safe to run again."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, select

from loyalty_engine.ledger.balances import change_balances
from loyalty_engine.ledger.entries import Entry, append
from loyalty_engine.ledger.lots import HELD, expired_by, expiry_column, held, unexpired
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import chunked, lock_rows

_lots = tables.point_lots
_ledger = tables.ledger_entries
_members = tables.members


@dataclass(slots=True)
class StepResult:
    """What a step did: lots touched, points moved, members affected; and the points moved
    program by program (points of two programs are different things: never add them)."""

    lots: int
    points: int
    members: int
    by_program: dict[str, int] = field(default_factory=dict)
    # Balances that lapsed without activity: (member, program, instant) -> points expired.
    lapsed: dict[tuple[str, str, datetime], int] = field(default_factory=dict)


def activate(conn: Connection, as_of: datetime, program_id: str | None = None) -> StepResult:
    """Make spendable every pending lot whose return window ended by as_of, unless its
    expiry came by then too: such a lot expires from pending, never spendable on as_of."""
    due = and_(HELD, _lots.c.pending_until <= as_of, unexpired(as_of))
    if program_id is not None:
        due = and_(due, _lots.c.program_id == program_id)
    _lock_members(conn, due)
    query = select(_lots.c.entry_id, _lots.c.member_id, _lots.c.program_id,
                   _lots.c.remaining).where(due).order_by(_lots.c.entry_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = conn.execute(query).all()
    moved: defaultdict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        moved[(row.member_id, row.program_id)] += row.remaining
    # Dated when the window ended, not when this step ran: a step run late (a scheduler
    # catching up) makes the points spendable from the moment they were.
    for part in chunked([r.entry_id for r in rows]):
        conn.execute(_lots.update().where(_lots.c.entry_id.in_(part))
                     .values(activated_at=_lots.c.pending_until))
    change_balances(conn, {pair: (points, -points) for pair, points in moved.items()}, as_of)
    return StepResult(len(rows), sum(moved.values()), len({m for m, _ in moved}),
                      _by_program(moved))


def expire(conn: Connection, as_of: datetime, program_id: str | None = None) -> StepResult:
    """Record the expiry of what remains of every lot whose expiry is at or before as_of,
    one entry per lot dated at its expiry (its natural key makes a second run write
    nothing). The points were not spendable from that instant on, run or not."""
    due = and_(expired_by(as_of), _lots.c.remaining > 0)
    if program_id is not None:
        due = and_(due, _lots.c.program_id == program_id)
    _lock_members(conn, due)
    query = (
        select(_lots.c.entry_id, _lots.c.member_id, _lots.c.program_id, _lots.c.remaining,
               expiry_column().label("expires_at"), _lots.c.expires_at.label("own_expiry"),
               _lots.c.pending_until, _lots.c.activated_at, _ledger.c.program_version_id)
        .join(_ledger, _ledger.c.id == _lots.c.entry_id)
        .where(due).order_by(_lots.c.entry_id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=_lots)
    rows = conn.execute(query).all()
    append(conn, [
        Entry(r.member_id, r.program_id, r.program_version_id, "expire", -r.remaining,
              r.expires_at, {"lot": r.entry_id, "expired_at": r.expires_at.isoformat(),
                             **({"inactive": True} if _by_inactivity(r) else {})},
              f"expire:{r.entry_id}") for r in rows], as_of)
    for part in chunked([r.entry_id for r in rows]):
        conn.execute(_lots.update().where(_lots.c.entry_id.in_(part)).values(remaining=0))
    change: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        change[(r.member_id, r.program_id)][1 if held(r.pending_until, r.activated_at) else 0] \
            -= r.remaining
    change_balances(conn, {pair: (d[0], d[1]) for pair, d in change.items()}, as_of)
    lapsed: defaultdict[tuple[str, str, datetime], int] = defaultdict(int)
    for r in rows:
        if _by_inactivity(r):
            lapsed[(r.member_id, r.program_id, r.expires_at)] += r.remaining
    return StepResult(len(rows), sum(r.remaining for r in rows),
                      len({r.member_id for r in rows}),
                      _by_program({pair: -sum(d) for pair, d in change.items()}), dict(lapsed))


def _by_inactivity(row: Any) -> bool:
    """Whether the lot went with its balance's lapse rather than at its own expiry."""
    return row.own_expiry is None or row.own_expiry > row.expires_at


def _by_program(moved: dict[tuple[str, str], int]) -> dict[str, int]:
    found: defaultdict[str, int] = defaultdict(int)
    for (_member, program_id), points in moved.items():
        found[program_id] += points
    return dict(sorted(found.items()))


def _lock_members(conn: Connection, due: ColumnElement[bool]) -> None:
    """Lock the members whose lots are due, in member-id order, before their lots: the
    order every other writer (purchases, refunds, redemptions) takes them in, so a step
    and a till wait for each other rather than deadlock (PostgreSQL; SQLite has one
    writer at a time)."""
    if conn.dialect.name == "postgresql":
        members = conn.execute(select(_lots.c.member_id).where(due).distinct()).scalars()
        lock_rows(conn, _members, "member_id", sorted(members))
