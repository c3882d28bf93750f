"""Retention and defection per period (split by segment, tier or club), monthly acquisition
cohorts, the distribution of relationship length, and lapsed members, as of an instant:
one grouped read of the program's counted purchases (records/activity.py), the
arithmetic in analytics/retention.py and analytics/lapse.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection

from loyalty_engine.analytics.lapse import Activity, LapseVerdict, judge_all
from loyalty_engine.analytics.retention import (
    NO_GROUP,
    PERIODS,
    Cohort,
    Period,
    PeriodRetention,
    TenureBucket,
    cohort_matrix,
    month_index,
    month_key,
    period_bounds,
    period_index,
    retention_by_group,
    retention_by_period,
    tenure_distribution,
)
from loyalty_engine.domain.errors import NoPurchasesError
from loyalty_engine.domain.periods import start_of_day
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.activity import (
    MemberMonths,
    club_groups,
    member_months,
    segment_groups,
    tier_groups,
)
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.services.analytics_clv import member_clv
from loyalty_engine.services.programs import program_as_of
from loyalty_engine.store.unit_of_work import read_use_case

Split = Literal["segment", "tier", "club"]
SPLITS: tuple[Split, ...] = ("segment", "tier", "club")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Retention and defection for the periods up to the as-of instant (the last one may
    be partial), the same per group when split, and the relationship length of every
    member with a counted purchase."""

    program_id: str
    as_of: datetime
    timezone: str
    period: Period
    window: int  # the activity window, in periods
    split: Split | None
    members: int  # with a counted purchase by as_of
    periods: list[PeriodRetention]
    groups: dict[str, list[PeriodRetention]]  # empty unless split
    tenure: list[TenureBucket]

    def as_json(self) -> dict[str, Any]:
        return {
            "program": self.program_id, "as_of": self.as_of.isoformat(),
            "timezone": self.timezone, "period": self.period, "window": self.window,
            "definitions": DEFINITIONS, "split": self.split, "members": self.members,
            "periods": [p.as_json() for p in self.periods],
            "groups": {name: [p.as_json() for p in rows]
                       for name, rows in self.groups.items()},
            "tenure": [b.as_json() for b in self.tenure],
        }


DEFINITIONS = {
    "S": "customers at the start: bought in at least one of the `window` periods before "
         "the period",
    "E": "customers at the end: bought in at least one of the `window` periods ending with "
         "the period",
    "N": "customers at the end who were not at the start (first-time buyers and members "
         "returning after more than `window` periods without a purchase)",
    "retention": "(E - N) / S",
    "defection": "1 - retention",
}


@dataclass(frozen=True, slots=True)
class CohortReport:
    """Monthly acquisition cohorts: share of each first-purchase month's members buying in
    each month after it, up to the as-of month (which may be partial)."""

    program_id: str
    as_of: datetime
    timezone: str
    months: int
    cohorts: list[Cohort]
    partial: bool  # the last month is not over at as_of

    def as_json(self) -> dict[str, Any]:
        return {"program": self.program_id, "as_of": self.as_of.isoformat(),
                "timezone": self.timezone, "months": self.months,
                "last_month_partial": self.partial,
                "cohorts": [c.as_json() for c in self.cohorts]}


@dataclass(frozen=True, slots=True)
class LapseReport:
    """The members lapsed as of an instant (longest gap first), the rule that judged them
    and why that rule."""

    program_id: str
    as_of: datetime
    timezone: str
    rule: Literal["p_alive", "gap"]
    why: str
    p_alive_below: float
    gap_multiple: float
    default_gap_days: int
    members: int  # judged: every member with a counted purchase by as_of
    lapsed: list[LapseVerdict]

    def as_json(self) -> dict[str, Any]:
        return {"program": self.program_id, "as_of": self.as_of.isoformat(),
                "timezone": self.timezone, "rule": self.rule, "why": self.why,
                "thresholds": {"p_alive_below": self.p_alive_below,
                               "gap_multiple": self.gap_multiple,
                               "default_gap_days": self.default_gap_days},
                "members": self.members, "lapsed_count": len(self.lapsed),
                "lapsed": [v.as_json() for v in self.lapsed]}


def _activity(conn: Connection, program: CompiledProgram,
              as_of: datetime) -> dict[str, MemberMonths]:
    found = member_months(conn, program, as_of)
    if not found:
        raise NoPurchasesError(
            f"program {program.program_id} has no counted purchase by "
            f"{as_of.astimezone(program.timezone).isoformat()}; give a later --as-of")
    return found


def _last_month(program: CompiledProgram, as_of: datetime) -> str:
    """The local month the report ends with: the one holding the instant just before
    as_of, so that a report as of a month's first midnight ends with the month before,
    complete."""
    return (as_of - timedelta(microseconds=1)).astimezone(program.timezone).date() \
        .isoformat()[:7]


def _partial(program: CompiledProgram, as_of: datetime, period: Period, last: int) -> bool:
    """Whether the last period is not over at as_of: it is complete when as_of is its end
    (the next period's first midnight, program time)."""
    return as_of < start_of_day(period_bounds(period, last)[1], program.timezone)


