"""What the CLV models read from the store, set-based over a program's counted purchases
(records/counted_purchases.py: net of refunds, exclusions applied, in the program's
currency, stores and time zone): one grouped pass giving per member the distinct purchase
days, the first and last of them and the spend, with the first day's spend told apart;
the members' margin when the program declares margins by category; the figures of the
simple retention-based CLV (the segment of the RFM snapshot in force:
records/member_figures.snapshot_segments)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Connection, and_, case, cast, func, literal, select

from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.counted_purchases import counted_lines, counted_purchases
from loyalty_engine.rules.compiled import CompiledProgram


@dataclass(frozen=True, slots=True)
class ClvInputs:
    """Per member with a counted purchase by the calibration end, in member-id order.

    x: repeat purchase days (distinct local purchase days after the first); t_x: weeks from
    the first purchase day to the last; T: weeks from the first purchase day to the
    calibration end's local day; mean_repeat_spend_minor: the spend of the repeat days over
    x (0 where x = 0), the first day excluded as in the models' papers."""

    calibration_day: date
    member_ids: list[str]
    first_day: list[date]
    last_day: list[date]
    spend_minor: NDArray[np.int64]
    repeat_spend_minor: NDArray[np.int64]
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]

    @property
    def mean_repeat_spend_minor(self) -> NDArray[np.float64]:
        """The mean spend of the repeat purchase days (0 for a member with none)."""
        out = np.zeros(self.x.size)
        repeat = self.x > 0
        out[repeat] = self.repeat_spend_minor[repeat] / self.x[repeat]
        return out

    @property
    def repeat_members(self) -> int:
        """Members who bought again on a later day."""
        return int(np.count_nonzero(self.x > 0))


def clv_inputs(conn: Connection, program: CompiledProgram, calibration_end: datetime,
               as_of: datetime) -> ClvInputs:
    """One grouped pass: each member's purchase days (their spend summed per local day)
    and, over those, the count, first, last, total spend and the spend of the days after
    the first. Purchases up to `calibration_end`, net of refunds known by `as_of`."""
    counted = counted_purchases(conn, program, as_of)
    first_day = func.min(counted.c.local_day).over(partition_by=counted.c.member_id)
    daily = (
        select(counted.c.member_id, counted.c.local_day,
               cast(func.sum(counted.c.net_minor), BigInteger).label("spend"),
               first_day.label("first_day"))
        .where(counted.c.occurred_at <= calibration_end)
        .group_by(counted.c.member_id, counted.c.local_day)
        .subquery("daily")
    )
    rows = conn.execute(
        select(daily.c.member_id, func.count().label("days"),
               func.min(daily.c.local_day).label("first"),
               func.max(daily.c.local_day).label("last"),
               cast(func.sum(daily.c.spend), BigInteger).label("spend"),
               cast(func.sum(case((daily.c.local_day == daily.c.first_day, 0),
                                  else_=daily.c.spend)), BigInteger).label("repeat_spend"))
        .group_by(daily.c.member_id)
        .order_by(daily.c.member_id)
    ).all()
    calibration_day = local_day(program, calibration_end)
    firsts = [date.fromisoformat(row.first) for row in rows]
    lasts = [date.fromisoformat(row.last) for row in rows]
    first_ordinal = np.array([d.toordinal() for d in firsts], dtype=np.float64)
    last_ordinal = np.array([d.toordinal() for d in lasts], dtype=np.float64)
    return ClvInputs(
        calibration_day=calibration_day,
        member_ids=[row.member_id for row in rows],
        first_day=firsts, last_day=lasts,
        spend_minor=np.array([int(row.spend) for row in rows], dtype=np.int64),
        repeat_spend_minor=np.array([int(row.repeat_spend) for row in rows], dtype=np.int64),
        x=np.array([row.days - 1 for row in rows], dtype=np.float64),
        t_x=(last_ordinal - first_ordinal) / 7.0,
        T=(calibration_day.toordinal() - first_ordinal) / 7.0,
    )


def member_margins(conn: Connection, program: CompiledProgram, calibration_end: datetime,
                   as_of: datetime) -> dict[str, Fraction]:
    """Each member's gross margin on their counted spend up to the calibration end, when
    the program sets margins by category: sum(line net x margin of its category) / sum(line
    net), in one grouped pass over the counted lines (an empty dict when every category
    has the default margin: then the margin is the default for everyone)."""
    economics = program.insights.economics
    if not economics.category_margins:
        return {}
    margins = [economics.margin, *economics.category_margins.values()]
    scale = math.lcm(*(m.denominator for m in margins))

    def scaled(m: Fraction) -> int:
        return int(m * scale)

    lines = counted_lines(conn, program, as_of)
    weight = case(
        *((lines.c.category == category, literal(scaled(m)))
          for category, m in sorted(economics.category_margins.items())),
        else_=literal(scaled(economics.margin)))
    rows = conn.execute(
        select(lines.c.member_id,
               cast(func.sum(lines.c.net_minor), BigInteger).label("spend"),
               cast(func.sum(lines.c.net_minor * weight), BigInteger).label("weighted"))
        .where(lines.c.occurred_at <= calibration_end)
        .group_by(lines.c.member_id)
    ).all()
    return {row.member_id: Fraction(int(row.weighted), int(row.spend) * scale)
            for row in rows if row.spend}


@dataclass(frozen=True, slots=True)
class RetentionInputs:
    """The figures of the simple retention-based CLV over two periods of `period_weeks`
    ending at the calibration end's local day: the period (its last period_weeks x 7 days,
    that day included) and the one before it. `active_before` members bought in the one
    before, `retained` of them bought again in the period; per member, the spend and
    purchase days in the period."""

    period_weeks: int
    period_start: date  # the period's first day
    active_before: int
    retained: int
    spend_in_period_minor: dict[str, int]
    days_in_period: dict[str, int]


def retention_period_weeks(first_day: date, calibration_day: date) -> int:
    """A year when the program's history covers two; else half of its history in whole
    weeks (at least one): the retention rate needs a period and one before it."""
    history_weeks = (calibration_day - first_day).days // 7
    return max(1, min(52, history_weeks // 2))


def retention_inputs(conn: Connection, program: CompiledProgram, calibration_end: datetime,
                     as_of: datetime, period_weeks: int) -> RetentionInputs:
    """One grouped pass over the counted purchases of the two periods."""
    calibration_day = local_day(program, calibration_end)
    start = calibration_day - timedelta(days=7 * period_weeks - 1)
    before = start - timedelta(days=7 * period_weeks)
    counted = counted_purchases(conn, program, as_of)
    day = counted.c.local_day
    in_period = day >= start.isoformat()
    in_before = and_(day >= before.isoformat(), day < start.isoformat())
    rows = conn.execute(
        select(counted.c.member_id,
               cast(func.sum(case((in_period, counted.c.net_minor), else_=0)),
                    BigInteger).label("spend"),
               func.count(func.distinct(case((in_period, day), else_=None))).label("days"),
               func.max(case((in_before, 1), else_=0)).label("before"))
        .where(counted.c.occurred_at <= calibration_end, day >= before.isoformat())
        .group_by(counted.c.member_id)
    ).all()
    active_before = sum(1 for row in rows if row.before)
    retained = sum(1 for row in rows if row.before and row.days)
    return RetentionInputs(
        period_weeks=period_weeks, period_start=start, active_before=active_before,
        retained=retained,
        spend_in_period_minor={row.member_id: int(row.spend) for row in rows if row.days},
        days_in_period={row.member_id: int(row.days) for row in rows if row.days})

