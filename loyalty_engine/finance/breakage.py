"""Breakage from history: the development triangle of points by the local month they were
issued, and the projected ultimate redemption rate.

Each cohort (issue month) holds the points of the lots earned in it. Every point of a lot
ends up redeemed, expired, cancelled (taken back by a refund, repaid to a refund's debt,
removed by an operator's correction) or is still outstanding; `Flows` holds, per cohort and
local month of the event, the points that went each way (a redemption reversed counts as a
negative redemption). At age k (months after the issue month; 0 is the issue month itself)
a cohort's cumulative shares are the sums of its flows up to that month over its points.

Projection (chain-ladder style, on what is outstanding). For each age k, over every cohort
observed at ages k and k+1, the development ratios are volume weighted:

    g_k = sum redeemed at age k+1 / sum outstanding at the end of age k
    e_k = sum expired at age k+1  / sum outstanding at the end of age k
    c_k = sum cancelled at age k+1 / sum outstanding at the end of age k

A cohort last observed at age L is run forward from its outstanding O: for k = L, L+1, ...
up to the oldest age observed, R += O g_k and O -= O (g_k + e_k + c_k). What is still
outstanding after the oldest observed age (the tail) is redeemed in the proportion that
points leaving the outstanding were redeemed rather than expired, over all ages after the
issue month (sum redeemed / sum (redeemed + expired)); with no such history at all every
outstanding point is assumed redeemed (no breakage without evidence).

    ultimate redemption rate   = sum ultimate redeemed / sum (points - ultimate cancelled)
    outstanding redemption rate = sum (ultimate redeemed - redeemed so far) / sum outstanding

The estimate's movement: the same projection on the triangle as it stood at the end of
each month (only flows dated by then), month by month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from loyalty_engine.domain.periods import month_index
from loyalty_engine.finance.values import decimal_of, share

CATEGORIES = ("redeemed", "expired", "cancelled")


@dataclass(slots=True)
class Flows:
    """Points issued per cohort month, and where they went per (cohort, event month,
    category): the input of the triangle, summed by the records layer."""

    issued: dict[str, int] = field(default_factory=dict)
    moved: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def add(self, cohort: str, month: str, category: str, points: int) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        key = (cohort, max(month, cohort), category)  # nothing moves before it is issued
        self.moved[key] = self.moved.get(key, 0) + points


@dataclass(frozen=True, slots=True)
class Cell:
    """A cohort at one age: cumulative points each way, and what is still outstanding."""

    age: int
    redeemed: int
    expired: int
    cancelled: int
    outstanding: int


@dataclass(frozen=True, slots=True)
class Cohort:
    month: str
    issued: int
    cells: tuple[Cell, ...]  # ages 0 .. the last observed

    @property
    def latest(self) -> Cell:
        return self.cells[-1]


@dataclass(frozen=True, slots=True)
class Projection:
    """The chain-ladder projection of a triangle."""

    ratios: tuple[tuple[Fraction | None, Fraction | None, Fraction | None], ...]  # (g, e, c)
    tail: Fraction  # share of the tail's outstanding points assumed redeemed
    tail_basis: str
    ultimate: dict[str, tuple[Fraction, Fraction]]  # cohort -> (redeemed, cancelled)
    ultimate_rate: Fraction | None
    outstanding_rate: Fraction | None


def triangle(flows: Flows, last_month: str) -> list[Cohort]:
    """The cumulative triangle of every cohort issued by last_month, each observed up to
    last_month (age = last_month - issue month)."""
    last = month_index(last_month)
    by_cohort: defaultdict[str, defaultdict[tuple[int, str], int]] = defaultdict(
        lambda: defaultdict(int))
    for (cohort, month, category), points in flows.moved.items():
        if month_index(month) <= last:
            by_cohort[cohort][(month_index(month) - month_index(cohort), category)] += points
    cohorts = []
    for month in sorted(flows.issued):
        if month_index(month) > last:
            continue
        issued = flows.issued[month]
        running = dict.fromkeys(CATEGORIES, 0)
        cells = []
        for age in range(last - month_index(month) + 1):
            for category in CATEGORIES:
                running[category] += by_cohort[month].get((age, category), 0)
            cells.append(Cell(age, running["redeemed"], running["expired"],
                              running["cancelled"],
                              issued - sum(running.values())))
        cohorts.append(Cohort(month, issued, tuple(cells)))
    return cohorts


def project(cohorts: list[Cohort]) -> Projection:
    """Run every cohort off to its ultimate by the development ratios (module docstring)."""
    oldest = max((len(c.cells) for c in cohorts), default=0)
    sums: list[list[int]] = [[0, 0, 0, 0] for _ in range(max(oldest - 1, 0))]
    redeemed_later = expired_later = 0
    for cohort in cohorts:
        for k in range(len(cohort.cells) - 1):
            before, after = cohort.cells[k], cohort.cells[k + 1]
            row = sums[k]
            row[0] += before.outstanding
            row[1] += after.redeemed - before.redeemed
            row[2] += after.expired - before.expired
            row[3] += after.cancelled - before.cancelled
            redeemed_later += after.redeemed - before.redeemed
            expired_later += after.expired - before.expired
    ratios = tuple((share(r, o), share(e, o), share(c, o)) for o, r, e, c in sums)
    leaving = redeemed_later + expired_later
    if leaving > 0:
        tail = min(Fraction(1), max(Fraction(0), Fraction(redeemed_later, leaving)))
        basis = "history: share of points leaving the outstanding after their issue month " \
                "that were redeemed rather than expired"
    else:
        tail, basis = Fraction(1), "no history: every outstanding point assumed redeemed"
    ultimate: dict[str, tuple[Fraction, Fraction]] = {}
    for cohort in cohorts:
        cell = cohort.latest
        redeemed, cancelled = Fraction(cell.redeemed), Fraction(cell.cancelled)
        outstanding = Fraction(cell.outstanding)
        for k in range(cell.age, len(ratios)):
            g, e, c = (x or Fraction(0) for x in ratios[k])
            redeemed += outstanding * g
            cancelled += outstanding * c
            outstanding -= outstanding * (g + e + c)
        redeemed += outstanding * tail
        ultimate[cohort.month] = (redeemed, cancelled)
    base = sum((c.issued - ultimate[c.month][1] for c in cohorts), Fraction(0))
    total = sum((u[0] for u in ultimate.values()), Fraction(0))
    now_out = sum(c.latest.outstanding for c in cohorts)
    now_redeemed = sum(c.latest.redeemed for c in cohorts)
    return Projection(ratios, tail, basis, ultimate, share(total, base),
                      share(total - now_redeemed, now_out))


@dataclass(frozen=True, slots=True)
class Estimate:
    """The projection as it stood at the end of a month."""

    month: str
    projection: Projection
    outstanding: int

    @property
    def ultimate_rate(self) -> Fraction | None:
        return self.projection.ultimate_rate

    @property
    def outstanding_rate(self) -> Fraction | None:
        return self.projection.outstanding_rate


def history(flows: Flows, months: Iterable[str]) -> list[Estimate]:
    """The estimate at the end of each month: the projection of the triangle as it was
    (each kept, for the schedules that need the estimate month by month)."""
    found = []
    for month in months:
        cohorts = triangle(flows, month)
        found.append(Estimate(month, project(cohorts),
                              sum(c.latest.outstanding for c in cohorts)))
    return found


def triangle_json(cohorts: list[Cohort]) -> list[dict[str, Any]]:
    """The triangle with its shares (of the cohort's points, six places)."""
    return [{
        "cohort": c.month, "issued": c.issued,
        "ages": [{
            "age": cell.age, "redeemed": cell.redeemed, "expired": cell.expired,
            "cancelled": cell.cancelled, "outstanding": cell.outstanding,
            "redeemed_share": shown(share(cell.redeemed, c.issued)),
            "expired_share": shown(share(cell.expired, c.issued)),
            "outstanding_share": shown(share(cell.outstanding, c.issued)),
        } for cell in c.cells]} for c in cohorts]


def shown(value: Fraction | None) -> str | None:
    """A share or rate for JSON: six places, or None when there is nothing to divide by."""
    found = decimal_of(value, 6)
    return None if found is None else str(found)
