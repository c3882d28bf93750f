"""Retention and defection per calendar period, monthly acquisition cohorts and the
distribution of relationship length, from which periods each member bought in. Pure: the
caller reads the members' counted purchase months (in the program's time zone) from the
store and hands them in.

Definitions (periods are calendar months, quarters or years in the program's time zone;
"bought in a period" means at least one counted purchase — net of refunds, over the lines
the program counts — whose local day falls in it; W is the activity window in periods,
default 1):

- A member is a *customer at the start* of period p when they bought in at least one of
  the W periods before p (p-W .. p-1). S = the customers at the start.
- A member is a *customer at the end* of p when they bought in at least one of the W
  periods ending with p (p-W+1 .. p): the customers at the start of the next period.
  E = the customers at the end.
- N = the customers at the end who were not customers at the start: members who bought in
  p and in none of the W periods before it. They are *first-time* buyers (their first
  counted purchase is in p) or *returning* members (they bought before p-W, then nothing
  for W periods).
- retained = E - N = the customers at the start who are still customers at the end;
  lost = S - retained.
- retention rate = (E - N) / S; defection rate = 1 - retention = lost / S. Both are
  undefined (None) when S = 0. Since E - N counts members of S only, both lie in [0, 1].

With W = 1 this is the period-on-period repeat rate: of the members who bought in the
previous period, the share who buy again in this one.

Cohorts: a member's cohort is the month of their first counted purchase; cell k of a
cohort is the number of its members who bought in the k-th month after it (k = 0: the
cohort month itself, so its share is 1), and its share that number over the cohort's size.

Relationship length (tenure) = the as-of local day minus the first counted purchase day,
in days, counted into half-open buckets [low, high)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np

# month_index and month_key are re-exported: callers of the retention arithmetic use them.
from loyalty_engine.domain.periods import month_index as month_index
from loyalty_engine.domain.periods import month_key as month_key
from loyalty_engine.domain.periods import period_end, period_start
from loyalty_engine.domain.periods import period_key as calendar_key

Period = Literal["month", "quarter", "year"]
PERIODS: tuple[Period, ...] = ("month", "quarter", "year")
NO_GROUP = ""  # the group of a member the grouping does not place
_MONTHS: dict[str, int] = {"month": 1, "quarter": 3, "year": 12}  # months per period


def _months_in(period: Period) -> int:
    if period not in _MONTHS:
        raise ValueError(f"unknown period {period!r}")
    return _MONTHS[period]


def period_index(period: Period, month: str) -> int:
    """The index of the period of a kind that holds a 'YYYY-MM' month (consecutive periods
    differ by one)."""
    return month_index(month) // _months_in(period)


def _first_day(period: Period, index: int) -> date:
    return period_start("month", month_key(index * _months_in(period)))


def period_key(period: Period, index: int) -> str:
    """A period's key (domain/periods.period_key): 2026-03 (month), 2026-Q1 (quarter),
    2026 (year)."""
    return calendar_key(period, _first_day(period, index))


def period_bounds(period: Period, index: int) -> tuple[date, date]:
    """A period's first local day and the first local day after it."""
    start = _first_day(period, index)
    return start, period_end(period, calendar_key(period, start))


@dataclass(frozen=True, slots=True)
class PeriodRetention:
    """S, E, N and what follows from them for one period (see the module's definitions)."""

    period: str
    start: date  # the period's first local day
    end: date  # the first local day after it
    at_start: int  # S
    at_end: int  # E
    new: int  # N = first_time + returning
    first_time: int
    returning: int
    partial: bool = False  # the as-of instant falls inside the period

    @property
    def retained(self) -> int:
        """E - N: customers at the start still customers at the end."""
        return self.at_end - self.new

    @property
    def lost(self) -> int:
        """S - (E - N): customers at the start who are not at the end."""
        return self.at_start - self.retained

    @property
    def retention(self) -> float | None:
        """(E - N) / S, None when S = 0."""
        return self.retained / self.at_start if self.at_start else None

    @property
    def defection(self) -> float | None:
        """1 - retention, None when S = 0."""
        return self.lost / self.at_start if self.at_start else None

    def as_json(self) -> dict[str, object]:
        return {"period": self.period, "start": self.start.isoformat(),
                "end": self.end.isoformat(), "partial": self.partial,
                "at_start": self.at_start, "at_end": self.at_end, "new": self.new,
                "first_time": self.first_time, "returning": self.returning,
                "retained": self.retained, "lost": self.lost,
                "retention": self.retention, "defection": self.defection}


