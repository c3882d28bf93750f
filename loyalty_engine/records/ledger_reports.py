"""Grouped reads of the ledger, the lots and the balances for what a program owes: ledger
sums by local month and kind (the roll-forward, earn and burn), the lots' flows by issue
month (the breakage triangle, the pending points at an instant), the purchases that earned
points (IFRS 15's transaction price), the tier mix, the balances' totals.

Months are the program's local months, as records/counted_purchases.local_day_column
gives them: PostgreSQL converts with the zone (`timezone(zone, col)`); SQLite, which has no
zones, shifts each instant by the offset in force. Every read is set based:
one grouped statement (two for the lots), whatever the number of members.

Where each point of a lot went is read from the entries that moved it: spends, refunds and
corrections list the lots they took (`from_lots`), reversals the lots they gave back to
(`to_lots`, less those expired by then: their points stay lapsed), an expiry names its lot,
a debt repayment the earning that repaid it. What a lot lost otherwise (repaying a debt the
balance already showed, at its earning) is what remains unexplained: points - remaining -
the moves recorded, counted as cancelled in its issue month."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
)

from loyalty_engine.finance.breakage import Flows
from loyalty_engine.ledger.lots import expired_by, expiry_column
from loyalty_engine.records.counted_purchases import local_day_column
from loyalty_engine.store import tables

_ledger = tables.ledger_entries
_lots = tables.point_lots
_balances = tables.balances
_purchases = tables.purchases
_refunds = tables.refunds
_tiers = tables.tier_status

SPENDS = ("redeem", "fee", "refund", "adjust")  # entries whose reason lists from_lots
RESTORES = ("unredeem", "fee_refund")  # entries whose reason lists to_lots


class Months:
    """The local month ('YYYY-MM') of instant columns in a program's zone, on either
    database: records/counted_purchases.local_day_column's month (on SQLite the zone's
    offsets up to the end of as_of's year, worked out once per zone and year)."""

    def __init__(self, conn: Connection, zone: ZoneInfo, as_of: datetime) -> None:
        self.conn = conn
        self.zone = zone
        self.as_of = as_of

    def of(self, column: ColumnElement[datetime] | ColumnElement[datetime | None]
           ) -> ColumnElement[str]:
        return local_day_column(self.conn, self.zone, column,  # type: ignore[arg-type]
                                self.as_of, "month")


def first_entry(conn: Connection, program_id: str) -> datetime | None:
    """When the program's first ledger entry is dated (None: no entries)."""
    found: datetime | None = conn.execute(
        select(func.min(_ledger.c.occurred_at)).where(_ledger.c.program_id == program_id)
    ).scalar_one_or_none()
    return found


def kind_sums(conn: Connection, program_id: str, months: Months
              ) -> dict[tuple[str, str], int]:
    """The ledger's signed sums per (local month, kind) of every entry."""
    month = months.of(_ledger.c.occurred_at).label("month")
    rows = conn.execute(
        select(month, _ledger.c.kind,
               cast(func.sum(_ledger.c.points), BigInteger).label("points"))
        .where(_ledger.c.program_id == program_id).group_by(month, _ledger.c.kind)
    ).all()
    return {(r.month, r.kind): int(r.points) for r in rows}


def ledger_total(conn: Connection, program_id: str, until: datetime) -> int:
    """The sum of the program's ledger dated by `until`."""
    return int(conn.execute(
        select(func.coalesce(cast(func.sum(_ledger.c.points), BigInteger), 0))
        .where(_ledger.c.program_id == program_id, _ledger.c.occurred_at <= until)
    ).scalar_one())


def balance_totals(conn: Connection) -> dict[str, int]:
    """Per program, what the balances show: sum(points + pending)."""
    rows = conn.execute(
        select(_balances.c.program_id,
               cast(func.sum(_balances.c.points + _balances.c.pending), BigInteger)
               .label("points"))
        .group_by(_balances.c.program_id)
    ).all()
    return {r.program_id: int(r.points) for r in rows}


def tier_mix(conn: Connection, program_id: str) -> dict[str, int]:
    """Members per earned tier now ('' below the lowest threshold)."""
    rows = conn.execute(
        select(_tiers.c.tier, func.count().label("members"))
        .where(_tiers.c.program_id == program_id).group_by(_tiers.c.tier)
    ).all()
    return {r.tier: int(r.members) for r in rows}