@read_use_case
def retention_report(conn: Connection, program_id: str, as_of: datetime,
                     period: Period = "month", periods: int = 12,
                     split: Split | None = None, window: int = 1) -> RetentionReport:
    """Retention and defection for the `periods` calendar periods up to the one holding
    the instant just before as_of (program time; that last one is partial unless as_of is
    its end), by the definitions in analytics/retention.py; split by each member's segment
    (latest RFM snapshot taken by as_of), stored tier, or the clubs they were in at as_of:
    the groups as of as_of, for every period shown."""
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}")
    if periods < 1 or window < 1:
        raise ValueError("periods and the window must be at least 1")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (segment, tier or club)")
    program = program_as_of(conn, program_id, as_of)
    found = _activity(conn, program, as_of)
    months = {member_id: set(m.months) for member_id, m in found.items()}
    last = period_index(period, _last_month(program, as_of))
    partial = _partial(program, as_of, period, last)
    overall = retention_by_period(months, period, last, periods, window, partial)
    groups: dict[str, list[PeriodRetention]] = {}
    if split is not None:
        groups = retention_by_group(months, _groups(conn, program_id, as_of, split),
                                    period, last, periods, window, partial)
    day = local_day(program, as_of)
    return RetentionReport(
        program_id, as_of, program.timezone.key, period, window, split, len(found),
        overall, groups, tenure_distribution((day - m.first_day).days
                                             for m in found.values()))


def _groups(conn: Connection, program_id: str, as_of: datetime,
            split: Split) -> Mapping[str, tuple[str, ...]]:
    readers: dict[str, Callable[[], Mapping[str, tuple[str, ...]]]] = {
        "segment": lambda: segment_groups(conn, program_id, as_of),
        "tier": lambda: tier_groups(conn, program_id),
        "club": lambda: club_groups(conn, program_id, as_of),
    }
    return readers[split]()


@read_use_case
def cohort_report(conn: Connection, program_id: str, as_of: datetime,
                  months: int = 12) -> CohortReport:
    """The acquisition cohorts of the `months` months up to the as-of month (program
    time), each with the share of its members buying in each month after it."""
    if months < 1:
        raise ValueError("months must be at least 1")
    program = program_as_of(conn, program_id, as_of)
    found = _activity(conn, program, as_of)
    last = _last_month(program, as_of)
    first = month_key(month_index(last) - months + 1)
    cohorts = cohort_matrix({member_id: set(m.months) for member_id, m in found.items()},
                            first, last)
    return CohortReport(program_id, as_of, program.timezone.key, months, cohorts,
                        _partial(program, as_of, "month", month_index(last)))


@read_use_case
def lapsed_members(conn: Connection, program_id: str, as_of: datetime,
                   p_alive: Mapping[str, float] | None = None) -> LapseReport:
    """The members lapsed as of as_of by the program's lapse rule (program.insights.lapse):
    by P(alive) when the program has at least min_repeat_members repeat customers and the
    CLV model gives it (services/analytics_clv.member_clv, fitted as of then, unless the
    caller gives each member's), else by the gap rule."""
    program = program_as_of(conn, program_id, as_of)
    rule = program.insights.lapse
    found = _activity(conn, program, as_of)
    repeat = sum(1 for m in found.values() if m.days >= 2)
    if p_alive is None and repeat >= rule.min_repeat_members:
        p_alive = {member: figures.p_alive for member, figures
                   in member_clv(conn, program_id, as_of).items()
                   if figures.p_alive is not None} or None
    if p_alive is None:
        chosen: Literal["p_alive", "gap"] = "gap"
        why = ("the BG/NBD model gives no P(alive) here (too few repeat customers, or no "
               "fit), so the gap rule decides")
    elif repeat < rule.min_repeat_members:
        chosen = "gap"
        why = (f"only {repeat} member(s) bought on two days or more, fewer than the "
               f"{rule.min_repeat_members} the P(alive) model needs, so the gap rule "
               "decides")
    else:
        chosen = "p_alive"
        why = (f"{repeat} repeat members, at least {rule.min_repeat_members}: P(alive) "
               "decides (the gap rule for members the model gives no figure)")
    activity = [Activity(m.member_id, m.first_day, m.last_day, m.days)
                for m in found.values()]
    verdicts = judge_all(activity, local_day(program, as_of), rule,
                         p_alive if chosen == "p_alive" else None)
    lapsed = sorted((v for v in verdicts.values() if v.lapsed),
                    key=lambda v: (-v.gap_days, v.member_id))
    return LapseReport(program_id, as_of, program.timezone.key, chosen, why,
                       rule.p_alive_below, rule.gap_multiple, rule.default_gap_days,
                       len(found), lapsed)


__all__ = ["NO_GROUP", "SPLITS", "CohortReport", "LapseReport", "NoPurchasesError",
           "RetentionReport", "cohort_report", "lapsed_members", "retention_report"]
