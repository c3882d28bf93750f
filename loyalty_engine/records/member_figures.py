"""Members' figures in one program as of an instant, read set-based: one grouped pass over
the purchases the program counts (records/counted_purchases.py), joined to one grouped pass
over the program's ledger for the points earned and redeemed.

Points earned: the `earn` entries (purchases' awards and period bonuses), positive `adjust`
entries (goodwill credits), less what refunds took back (`refund` entries and the `debt`
entries by which later earnings repaid a refund's shortfall). Points redeemed: `redeem`
entries less their reversals (`unredeem`). Fees paid in points, corrections and expiry are
neither. Every entry counts by when it happened (occurred_at at or before the as-of
instant)."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

from sqlalchemy import BigInteger, Connection, and_, case, cast, func, select

from loyalty_engine.analytics.figures import MemberFigures
from loyalty_engine.records.counted_purchases import counted_purchases
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables

_ledger = tables.ledger_entries

TAKEN_BACK = ("refund", "debt")


def local_day(at: datetime, zone: tzinfo) -> date:
    """An instant's date in a time zone."""
    return at.astimezone(zone).date()


def member_figures(conn: Connection, program: CompiledProgram, as_of: datetime,
                   since: datetime | None = None, points: bool = True
                   ) -> list[MemberFigures]:
    """Every member with at least one counted purchase by as_of (after since), by member
    id: first and last purchase (instants and local days), purchases, distinct purchase
    days, spend net of refunds; with points=True also the points earned and redeemed by
    as_of (one statement either way)."""
    counted = counted_purchases(conn, program, as_of, since)
    grouped = (
        select(counted.c.member_id,
               func.min(counted.c.occurred_at).label("first_at"),
               func.max(counted.c.occurred_at).label("last_at"),
               func.min(counted.c.local_day).label("first_day"),
               func.max(counted.c.local_day).label("last_day"),
               func.count().label("purchases"),
               func.count(counted.c.local_day.distinct()).label("days"),
               # PostgreSQL sums bigints as numeric: back to an integer.
               cast(func.sum(counted.c.net_minor), BigInteger).label("spend"))
        .group_by(counted.c.member_id)
    )
    as_of_day = local_day(as_of, program.timezone)
    if not points:
        return [MemberFigures(row.member_id, as_of_day, row.first_at, row.last_at,
                              date.fromisoformat(row.first_day),
                              date.fromisoformat(row.last_day), int(row.purchases),
                              int(row.days), int(row.spend))
                for row in conn.execute(grouped.order_by(counted.c.member_id))]
    figures = grouped.subquery("figures")
    kind, value = _ledger.c.kind, _ledger.c.points
    ledger = (
        select(_ledger.c.member_id,
               cast(func.sum(case(
                   (kind == "earn", value),
                   (and_(kind == "adjust", value > 0), value),
                   (kind.in_(TAKEN_BACK), value),
                   else_=0)), BigInteger).label("earned"),
               cast(func.sum(case(
                   (kind.in_(("redeem", "unredeem")), -value), else_=0)),
                    BigInteger).label("redeemed"))
        .where(_ledger.c.program_id == program.program_id, _ledger.c.occurred_at <= as_of)
        .group_by(_ledger.c.member_id)
        .subquery("points")
    )
    query = (
        select(figures, func.coalesce(ledger.c.earned, 0).label("earned"),
               func.coalesce(ledger.c.redeemed, 0).label("redeemed"))
        .select_from(figures.outerjoin(ledger, ledger.c.member_id == figures.c.member_id))
        .order_by(figures.c.member_id)
    )
    return [MemberFigures(row.member_id, as_of_day, row.first_at, row.last_at,
                          date.fromisoformat(row.first_day), date.fromisoformat(row.last_day),
                          int(row.purchases), int(row.days), int(row.spend),
                          int(row.earned), int(row.redeemed))
            for row in conn.execute(query)]