# -- the lots -------------------------------------------------------------------------------

def _json_pairs(conn: Connection, key: str) -> tuple[object, ColumnElement[int],
                                                     ColumnElement[int]]:
    """A table-valued json_each over reason.<key> of ledger_entries, and its (lot, points)
    as integers."""
    if conn.dialect.name == "postgresql":
        pairs = func.json_each_text(literal_column(f"ledger_entries.reason -> '{key}'")
                                    ).table_valued("key", "value").alias(f"{key}_pairs")
    else:
        pairs = func.json_each(_ledger.c.reason, literal(f"$.{key}")
                               ).table_valued("key", "value").alias(f"{key}_pairs")
    return pairs, cast(pairs.c.key, BigInteger), cast(pairs.c.value, BigInteger)


def _json_int(conn: Connection, key: str) -> ColumnElement[int]:
    if conn.dialect.name == "postgresql":
        return cast(literal_column(f"ledger_entries.reason ->> '{key}'"), BigInteger)
    return cast(func.json_extract(_ledger.c.reason, literal(f"$.{key}")), BigInteger)


def _moves(conn: Connection, program_id: str) -> Select[tuple[object, ...]]:
    """Every recorded move of a lot's points: (lot, at, category, points taken; negative:
    given back)."""
    mine = _ledger.c.program_id == program_id
    taken, lot, points = _json_pairs(conn, "from_lots")
    spends = (select(lot.label("lot"), _ledger.c.occurred_at.label("at"),
                     case((_ledger.c.kind.in_(("redeem", "fee")), literal("redeemed")),
                          else_=literal("cancelled")).label("category"),
                     points.label("points"))
              .select_from(_ledger).join(taken, true())  # type: ignore[arg-type]
              .where(mine, _ledger.c.kind.in_(SPENDS)))
    given, back_lot, back = _json_pairs(conn, "to_lots")
    # Given back only to lots not expired by then (the rest stayed lapsed).
    restores = (select(back_lot.label("lot"), _ledger.c.occurred_at.label("at"),
                       literal("redeemed").label("category"),
                       case((func.coalesce(expiry_column() > _ledger.c.occurred_at, true()), -back),
                            else_=0)
                       .label("points"))
                .select_from(_ledger).join(given, true())  # type: ignore[arg-type]
                .join(_lots, _lots.c.entry_id == back_lot)
                .where(mine, _ledger.c.kind.in_(RESTORES)))
    expiries = select(_json_int(conn, "lot").label("lot"), _ledger.c.occurred_at.label("at"),
                      literal("expired").label("category"),
                      (-_ledger.c.points).label("points")
                      ).where(mine, _ledger.c.kind == "expire")
    debts = select(_json_int(conn, "repaid_from_entry").label("lot"),
                   _ledger.c.occurred_at.label("at"), literal("cancelled").label("category"),
                   (-_ledger.c.points).label("points")
                   ).where(mine, _ledger.c.kind == "debt")
    return union_all(spends, restores, expiries, debts)  # type: ignore[return-value]


@dataclass(slots=True)
class LotFlows:
    """The program's lots as of an instant: the breakage flows by issue month (points
    issued, where they went by local month and category), and what was outstanding then
    (pending apart)."""

    flows: Flows = field(default_factory=Flows)
    pending: int = 0  # outstanding in lots held (pending) at the instant
    unrecorded_expiry: int = 0  # outstanding in lots expired by then, the step not yet run