def _bought_matrix(activity: Mapping[str, Collection[str]], members: list[str],
                   period: Period, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Members x periods lo..hi (inclusive): whether each bought in each; and each member's
    first period (their first counted purchase month's)."""
    bought = np.zeros((len(members), hi - lo + 1), dtype=bool)
    first = np.zeros(len(members), dtype=np.int64)
    known: dict[str, int] = {}  # month -> period index, worked out once per month
    for row, member in enumerate(members):
        indexes = [known[month] if month in known
                   else known.setdefault(month, period_index(period, month))
                   for month in activity[member]]
        first[row] = min(indexes) if indexes else hi + 1
        for index in indexes:
            if lo <= index <= hi:
                bought[row, index - lo] = True
    return bought, first


def retention_by_period(activity: Mapping[str, Collection[str]], period: Period,
                        last: int, count: int, window: int = 1,
                        last_partial: bool = False) -> list[PeriodRetention]:
    """S, E and N for the `count` periods ending with the period of index `last`, oldest
    first. `activity`: member -> the 'YYYY-MM' months with a counted purchase (all of
    them up to the as-of instant; earlier months decide first-time against returning)."""
    return retention_by_group(activity, {}, period, last, count, window,
                              last_partial, split=False)[NO_GROUP]


def retention_by_group(activity: Mapping[str, Collection[str]],
                       groups: Mapping[str, Collection[str]], period: Period, last: int,
                       count: int, window: int = 1, last_partial: bool = False,
                       split: bool = True) -> dict[str, list[PeriodRetention]]:
    """retention_by_period for each group of members: `groups` maps a member to the groups
    they belong to (a segment, a tier, every club they are in); a member in none is in
    NO_GROUP. Each group's figures count its members only. With split=False, one group
    (NO_GROUP) of every member."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if window < 1:
        raise ValueError("the activity window must be at least one period")
    members = sorted(activity)
    lo, hi = last - count + 1 - window, last
    bought, first = _bought_matrix(activity, members, period, lo, hi)
    rows: dict[str, list[int]] = {}
    for row, member in enumerate(members):
        names = (groups.get(member) or (NO_GROUP,)) if split else (NO_GROUP,)
        for name in names:
            rows.setdefault(name, []).append(row)
    if not split:
        rows.setdefault(NO_GROUP, [])
    result = {}
    for name, chosen in sorted(rows.items()):
        result[name] = _periods(bought[chosen], first[chosen], period, lo, last, count,
                                window, last_partial)
    return result


def _periods(bought: np.ndarray, first: np.ndarray, period: Period, lo: int, last: int,
             count: int, window: int, last_partial: bool) -> list[PeriodRetention]:
    found = []
    for index in range(last - count + 1, last + 1):
        col = index - lo  # column of period p; the window before it is col-window .. col-1
        at_start = bought[:, col - window:col].any(axis=1)
        at_end = bought[:, col - window + 1:col + 1].any(axis=1)
        new = at_end & ~at_start
        first_time = new & (first == index)
        start, end = period_bounds(period, index)
        found.append(PeriodRetention(
            period=period_key(period, index), start=start, end=end,
            at_start=int(at_start.sum()), at_end=int(at_end.sum()), new=int(new.sum()),
            first_time=int(first_time.sum()), returning=int((new & ~first_time).sum()),
            partial=last_partial and index == last))
    return found


@dataclass(frozen=True, slots=True)
class Cohort:
    """A monthly acquisition cohort: its size and, for k = 0, 1, ... months after its
    month, how many of its members bought then and what share of the cohort that is."""

    month: str
    size: int
    active: tuple[int, ...]

    @property
    def shares(self) -> tuple[float, ...]:
        """active[k] / size (empty for an empty cohort)."""
        return tuple(n / self.size for n in self.active) if self.size else ()

    def as_json(self) -> dict[str, object]:
        return {"month": self.month, "size": self.size, "active": list(self.active),
                "shares": list(self.shares)}


def cohort_matrix(activity: Mapping[str, Collection[str]], first_month: str,
                  last_month: str) -> list[Cohort]:
    """The cohorts of the months first_month .. last_month ('YYYY-MM'), oldest first; each
    has a cell for every month from its own through last_month (the as-of month). A month
    in which nobody made a first purchase is an empty cohort (size 0, no cells)."""
    lo, hi = month_index(first_month), month_index(last_month)
    if hi < lo:
        raise ValueError(f"the cohorts end ({last_month}) before they begin ({first_month})")
    counts = np.zeros((hi - lo + 1, hi - lo + 1), dtype=np.int64)  # cohort x k
    sizes = np.zeros(hi - lo + 1, dtype=np.int64)
    known: dict[str, int] = {}  # month -> index, worked out once per month
    for months in activity.values():
        indexes = {known[month] if month in known
                   else known.setdefault(month, month_index(month)) for month in months}
        if not indexes:
            continue
        cohort = min(indexes)
        if not lo <= cohort <= hi:
            continue
        sizes[cohort - lo] += 1
        for index in indexes:
            if index <= hi:
                counts[cohort - lo, index - cohort] += 1
    return [Cohort(month=month_key(lo + c), size=int(sizes[c]),
                   active=tuple(int(n) for n in counts[c, :hi - lo - c + 1])
                   if sizes[c] else ())
            for c in range(hi - lo + 1)]


# Relationship length buckets: [low, high) in days (None: open-ended) and their names.
TENURE_BUCKETS: tuple[tuple[int, int | None, str], ...] = (
    (0, 30, "under 30 days"), (30, 90, "30-89 days"), (90, 180, "90-179 days"),
    (180, 365, "180-364 days"), (365, 730, "1-2 years"), (730, 1095, "2-3 years"),
    (1095, None, "3 years or more"))


@dataclass(frozen=True, slots=True)
class TenureBucket:
    """Members whose relationship length is in [low, high) days."""

    low: int
    high: int | None
    label: str
    members: int
    share: float  # of all members counted (0 when there are none)

    def as_json(self) -> dict[str, object]:
        return {"low_days": self.low, "high_days": self.high, "label": self.label,
                "members": self.members, "share": self.share}


def tenure_distribution(tenure_days: Iterable[int],
                        buckets: tuple[tuple[int, int | None, str], ...] = TENURE_BUCKETS,
                        ) -> list[TenureBucket]:
    """How many members' relationship length falls in each bucket (buckets must run
    contiguously from 0 to an open end)."""
    if not buckets or buckets[0][0] != 0 or buckets[-1][1] is not None or any(
            high != buckets[i + 1][0] for i, (_, high, _) in enumerate(buckets[:-1])):
        raise ValueError("tenure buckets must run contiguously from 0 to an open end")
    counts = [0] * len(buckets)
    total = 0
    for days in tenure_days:
        if days < 0:
            raise ValueError(f"a relationship length of {days} days is negative")
        total += 1
        for i, (low, high, _) in enumerate(buckets):
            if low <= days and (high is None or days < high):
                counts[i] += 1
                break
    return [TenureBucket(low, high, label, n, n / total if total else 0.0)
            for (low, high, label), n in zip(buckets, counts, strict=True)]
