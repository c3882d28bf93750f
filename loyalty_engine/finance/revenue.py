"""IFRS 15 for points: the transaction price allocated between the goods and the points by
relative stand-alone selling prices, and the points' share recognised as revenue as points
are redeemed against the points expected to be redeemed, with a cumulative catch-up when
the estimate changes (IFRS 15.B39-B43 and Illustrative Example 52).

    points' stand-alone price = points x point value x expected redemption rate
    allocated to points       = price x points' SSP / (goods' SSP + points' SSP)
    cumulative revenue at t   = allocated x min(1, redeemed by t / expected redemptions at t)
    revenue of a period       = cumulative at its end - cumulative at the end of the one before

Rounded half up to the minor unit once, at the cumulative figure, so the periods add up to
it exactly. The catch-up is the part of a period's revenue due to the estimate changing:
cumulative at the new estimate less cumulative at the previous estimate, both on the
redemptions to date. Once a cohort's points are all gone (none outstanding) whatever is
left of its allocation is recognised (the rest has lapsed: breakage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from loyalty_engine.finance.values import ReportError, round_half_up

LIABILITY = "Contract liability - loyalty points"
SALES = "Revenue - sales"
REDEEMED = "Revenue - loyalty points redeemed"
CATCH_UP = "Revenue - loyalty points, change in estimate"


@dataclass(frozen=True, slots=True)
class Allocation:
    price_minor: int
    goods_minor: int
    points_minor: int


def allocate(price_minor: int, goods_ssp_minor: int | Fraction,
             points_ssp_minor: int | Fraction) -> Allocation:
    """The price split by relative stand-alone selling prices; the points' share rounded
    half up, the goods' the rest (the two add up to the price exactly)."""
    total = Fraction(goods_ssp_minor) + Fraction(points_ssp_minor)
    if total <= 0:
        raise ReportError("the stand-alone selling prices add up to nothing; there is "
                          "nothing to allocate the price by")
    points = round_half_up(Fraction(price_minor) * Fraction(points_ssp_minor) / total)
    return Allocation(price_minor, price_minor - points, points)


def points_ssp(points: int, per_point_minor: Fraction, redemption_rate: Fraction) -> Fraction:
    """The stand-alone selling price of points: their value times the share expected to be
    redeemed."""
    return points * per_point_minor * redemption_rate


@dataclass(frozen=True, slots=True)
class Step:
    """One period of a cohort of points: what was allocated to points sold in it, the
    points redeemed in it, and the estimate of all redemptions at its end."""

    period: str
    allocated_minor: int  # added in the period (sales)
    redeemed: int  # points redeemed in the period (net of reversals)
    expected: Fraction  # expected redemptions of the cohort, estimated at the period's end
    exhausted: bool = False  # no points of the cohort outstanding at the period's end


@dataclass(frozen=True, slots=True)
class Recognised:
    """A period's revenue from a cohort of points."""

    period: str
    allocated_minor: int
    cumulative_allocated_minor: int
    cumulative_redeemed: int
    expected: Fraction
    cumulative_minor: int  # revenue recognised by the period's end
    revenue_minor: int  # of which in the period
    catch_up_minor: int  # of which due to the estimate changing
    liability_minor: int  # contract liability at the period's end

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "allocated_minor": self.allocated_minor,
                "cumulative_redeemed": self.cumulative_redeemed,
                "expected_redemptions": str(round(float(self.expected), 2)),
                "cumulative_revenue_minor": self.cumulative_minor,
                "revenue_minor": self.revenue_minor, "catch_up_minor": self.catch_up_minor,
                "liability_minor": self.liability_minor}


def _cumulative(allocated: int, redeemed: int, expected: Fraction, exhausted: bool) -> int:
    if exhausted or (expected > 0 and redeemed >= expected):
        return allocated
    if expected <= 0:
        return 0
    return round_half_up(allocated * Fraction(redeemed) / expected)


def recognise(steps: Sequence[Step]) -> list[Recognised]:
    """The revenue schedule of one cohort, period by period (the module docstring)."""
    found: list[Recognised] = []
    allocated = redeemed = before = 0
    previous: Fraction | None = None
    for step in steps:
        allocated += step.allocated_minor
        redeemed += step.redeemed
        cumulative = _cumulative(allocated, redeemed, step.expected, step.exhausted)
        at_old = cumulative if previous is None or step.exhausted else _cumulative(
            allocated, redeemed, previous, False)
        found.append(Recognised(step.period, step.allocated_minor, allocated, redeemed,
                                step.expected, cumulative, cumulative - before,
                                cumulative - at_old, allocated - cumulative))
        before = cumulative
        previous = step.expected
    return found


@dataclass(frozen=True, slots=True)
class JournalLine:
    period: str
    date: str  # the period's last local date
    account: str
    debit_minor: int
    credit_minor: int
    memo: str


def journal(schedule: Sequence[Recognised], dates: dict[str, str],
            cohort: str = "") -> list[JournalLine]:
    """The journal lines of a schedule: the points' allocation moved from sales to the
    contract liability, revenue on redemption at the previous estimate, and the catch-up
    (a debit of revenue when the estimate rose)."""
    lines: list[JournalLine] = []
    of = f" (points issued {cohort})" if cohort else ""
    for r in schedule:
        day = dates.get(r.period, r.period)
        if r.allocated_minor:
            lines += [JournalLine(r.period, day, SALES, r.allocated_minor, 0,
                                  f"price allocated to points{of}"),
                      JournalLine(r.period, day, LIABILITY, 0, r.allocated_minor,
                                  f"price allocated to points{of}")]
        on_redemption = r.revenue_minor - r.catch_up_minor
        if on_redemption:
            lines += _pair(r.period, day, LIABILITY, REDEEMED, on_redemption,
                           f"points redeemed{of}")
        if r.catch_up_minor:
            lines += _pair(r.period, day, LIABILITY, CATCH_UP, r.catch_up_minor,
                           f"cumulative catch-up: expected redemptions now "
                           f"{round(float(r.expected))}{of}")
    return lines


def _pair(period: str, day: str, debit: str, credit: str, amount: int,
          memo: str) -> list[JournalLine]:
    if amount < 0:
        debit, credit, amount = credit, debit, -amount
    return [JournalLine(period, day, debit, amount, 0, memo),
            JournalLine(period, day, credit, 0, amount, memo)]
