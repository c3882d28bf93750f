"""Share of wallet, pure (analytics/wallet.py), against a table worked by hand.

Spend with the program by month (minor units, EUR):

| member | category | 2026-01 | 2026-02 | 2026-03 | 2026-04 |
|---|---|---|---|---|---|
| A | coffee | 1000 | 2000 | 500 | 3000 |
| B | coffee | | | 4500 | |

Wallet totals and what they make:

| member | category | period | wallet | spend | counted | share | growth |
|---|---|---|---|---|---|---|---|
| A | coffee | 2026-Q1 | 10000 | 1000+2000+500 = 3500 | 3500 | 7/20 | 6500 |
| A | coffee | 2026-04 | 2500 | 3000 (over) | 2500 | 1 | 0 |
| A | tea | 2026 | 4000 | 0 | 0 | 0 | 4000 |
| B | coffee | 2026-Q1 | 6000 | 4500 | 4500 | 3/4 | 1500 |
| C | coffee | 2026-Q1 | 0 | 0 | 0 | - | 0 |

The program's coffee share in 2026-Q1: (3500 + 4500 + 0) / (10000 + 6000 + 0) = 1/2.
"""

from __future__ import annotations

import re
from datetime import date
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.analytics.wallet import (
    WalletShare,
    WalletTotal,
    growth_ranking,
    latest_member_shares,
    member_shares,
    parse_period,
    program_shares,
)

SPEND = {
    ("A", "coffee"): {"2026-01": 1000, "2026-02": 2000, "2026-03": 500, "2026-04": 3000},
    ("B", "coffee"): {"2026-03": 4500},
}
TOTALS = [
    WalletTotal("A", "coffee", "2026-Q1", "EUR", 10000),
    WalletTotal("A", "coffee", "2026-04", "EUR", 2500),
    WalletTotal("A", "tea", "2026", "EUR", 4000),
    WalletTotal("B", "coffee", "2026-Q1", "EUR", 6000),
    WalletTotal("C", "coffee", "2026-Q1", "EUR", 0),
]


def _rows() -> list[WalletShare]:
    return member_shares(TOTALS, SPEND)


def test_each_total_against_the_spend_of_its_months() -> None:
    got = [(r.member_id, r.category, r.period, r.spend_minor, r.counted_minor, r.share,
            r.growth_minor, r.exceeds_wallet) for r in _rows()]
    assert got == [
        ("A", "coffee", "2026-Q1", 3500, 3500, Fraction(7, 20), 6500, False),
        ("A", "coffee", "2026-04", 3000, 2500, Fraction(1), 0, True),
        ("A", "tea", "2026", 0, 0, Fraction(0), 4000, False),
        ("B", "coffee", "2026-Q1", 4500, 4500, Fraction(3, 4), 1500, False),
        ("C", "coffee", "2026-Q1", 0, 0, None, 0, False),
    ]


def test_the_programs_share_per_category_and_period() -> None:
    got = [(p.category, p.period, p.members, p.spend_minor, p.wallet_minor, p.share,
            p.growth_minor) for p in program_shares(_rows())]
    # Ordered by period start (the year and Q1 begin together: the longer first).
    assert got == [
        ("tea", "2026", 1, 0, 4000, Fraction(0), 4000),
        ("coffee", "2026-Q1", 3, 8000, 16000, Fraction(1, 2), 8000),
        ("coffee", "2026-04", 1, 2500, 2500, Fraction(1), 0),
    ]


def test_the_programs_share_per_period_over_every_category() -> None:
    rows = [*_rows(), WalletShare("B", "tea", "2026-Q1", "EUR", 1000, 4000)]
    q1 = [p for p in program_shares(rows, by_category=False) if p.period == "2026-Q1"]
    # (3500 + 4500 + 0 + 1000) / (10000 + 6000 + 0 + 4000) = 9000 / 20000
    assert [(p.category, p.members, p.share) for p in q1] == [("*", 4, Fraction(9, 20))]


def test_no_wallet_at_all_has_no_share() -> None:
    only_c = [r for r in _rows() if r.member_id == "C"]
    assert [p.share for p in program_shares(only_c)] == [None]


def test_growth_potential_ranked_largest_first_without_those_with_none() -> None:
    ranked = growth_ranking(_rows())
    assert [(r.member_id, r.category, r.period, r.growth_minor) for r in ranked] == [
        ("A", "coffee", "2026-Q1", 6500),
        ("A", "tea", "2026", 4000),
        ("B", "coffee", "2026-Q1", 1500),
    ]


