"""Point lots and balances for the services that spend or take back points.

Points are spent and taken back first-in-first-out over lots. Every caller holds its
member's row lock (`lock_member`), so two writers never spend the same lot twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, and_, or_, select

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows

_lots = tables.point_lots
_balances = tables.balances
_members = tables.members
_ledger = tables.ledger_entries


class Taken(NamedTuple):
    """Points taken from one lot; pending says which part of the balance they left."""

    entry_id: int
    points: int
    pending: bool


def lock_member(conn: Connection, member_id: str) -> bool:
    """Lock the member's row until the transaction ends (PostgreSQL; SQLite's write lock
    already excludes other writers). False if there is no such member."""
    query = select(_members.c.member_id).where(_members.c.member_id == member_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first() is not None


def _is_pending(pending_until: datetime | None, activated_at: datetime | None) -> bool:
    return pending_until is not None and activated_at is None


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
               or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > (unexpired_at or at)))
        .order_by(_lots.c.earned_at, _lots.c.entry_id)
    )
    if skip_entry is not None:
        query = query.where(_lots.c.entry_id != skip_entry)
    if spendable_only:
        # Spendable at `at`: earned by then, and not pending then.
        query = query.where(_lots.c.earned_at <= at,
                            or_(_lots.c.pending_until.is_(None),
                                _lots.c.activated_at <= at))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    rows = sorted(conn.execute(query).all(),
                  key=lambda r: not _is_pending(r.pending_until, r.activated_at))
    taken: list[Taken] = []
    left = points
    for row in rows:
        if left == 0:
            break
        take = min(left, row.remaining)
        left -= take
        taken.append(Taken(row.entry_id, take, _is_pending(row.pending_until, row.activated_at)))
        _reduce(conn, row.entry_id, take)
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
    take = min(points, row.remaining)
    _reduce(conn, entry_id, take)
    return Taken(entry_id, take, _is_pending(row.pending_until, row.activated_at))


def _reduce(conn: Connection, entry_id: int, points: int) -> None:
    conn.execute(_lots.update().where(_lots.c.entry_id == entry_id)
                 .values(remaining=_lots.c.remaining - points))


def spendable_points(conn: Connection, member_id: str, program_id: str, at: datetime,
                     unexpired_at: datetime | None = None) -> int:
    """Points the member can spend at `at`: lots earned and active by then and not expired
    by unexpired_at (default: `at`), less any negative balance."""
    in_lots = conn.execute(
        select(_lots.c.remaining).where(
            _lots.c.member_id == member_id, _lots.c.program_id == program_id,
            _lots.c.remaining > 0, _lots.c.earned_at <= at,
            or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > (unexpired_at or at)),
            or_(_lots.c.pending_until.is_(None), _lots.c.activated_at <= at))
    ).scalars().all()
    balance = conn.execute(
        select(_balances.c.points).where(
            and_(_balances.c.member_id == member_id, _balances.c.program_id == program_id))
    ).scalar()
    return max(0, min(int(sum(in_lots)), int(balance or 0)))


def spend_points(conn: Connection, member_id: str, program_id: str, points: int,
                 at: datetime, now: datetime, refuse: Callable[[int], Exception]) -> list[Taken]:
    """Spend points as a redemption does: only from lots earned and active at `at` and not
    expired by the later of `at` and `now` (when it is recorded); raises refuse(available)
    when fewer are spendable."""
    unexpired_at = max(at, now)
    available = spendable_points(conn, member_id, program_id, at, unexpired_at)
    if points > available:
        raise refuse(available)
    return take_points(conn, member_id, program_id, points, at, spendable_only=True,
                       unexpired_at=unexpired_at)


def restore_points(conn: Connection, consumed: dict[int, int], at: datetime) -> int:
    """Give points back to the lots they were taken from, except lots that expired by
    `at` or that the expiry step has already closed (those points would have lapsed).
    Returns the points restored."""
    restored = 0
    closed = set(conn.execute(
        select(_ledger.c.ref).where(_ledger.c.kind == "expire",
                                    _ledger.c.ref.in_([f"expire:{e}" for e in consumed]))
    ).scalars())
    for entry_id, points in sorted(consumed.items()):
        if f"expire:{entry_id}" in closed:
            continue
        done = conn.execute(
            _lots.update().where(_lots.c.entry_id == entry_id,
                                 or_(_lots.c.expires_at.is_(None), _lots.c.expires_at > at))
            .values(remaining=_lots.c.remaining + points))
        if done.rowcount:
            restored += points
    return restored


def adjust_balance(conn: Connection, member_id: str, program_id: str, points: int,
                   pending: int, now: datetime) -> None:
    """Add to a member's cached balance (spendable and pending parts) in this transaction."""
    adjust_balances(conn, {(member_id, program_id): (points, pending)}, now)


def adjust_balances(conn: Connection, deltas: dict[tuple[str, str], tuple[int, int]],
                    now: datetime) -> None:
    """Add (spendable, pending) deltas to many balances, one statement, in key order."""
    when = Converters(conn).when(now)
    insert_rows(
        conn, _balances,
        ("member_id", "program_id", "points", "pending", "lifetime_earned", "updated_at"),
        [(m, p, points, pending, 0, when) for (m, p), (points, pending) in sorted(deltas.items())],
        on_conflict=["member_id", "program_id"],
        update={"points": "balances.points + excluded.points",
                "pending": "balances.pending + excluded.pending",
                "updated_at": "excluded.updated_at"},
    )
