"""The purchases and lines a program counts, as of an instant, net of refunds: the one source
every relationship measure (RFM, retention, cohorts, CLV, share of wallet) groups over."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    String,
    Subquery,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
)

from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables

_p = tables.purchases
_i = tables.purchase_items
_r = tables.refunds
_e = tables.enrolments


def counted_purchases(conn: Connection, program: CompiledProgram, as_of: datetime,
                      since: datetime | None = None) -> Subquery:
    """One row per purchase the program counts by as_of (after since): `member_id,
    purchase_id, occurred_at, local_day` ('YYYY-MM-DD' in the program's zone) and
    `net_minor`, the spend on its counted lines (not excluded) less its refunds by as_of.

    Only purchases of members enrolled in the program, in its currency and stores. A
    refund takes back the counted spend pro rata (counted x refunded / total, rounded half
    up), as it takes back points by the lines they were earned on; a purchase refunded in
    full, or with nothing counted, is left out, so it counts nowhere."""
    counted, refunded, total, base = _base(conn, program, as_of, since)
    if isinstance(refunded, BindParameter):  # no refund by as_of: nothing to net
        query = base.add_columns(counted.label("net_minor")).where(counted > 0)
    else:
        net = counted - _share(counted, refunded, total)
        query = base.add_columns(net.label("net_minor")).where(refunded < total, net > 0)
    return query.subquery("counted_purchases")


def counted_lines(conn: Connection, program: CompiledProgram, as_of: datetime,
                  since: datetime | None = None) -> Subquery:
    """The same per counted line: `member_id, purchase_id, occurred_at, local_day,
    category, sku, net_minor` (the line's amount less its pro-rata share of the purchase's
    refunds by as_of); lines of purchases refunded in full are left out."""
    refunded = _refunded(as_of)
    paid = func.coalesce(refunded.c.refunded_minor, 0)
    net = _i.c.amount_minor - _share(_i.c.amount_minor, paid, _p.c.total_minor)
    query = (
        select(_p.c.member_id, _p.c.id.label("purchase_id"), _p.c.occurred_at,
               local_day_column(conn, program.timezone, _p.c.occurred_at, as_of).label("local_day"),
               _i.c.category, _i.c.sku, net.label("net_minor"))
        .select_from(_p)
        .join(_i, _i.c.purchase_id == _p.c.id)
        .outerjoin(refunded, refunded.c.purchase_id == _p.c.id)
        .where(*_purchase_filters(program, as_of, since), paid < _p.c.total_minor,
               ~_excluded(program), net > 0)
    )
    return _members_of(conn, program, query).subquery("counted_lines")


def _base(conn: Connection, program: CompiledProgram, as_of: datetime,
          since: datetime | None) -> tuple[ColumnElement[int], ColumnElement[int],
                                           ColumnElement[int], Select[tuple[object, ...]]]:
    query = (
        select(_p.c.member_id, _p.c.id.label("purchase_id"), _p.c.occurred_at,
               local_day_column(conn, program.timezone, _p.c.occurred_at, as_of).label("local_day"))
        .select_from(_p)
        .where(*_purchase_filters(program, as_of, since))
    )
    query = _members_of(conn, program, query)
    paid: ColumnElement[int] = literal(0, BigInteger)
    if _any_refund(conn, as_of):  # most reads of a quiet history skip the join
        refunded = _refunded(as_of)
        paid = func.coalesce(refunded.c.refunded_minor, 0)
        query = query.outerjoin(refunded, refunded.c.purchase_id == _p.c.id)
    if not program.excluded_categories and not program.excluded_skus:
        return _p.c.total_minor, paid, _p.c.total_minor, query  # every line counts
    lines = (
        select(_i.c.purchase_id,
               # PostgreSQL sums bigints as numeric: back to integers for the arithmetic.
               cast(func.sum(case((_excluded(program), 0), else_=_i.c.amount_minor)),
                    BigInteger).label("counted_minor"))
        .group_by(_i.c.purchase_id)
        .subquery("counted_items")
    )
    query = query.join(lines, lines.c.purchase_id == _p.c.id)
    return lines.c.counted_minor, paid, _p.c.total_minor, query


def _members_of(conn: Connection, program: CompiledProgram,
                query: Select[tuple[object, ...]]) -> Select[tuple[object, ...]]:
    """Only the program's members' purchases. An open program enrols every member whose
    purchase it covers while in force, so there the purchases since its first version are
    its members' (no join per purchase); an explicit one joins the enrolments."""
    if program.enrolment == "open":
        versions = tables.program_versions
        start = conn.execute(select(func.min(versions.c.effective_from)).where(
            versions.c.program_id == program.program_id)).scalar_one_or_none()
        return query.where(false()) if start is None else query.where(
            _p.c.occurred_at >= start)
    return query.join(_e, and_(_e.c.member_id == _p.c.member_id,
                               _e.c.program_id == program.program_id))


def _any_refund(conn: Connection, as_of: datetime) -> bool:
    return conn.execute(select(_r.c.id).where(_r.c.occurred_at <= as_of).limit(1)
                        ).first() is not None


def _refunded(as_of: datetime) -> Subquery:
    return (select(_r.c.purchase_id,
                   cast(func.sum(_r.c.amount_minor), BigInteger).label("refunded_minor"))
            .where(_r.c.occurred_at <= as_of)
            .group_by(_r.c.purchase_id)
            .subquery("refunded"))


def _share(part: ColumnElement[int], refunded: ColumnElement[int],
           total: ColumnElement[int]) -> ColumnElement[int]:
    """round_half_up(part x refunded / total) in integers (both databases truncate a
    positive quotient); zero for a purchase of nothing."""
    return case((total > 0, (2 * part * refunded + total) // (2 * total)), else_=0)


def _purchase_filters(program: CompiledProgram, as_of: datetime,
                      since: datetime | None) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = [
        _p.c.member_id.is_not(None), _p.c.currency == program.currency,
        _p.c.occurred_at <= as_of]
    if since is not None:
        found.append(_p.c.occurred_at > since)
    if program.store_ids or program.store_prefixes:
        found.append(or_(
            _p.c.store_id.in_(sorted(program.store_ids)) if program.store_ids else false(),
            *(_p.c.store_id.startswith(prefix, autoescape=True)
              for prefix in program.store_prefixes)))
    return found


def _excluded(program: CompiledProgram) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if program.excluded_categories:
        parts.append(_i.c.category.in_(sorted(program.excluded_categories)))
    if program.excluded_skus:
        parts.append(_i.c.sku.in_(sorted(program.excluded_skus)))
    return or_(*parts) if parts else false()


def local_day_column(conn: Connection, zone: ZoneInfo, column: ColumnElement[datetime],
                     as_of: datetime, unit: Literal["day", "month"] = "day"
                     ) -> ColumnElement[str]:
    """The local date of an instant column as 'YYYY-MM-DD' (unit "month": its month,
    'YYYY-MM'). PostgreSQL converts with the zone itself; SQLite, which has no zones,
    shifts each instant by the offset in force, from the zone's transitions (latest first:
    most rows are recent)."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone(zone.key, column),
                            "YYYY-MM-DD" if unit == "day" else "YYYY-MM")

    def shifted(seconds: int) -> ColumnElement[str]:
        if unit == "day":
            return func.date(column, literal(_modifier(seconds)))
        return func.strftime("%Y-%m", column, literal(_modifier(seconds)))

    changes = _offsets_to(zone, as_of.date())
    if len(changes) == 1:
        return shifted(changes[0][1])
    whens = [(column >= start, shifted(seconds)) for start, seconds in reversed(changes[1:])]
    return cast(case(*whens, else_=shifted(changes[0][1])), String)


# Offsets are worked out from this instant on; an instant before it is shifted by the
# offset in force then (zones' rules before 1990 are not worth a branch per row).
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=64)
def _offsets_to(zone: ZoneInfo, day: date) -> tuple[tuple[datetime, int], ...]:
    # The offsets up to the end of the as-of day's year: one list per zone and year.
    return tuple(offsets(zone, EARLIEST, datetime(day.year + 1, 1, 1, tzinfo=UTC)))


def _modifier(seconds: int) -> str:
    return f"{seconds:+d} seconds"


def offsets(zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) in force from start, and each change up to end:
    [(start, offset), (instant of change, new offset), ...], found day by day and then to
    the minute (zones change on the minute)."""
    def offset(at: datetime) -> int:
        found = at.astimezone(zone).utcoffset()
        return int(found.total_seconds()) if found is not None else 0

    at = start.astimezone(UTC) - timedelta(days=1)
    stop = end.astimezone(UTC) + timedelta(days=1)
    changes = [(at, offset(at))]
    while at < stop:
        following = at + timedelta(days=1)
        if offset(following) != changes[-1][1]:
            low, high = at, following  # offset(low) is the old one, offset(high) the new
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if offset(middle) == changes[-1][1]:
                    low = middle
                else:
                    high = middle
            change = high.replace(second=0, microsecond=0)
            if offset(change) != changes[-1][1] and offset(change - timedelta(minutes=1)) == \
                    changes[-1][1]:
                changes.append((change, offset(change)))
            else:
                changes.append((high, offset(high)))
        at = following
    return changes
