"""IFRS 15 for points, against the worked figures: the issue's textbook example of revenue
recognised as points are redeemed with a cumulative catch-up, and an allocation by relative
stand-alone selling prices worked out by hand (IFRS 15 Illustrative Example 52's sale)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from loyalty_engine.finance.revenue import (
    CATCH_UP,
    LIABILITY,
    REDEEMED,
    SALES,
    Step,
    allocate,
    journal,
    points_ssp,
    recognise,
)
from loyalty_engine.finance.values import ReportError


def test_the_textbook_example_with_its_cumulative_catch_up() -> None:
    # 9,000 of the price allocated to 10,000 points, 9,700 expected to be redeemed.
    schedule = recognise([
        Step("year 1", 9000, 0, Fraction(9700)),
        Step("year 2", 0, 4500, Fraction(9700)),
        # Cumulative redemptions 8,500; the estimate moves to 9,900.
        Step("year 3", 0, 4000, Fraction(9900)),
    ])
    assert [r.revenue_minor for r in schedule] == [0, 4175, 3552]  # 9000 x 4500 / 9700
    assert [r.cumulative_minor for r in schedule] == [0, 4175, 7727]  # 9000 x 8500 / 9900
    assert [r.liability_minor for r in schedule] == [9000, 4825, 1273]
    # Year 3 at the old estimate would have been 9000 x 8500 / 9700 = 7,887 cumulative:
    # 3,712 on the redemptions, less a catch-up of 160 for the higher estimate.
    assert [r.catch_up_minor for r in schedule] == [0, 0, -160]


def test_journal_lines_of_the_example_balance_and_name_the_catch_up() -> None:
    schedule = recognise([Step("Y1", 9000, 0, Fraction(9700)),
                          Step("Y2", 0, 4500, Fraction(9700)),
                          Step("Y3", 0, 4000, Fraction(9900))])
    lines = journal(schedule, {"Y1": "2024-12-31", "Y2": "2025-12-31", "Y3": "2026-12-31"})
    assert [(line.period, line.account, line.debit_minor, line.credit_minor) for line in lines] == [
        ("Y1", SALES, 9000, 0), ("Y1", LIABILITY, 0, 9000),
        ("Y2", LIABILITY, 4175, 0), ("Y2", REDEEMED, 0, 4175),
        ("Y3", LIABILITY, 3712, 0), ("Y3", REDEEMED, 0, 3712),
        ("Y3", CATCH_UP, 160, 0), ("Y3", LIABILITY, 0, 160),
    ]
    assert sum(line.debit_minor for line in lines) == sum(line.credit_minor for line in lines)
    assert lines[0].date == "2024-12-31"


def test_a_cohort_whose_points_are_all_gone_recognises_the_rest() -> None:
    schedule = recognise([Step("1", 9000, 0, Fraction(9700)),
                          Step("2", 0, 9000, Fraction(9700)),
                          Step("3", 0, 0, Fraction(9000), exhausted=True)])
    # 9000 x 9000 / 9700 = 8,350.5 -> 8,351; then the rest, 649, when nothing is left.
    assert [r.revenue_minor for r in schedule] == [0, 8351, 649]
    assert schedule[-1].liability_minor == 0


def test_allocation_by_relative_stand_alone_selling_prices() -> None:
    # A sale of 100,000 (minor units) earns 10,000 points worth 1 each, 95% expected to be
    # redeemed: the points' stand-alone price is 10,000 x 1 x 0.95 = 9,500; the goods' is
    # the price, 100,000. To points 100,000 x 9,500 / 109,500 = 8,675.799 -> 8,676; to the
    # goods the rest, 91,324.
    ssp = points_ssp(10_000, Fraction(1), Fraction(95, 100))
    assert ssp == 9500
    found = allocate(100_000, 100_000, ssp)
    assert (found.points_minor, found.goods_minor) == (8676, 91324)


def test_allocation_at_a_cent_a_point() -> None:
    # 250.00 EUR earns 250 points at 0.01 EUR (1 cent) with 80% expected redeemed: the
    # points' SSP is 250 x 1 x 0.8 = 200 cents; 25,000 x 200 / 25,200 = 198.41 -> 198.
    found = allocate(25_000, 25_000, points_ssp(250, Fraction(1), Fraction(4, 5)))
    assert (found.points_minor, found.goods_minor) == (198, 24802)


def test_nothing_to_allocate_by_is_refused() -> None:
    with pytest.raises(ReportError, match="nothing to allocate"):
        allocate(100, 0, 0)
