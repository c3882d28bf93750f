"""Spending first-in-first-out over lots, taking back, and restoring what was spent.

Every caller holds its member's row lock (store/locks.lock_member), so two writers never
spend the same lot twice. A lot whose expiry has come is never spent, whether or not the
expire step has recorded it yet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, select

from loyalty_engine.ledger.balances import BalanceChanges
from loyalty_engine.ledger.entries import Entry, append
from loyalty_engine.ledger.lots import active_at, held, unexpired
from loyalty_engine.store import tables

_lots = tables.point_lots
_balances = tables.balances
_ledger = tables.ledger_entries


class Taken(NamedTuple):
    """Points taken from one lot; pending says which part of the balance they left."""

    entry_id: int
    points: int
    pending: bool


def take_points(conn: Connection, member_id: str, program_id: str, points: int,
                at: datetime, *, skip_entry: int | None = None,
                spendable_only: bool = False,
                unexpired_at: datetime | None = None) -> list[Taken]:
    """Take up to `points` from the member's unexpired lots and return what was taken.

    Order: pending lots first (unless spendable_only, which takes only lots earned and
    activated by `at`), then active ones, each oldest first. skip_entry is left alone.
    Lots must not have expired by unexpired_at (default: `at`).
    """
    query = (
        select(_lots.c.entry_id, _lots.c.remaining, _lots.c.pending_until,
               _lots.c.activated_at)
        .where(_lots.c.member_id == member_id, _lots.c.program_id == program_id,
               _lots.c.remaining > 0,
               unexpired(unexpired_at or at))
        .order_by(_lots.c.earned_at, _lots.c.entry_id)
    )
    if skip_entry is not None:
        query = query.where(_lots.c.entry_id != skip_entry)
    if spendable_only:
        query = query.where(active_at(at))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = sorted(conn.execute(query).all(),
                  key=lambda r: not held(r.pending_until, r.activated_at))
    taken: list[Taken] = []
    left = points
    for row in rows:
        if left == 0:
            break
        take = min(left, row.remaining)
        left -= take
        taken.append(Taken(row.entry_id, take, held(row.pending_until, row.activated_at)))
    _reduce(conn, taken)
    return taken


def take_from_lot(conn: Connection, entry_id: int, points: int) -> Taken | None:
    """Take up to `points` from one lot, expired or not (a refund takes back its own
    purchase's points first: what the expiry step has not taken yet is still there)."""
    query = select(_lots.c.remaining, _lots.c.pending_until, _lots.c.activated_at).where(
        _lots.c.entry_id == entry_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None or row.remaining == 0 or points == 0:
        return None
    taken = Taken(entry_id, min(points, row.remaining),
                  held(row.pending_until, row.activated_at))
    _reduce(conn, [taken])
    return taken


def _reduce(conn: Connection, taken: Sequence[Taken]) -> None:
    """Take points from lots: one executemany, whatever the number of lots."""
    if taken:
        conn.execute(_lots.update().where(_lots.c.entry_id == bindparam("lot"))
                     .values(remaining=_lots.c.remaining - bindparam("taken")),
                     [{"lot": t.entry_id, "taken": t.points} for t in taken])


def spendable_points(conn: Connection, member_id: str, program_id: str, at: datetime,
                     unexpired_at: datetime | None = None) -> int:
    """Points the member can spend at `at`: lots earned and active by then and not expired
    by unexpired_at (default: `at`), less any negative balance."""
    in_lots = conn.execute(
        select(_lots.c.remaining).where(
            _lots.c.member_id == member_id, _lots.c.program_id == program_id,
            _lots.c.remaining > 0, active_at(at), unexpired(unexpired_at or at))
    ).scalars().all()
    balance = conn.execute(
        select(_balances.c.points).where(
            and_(_balances.c.member_id == member_id, _balances.c.program_id == program_id))
    ).scalar()
    return max(0, min(int(sum(in_lots)), int(balance or 0)))


@dataclass(frozen=True, slots=True)
class Spend:
    """Points a member spends (a redemption, a fee paid in points, an operator's debit)."""

    member_id: str
    program_id: str
    version_id: int
    kind: str
    points: int
    at: datetime
    reason: dict[str, Any]  # the lots it took are added as from_lots
    ref: str
    rule_id: str = ""
    # An activity (a redemption, in a program with inactivity expiry): moves the balance's
    # lapse deadline on to lapses_at.
    active: bool = False
    lapses_at: datetime | None = None


def spend(conn: Connection, request: Spend, now: datetime,
          refuse: Callable[[int], Exception]) -> dict[str, int]:
    """Spend as a redemption does, or raise refuse(available): only from lots earned and
    active at `at` and not expired by the later of `at` and `now` (when it is recorded),
    oldest first; one entry of -points with the lots it took, and the balance. Returns
    lot -> points taken."""
    unexpired_at = max(request.at, now)
    available = spendable_points(conn, request.member_id, request.program_id, request.at,
                                 unexpired_at)
    if request.points > available:
        raise refuse(available)
    taken = take_points(conn, request.member_id, request.program_id, request.points,
                        request.at, spendable_only=True, unexpired_at=unexpired_at)
    consumed = {str(t.entry_id): t.points for t in taken}
    append(conn, [Entry(request.member_id, request.program_id, request.version_id,
                        request.kind, -request.points, request.at,
                        {**request.reason, "from_lots": consumed}, request.ref,
                        request.rule_id)], now)
    changes = BalanceChanges()
    changes.add(request.member_id, request.program_id, points=-request.points)
    if request.active:
        changes.active(request.member_id, request.program_id, request.at, request.lapses_at)
    changes.flush(conn, now)
    return consumed


def restore_points(conn: Connection, consumed: dict[int, int], at: datetime) -> int:
    """Give points back to the lots they were taken from, except lots that expired by
    `at` or that the expiry step has already closed (those points would have lapsed).
    Returns the points restored."""
    if not consumed:
        return 0
    closed = set(conn.execute(
        select(_ledger.c.ref).where(_ledger.c.kind == "expire",
                                    _ledger.c.ref.in_([f"expire:{e}" for e in consumed]))
    ).scalars())
    open_lots = set(conn.execute(
        select(_lots.c.entry_id).where(_lots.c.entry_id.in_(list(consumed)),
                                       unexpired(at))
    ).scalars())
    back = [(entry_id, points) for entry_id, points in sorted(consumed.items())
            if entry_id in open_lots and f"expire:{entry_id}" not in closed]
    if back:
        conn.execute(_lots.update().where(_lots.c.entry_id == bindparam("lot"))
                     .values(remaining=_lots.c.remaining + bindparam("back")),
                     [{"lot": entry_id, "back": points} for entry_id, points in back])
    return sum(points for _, points in back)


@dataclass(frozen=True, slots=True)
class Restore:
    """Points spent that come back to their lots (a redemption reversed, a fee refunded)."""

    member_id: str
    program_id: str
    version_id: int
    kind: str
    consumed: dict[int, int]  # lot -> points, as the spend recorded them
    at: datetime
    ref: str
    reason: Callable[[int], dict[str, Any]]  # the entry's reason, given the points restored
    rule_id: str = ""


def restore(conn: Connection, request: Restore, now: datetime) -> int:
    """Put spent points back into the lots they came from (those not expired by `at`),
    with one entry of +restored and the balance. Returns the points restored."""
    restored = restore_points(conn, request.consumed, request.at)
    append(conn, [Entry(request.member_id, request.program_id, request.version_id,
                        request.kind, restored, request.at, request.reason(restored),
                        request.ref, request.rule_id)], now)
    changes = BalanceChanges()
    changes.add(request.member_id, request.program_id, points=restored)
    changes.flush(conn, now)
    return restored
