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
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    true,
    type_coerce,
    update,
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


def snapshot_size(conn: Connection, program_id: str, run_date: date) -> int:
    """The members in the program's snapshot of run_date (0 when that date was not taken)."""
    s = tables.rfm_snapshots
    return int(conn.execute(select(func.count()).select_from(s).where(
        s.c.program_id == program_id, s.c.as_of_date == run_date)).scalar_one())


def store_clv(conn: Connection, program_id: str, run_date: date,
              values: Sequence[tuple[str, int, float | None]]) -> None:
    """Set (member, clv_minor, p_alive) on the rows of the program's snapshot of run_date
    (members without a row there are not added)."""
    if not values:
        return
    s = tables.rfm_snapshots
    conn.execute(
        update(s).where(s.c.member_id == bindparam("member"), s.c.program_id == program_id,
                        s.c.as_of_date == run_date)
        .values(clv_minor=bindparam("clv"), p_alive=bindparam("alive")),
        [{"member": member, "clv": clv, "alive": alive} for member, clv, alive in values])


def snapshot_clv(conn: Connection, program_id: str, run_date: date) -> tuple[int, bool]:
    """The CLV the program's snapshot of run_date stored: the sum of its members' clv_minor
    (the customer base value) and whether P(alive) was stored (the models were fitted; the
    simple retention-based CLV has none)."""
    s = tables.rfm_snapshots
    total, alive = conn.execute(
        select(cast(func.coalesce(func.sum(s.c.clv_minor), 0), BigInteger),
               func.count(s.c.p_alive))
        .where(s.c.program_id == program_id, s.c.as_of_date == run_date)).one()
    return int(total), bool(alive)


def segment_moves(conn: Connection, program_id: str, run_date: date
                  ) -> list[tuple[str, str, str, int, int, int]]:
    """(member, previous segment, segment, r, f, m) of each member whose snapshot of
    run_date puts them in another segment than their latest snapshot before it, by member."""
    s = tables.rfm_snapshots
    latest = (select(s.c.member_id, func.max(s.c.as_of_date).label("day"))
              .where(s.c.program_id == program_id, s.c.as_of_date < run_date)
              .group_by(s.c.member_id).subquery("latest"))
    before = s.alias("before")
    query = (
        select(s.c.member_id, before.c.segment, s.c.segment, s.c.r, s.c.f, s.c.m)
        .join(latest, latest.c.member_id == s.c.member_id)
        .join(before, and_(before.c.member_id == s.c.member_id,
                           before.c.program_id == program_id,
                           before.c.as_of_date == latest.c.day))
        .where(s.c.program_id == program_id, s.c.as_of_date == run_date,
               before.c.segment != s.c.segment)
        .order_by(s.c.member_id))
    return [(m, b, a, r, f, mm) for m, b, a, r, f, mm in conn.execute(query)]


def snapshots_in_force(conn: Connection, as_of: datetime, program_id: str | None = None,
                       members: Sequence[str] | None = None) -> list[Row[Any]]:
    """The RFM snapshot in force at as_of per member and program: each one's latest taken
    by then (whole rows; members without one are absent), of one program and of the
    members given when given. The one definition of "the snapshot in force" that reports,
    retention groups, the CLV offer and a member's insights read."""
    s = tables.rfm_snapshots
    where = [s.c.taken_at <= as_of]
    if program_id is not None:
        where.append(s.c.program_id == program_id)
    if members is not None:
        where.append(s.c.member_id.in_(sorted(set(members))))
    # One pass ranking each member's snapshots newest first, not a self-join on the
    # latest date: PostgreSQL planned that join as a nested loop over a freshly written
    # table (14 s for 20,000 members, quadratic).
    newest_first = func.row_number().over(partition_by=(s.c.program_id, s.c.member_id),
                                          order_by=s.c.as_of_date.desc())
    ranked = select(s, newest_first.label("rank")).where(*where).subquery("ranked")
    return list(conn.execute(
        select(*(ranked.c[column.name] for column in s.c)).where(ranked.c.rank == 1)
        .order_by(ranked.c.program_id, ranked.c.member_id)))


def snapshot_segments(conn: Connection, program_id: str, as_of: datetime,
                      members: Sequence[str] | None = None) -> dict[str, str]:
    """member -> the segment of their RFM snapshot in force at as_of (snapshots_in_force)."""
    return {row.member_id: row.segment
            for row in snapshots_in_force(conn, as_of, program_id, members)}


def segment_mix(conn: Connection, program_id: str, as_of: datetime) -> dict[str, int]:
    """Members per RFM segment of the snapshots in force at as_of, by segment name (empty
    before the first snapshot)."""
    mix: dict[str, int] = {}
    for segment in snapshot_segments(conn, program_id, as_of).values():
        mix[segment] = mix.get(segment, 0) + 1
    return dict(sorted(mix.items()))
