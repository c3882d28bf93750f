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

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Integer,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loyalty_engine.analytics.figures import MemberFigures
from loyalty_engine.analytics.segments import SegmentMap
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.counted_purchases import counted_purchases
from loyalty_engine.records.counted_purchases import local_day_column as local_day_of
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables

_ledger = tables.ledger_entries

TAKEN_BACK = ("refund", "debt")


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
    as_of_day = local_day(program, as_of)
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


# --- the snapshot in SQL ----------------------------------------------------------------------
# The rfm_snapshot job scores every member of a program at once: the grouped pass, the
# scores and the segments in one INSERT ... SELECT, so that no row travels to Python and
# back. The scores follow analytics/rfm.py exactly (the tests compare the two): a quintile
# score is floor(5 (rank - 1) / n) + 1 where rank() is 1 + the members with a strictly
# lower value (ties share their first position), recency ranked by days, most first; fixed
# boundaries score 1 + the cuts strictly below the value (recency: 5 - that).

def _quintile(value: ColumnElement[int], descending: bool = False) -> ColumnElement[int]:
    order = value.desc() if descending else value
    return (5 * (func.rank().over(order_by=order) - 1)) // func.count().over() + 1


def _fixed(value: ColumnElement[int], cuts: Sequence[int],
           descending: bool = False) -> ColumnElement[int]:
    scores = [5, 4, 3, 2] if descending else [1, 2, 3, 4]
    return case(*((value <= cut, score) for cut, score in zip(cuts, scores, strict=True)),
                else_=1 if descending else 5)


def _segment(segments: SegmentMap, r: ColumnElement[int], f: ColumnElement[int],
             m: ColumnElement[int]) -> ColumnElement[str]:
    whens = []
    for name, boxes in segments.segments:
        for box in boxes:
            parts = [column.between(low, high) for column, (low, high) in
                     ((r, box.r), (f, box.f), (m, box.m)) if (low, high) != (1, 5)]
            whens.append((and_(true(), *parts), literal(name)))
    return case(*whens, else_=literal("")) if whens else literal("")


def write_snapshot(conn: Connection, program: CompiledProgram, as_of: datetime,
                   run_date: date, recorded: datetime, since: datetime | None = None) -> int:
    """Insert every purchasing member's measures, scores and segment as of as_of under
    run_date (rows already there are kept), in one statement; returns the rows of that
    date recorded at `recorded` (those written, for a date not taken before)."""
    counted = counted_purchases(conn, program, as_of, since)
    measures = (select(counted.c.member_id,
                       func.max(counted.c.occurred_at).label("last_at"),
                       func.count().label("frequency"),
                       cast(func.sum(counted.c.net_minor), BigInteger).label("monetary"))
                .group_by(counted.c.member_id).subquery("measures"))
    as_of_day = local_day(program, as_of)
    last_day = local_day_of(conn, program.timezone, measures.c.last_at, as_of)
    recency: ColumnElement[int]
    if conn.dialect.name == "sqlite":
        recency = cast(func.julianday(literal(as_of_day.isoformat()))
                       - func.julianday(last_day), Integer)
    else:
        # date - date is a number of days in PostgreSQL.
        recency = type_coerce(literal(as_of_day, Date) - cast(last_day, Date), Integer)
    settings = program.insights.rfm
    frequency, monetary = measures.c.frequency, measures.c.monetary
    scored = select(
        measures.c.member_id, recency.label("recency_days"), frequency, monetary,
        (_quintile(recency, descending=True) if settings.recency_days is None
         else _fixed(recency, settings.recency_days, descending=True)).label("r"),
        (_quintile(frequency) if settings.frequency is None
         else _fixed(frequency, settings.frequency)).label("f"),
        (_quintile(monetary) if settings.monetary_minor is None
         else _fixed(monetary, settings.monetary_minor)).label("m"),
    ).subquery("scored")
    snapshots = tables.rfm_snapshots
    rows = select(
        scored.c.member_id, literal(program.program_id, String),
        literal(run_date, snapshots.c.as_of_date.type),
        literal(as_of, snapshots.c.taken_at.type), scored.c.recency_days, scored.c.frequency,
        scored.c.monetary, scored.c.r, scored.c.f, scored.c.m,
        _segment(program.insights.segments, scored.c.r, scored.c.f, scored.c.m),
        literal(recorded, snapshots.c.recorded_at.type),
    ).where(true())  # SQLite: WHERE before ON CONFLICT, so the parser does not read a join
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(snapshots).from_select(
        ["member_id", "program_id", "as_of_date", "taken_at", "recency_days", "frequency",
         "monetary_minor", "r", "f", "m", "segment", "recorded_at"], rows
    ).on_conflict_do_nothing(index_elements=["member_id", "program_id", "as_of_date"])
    conn.execute(statement)
    # (rowcount of an INSERT ... SELECT is not reported by every driver: counted instead)
    return int(conn.execute(select(func.count()).select_from(snapshots).where(
        snapshots.c.program_id == program.program_id, snapshots.c.as_of_date == run_date,
        snapshots.c.recorded_at == recorded)).scalar_one())


def segment_mix(conn: Connection, program_id: str, as_of: datetime) -> dict[str, int]:
    """Members per RFM segment in the latest snapshot taken by as_of (empty before one)."""
    s = tables.rfm_snapshots
    day = conn.execute(select(func.max(s.c.as_of_date)).where(
        s.c.program_id == program_id, s.c.taken_at <= as_of)).scalar_one_or_none()
    if day is None:
        return {}
    return {segment: int(n) for segment, n in conn.execute(
        select(s.c.segment, func.count()).where(s.c.program_id == program_id,
                                                s.c.as_of_date == day)
        .group_by(s.c.segment).order_by(s.c.segment))}