def test_equal_growth_ranks_the_lower_share_first_then_by_member() -> None:
    rows = [WalletShare("Z", "x", "2026", "EUR", 0, 1000),     # growth 1000, share 0
            WalletShare("Y", "x", "2026", "EUR", 1000, 2000),  # growth 1000, share 1/2
            WalletShare("X", "x", "2026", "EUR", 1000, 2000)]  # growth 1000, share 1/2
    assert [r.member_id for r in growth_ranking(rows)] == ["Z", "X", "Y"]


@pytest.mark.parametrize(("as_of", "expected"), [
    # A's latest period begun is 2026-04 (2500 of 2500); B and C have Q1 only.
    (date(2026, 4, 15), {"A": Fraction(1), "B": Fraction(3, 4), "C": None}),
    # 2026-04 lies ahead; the year and Q1 begin together and the year is longer: A's tea
    # total alone (0 of 4000).
    (date(2026, 3, 31), {"A": Fraction(0), "B": Fraction(3, 4), "C": None}),
    # Before every period: nobody has a share.
    (date(2025, 12, 31), {}),
])
def test_one_share_per_member_for_the_matrix(as_of: date, expected: dict) -> None:
    assert latest_member_shares(_rows(), as_of) == expected


def test_a_members_latest_period_sums_its_categories() -> None:
    rows = [WalletShare("A", "coffee", "2026-Q2", "EUR", 1000, 4000),
            WalletShare("A", "tea", "2026-Q2", "EUR", 3000, 2000),  # over: counts 2000
            WalletShare("A", "coffee", "2026-Q1", "EUR", 0, 9000)]
    assert latest_member_shares(rows, date(2026, 6, 30)) == {"A": Fraction(3000, 6000)}


@pytest.mark.parametrize(("text", "kind", "months"), [
    ("2026", "year", tuple(f"2026-{m:02d}" for m in range(1, 13))),
    ("2026-Q4", "quarter", ("2026-10", "2026-11", "2026-12")),
    ("2026-Q1", "quarter", ("2026-01", "2026-02", "2026-03")),
    ("2026-02", "month", ("2026-02",)),
])
def test_periods_and_their_months(text: str, kind: str, months: tuple[str, ...]) -> None:
    period = parse_period(text)
    assert (period.kind, period.months) == (kind, months)


def test_period_bounds() -> None:
    assert (parse_period("2026-Q4").start, parse_period("2026-Q4").end) == (
        date(2026, 10, 1), date(2027, 1, 1))
    assert parse_period("2026-12").end == date(2027, 1, 1)


@pytest.mark.parametrize(("text", "message"), [
    ("2026-Q5", "a quarter is Q1 to Q4"),
    ("2026-Q0", "a quarter is Q1 to Q4"),
    ("2026-13", "a month is 01 to 12"),
    ("2026-00", "a month is 01 to 12"),
    ("2026-1", "is not a year (2026), a quarter (2026-Q1) or a month (2026-03)"),
    ("2026-W10", "is not a year"),
    ("26", "is not a year"),
    ("2026-03-01", "is not a year"),
    ("1969", "the year must be between 1970 and 2199"),
])
def test_bad_periods_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_period(text)


_amounts = st.integers(min_value=0, max_value=10**9)


@given(st.lists(st.tuples(_amounts, _amounts), min_size=1, max_size=30))
def test_shares_are_between_zero_and_one_and_growth_is_what_is_left(
        pairs: list[tuple[int, int]]) -> None:
    rows = [WalletShare(f"M{i}", "x", "2026", "EUR", spend, wallet)
            for i, (spend, wallet) in enumerate(pairs)]
    for row in rows:
        assert row.share is None or 0 <= row.share <= 1
        assert row.counted_minor + row.growth_minor == row.wallet_minor
        assert row.growth_minor >= 0
    (program,) = program_shares(rows)
    known = [r.share for r in rows if r.share is not None]
    if program.share is not None:
        # The program's share is a weighted mean of the members' shares.
        assert min(known) <= program.share <= max(known)
    ranked = growth_ranking(rows)
    assert [r.growth_minor for r in ranked] == sorted(
        (r.growth_minor for r in rows if r.growth_minor), reverse=True)