def lot_flows(conn: Connection, program_id: str, months: Months, as_of: datetime
              ) -> LotFlows:
    """Two grouped statements: the lots earned by as_of by (issue month, state at as_of,
    expiry month when expired), and their recorded moves by the same and (month,
    category, dated after as_of)."""
    # Held at as_of: in its return window and not activated by then (NULL-safe, unlike
    # the negation of active_at).
    held = and_(_lots.c.pending_until.is_not(None),
                or_(_lots.c.activated_at.is_(None), _lots.c.activated_at > as_of))
    state = case((expired_by(as_of), literal("expired")), (held, literal("pending")),
                 else_=literal("active")).label("state")
    gone = case((expired_by(as_of), months.of(expiry_column())), else_=literal("")
                ).label("gone")
    cohort = months.of(_lots.c.earned_at).label("cohort")
    earned = and_(_lots.c.program_id == program_id, _lots.c.earned_at <= as_of)
    lots = conn.execute(
        select(cohort, state, gone,
               cast(func.sum(_lots.c.points), BigInteger).label("points"),
               cast(func.sum(_lots.c.remaining), BigInteger).label("remaining"))
        .where(earned).group_by(cohort, state, gone)
    ).all()
    moves = _moves(conn, program_id).subquery("moves")
    month = months.of(moves.c.at).label("month")
    later = case((moves.c.at > as_of, 1), else_=0).label("later")
    moved = conn.execute(
        select(cohort, state, gone, month, moves.c.category, later,
               cast(func.sum(moves.c.points), BigInteger).label("points"))
        .select_from(moves).join(_lots, _lots.c.entry_id == moves.c.lot)
        .where(earned).group_by(cohort, state, gone, month, moves.c.category, later)
    ).all()
    found = LotFlows()
    recorded: dict[tuple[str, str, str], int] = {}
    after: dict[tuple[str, str, str], int] = {}
    for r in moved:
        group = (r.cohort, r.state, r.gone)
        recorded[group] = recorded.get(group, 0) + int(r.points)
        if r.later:
            after[group] = after.get(group, 0) + int(r.points)
        elif r.points:
            found.flows.add(r.cohort, r.month, r.category, int(r.points))
    for r in lots:
        group = (r.cohort, r.state, r.gone)
        issued = found.flows.issued
        issued[r.cohort] = issued.get(r.cohort, 0) + int(r.points)
        # Not explained by a recorded move: repaying a debt the balance showed, at issue.
        unexplained = int(r.points) - int(r.remaining) - recorded.get(group, 0)
        if unexplained:
            found.flows.add(r.cohort, r.cohort, "cancelled", unexplained)
        outstanding = int(r.remaining) + after.get(group, 0)
        if r.state == "pending":
            found.pending += outstanding
        elif r.state == "expired" and outstanding:
            found.unrecorded_expiry += outstanding
            found.flows.add(r.cohort, r.gone, "expired", outstanding)
    return found


def sales(conn: Connection, program_id: str, months: Months, as_of: datetime
          ) -> dict[str, tuple[int, int]]:
    """Per local month of purchase: (the price, the points earned in the program) of the
    purchases by as_of that earned points in it, both net of what their refunds by as_of
    gave back (the money returned, the points a refund's entries took back)."""
    mine = and_(_ledger.c.program_id == program_id, _ledger.c.occurred_at <= as_of)
    earned = (select(_ledger.c.purchase_id,
                     cast(func.sum(_ledger.c.points), BigInteger).label("points"))
              .where(mine, _ledger.c.kind == "earn", _ledger.c.purchase_id.is_not(None))
              .group_by(_ledger.c.purchase_id).subquery("earned"))
    of_purchase = _json_int(conn, "purchase_id")
    taken = (select(of_purchase.label("purchase_id"),
                    cast(func.sum(_ledger.c.points), BigInteger).label("points"))
             .where(mine, _ledger.c.kind == "refund", of_purchase.is_not(None))
             .group_by(of_purchase).subquery("taken"))
    returned = (select(_refunds.c.purchase_id,
                       cast(func.sum(_refunds.c.amount_minor), BigInteger).label("money"))
                .where(_refunds.c.occurred_at <= as_of)
                .group_by(_refunds.c.purchase_id).subquery("returned"))
    month = months.of(_purchases.c.occurred_at).label("month")
    price = _purchases.c.total_minor - func.coalesce(returned.c.money, 0)
    points = earned.c.points + func.coalesce(taken.c.points, 0)
    rows = conn.execute(
        select(month, cast(func.sum(price), BigInteger).label("price"),
               cast(func.sum(points), BigInteger).label("points"))
        .select_from(earned).join(_purchases, _purchases.c.id == earned.c.purchase_id)
        .outerjoin(taken, taken.c.purchase_id == earned.c.purchase_id)
        .outerjoin(returned, returned.c.purchase_id == earned.c.purchase_id)
        .group_by(month)
    ).all()
    return {r.month: (int(r.price), int(r.points)) for r in rows}

