"""Retention, defection, cohorts, relationship length and lapse, worked out by hand on a
small data set (the arithmetic is in the comments), and their properties."""

from __future__ import annotations

from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.analytics.lapse import Activity, judge, judge_all
from loyalty_engine.analytics.retention import (
    NO_GROUP,
    TENURE_BUCKETS,
    cohort_matrix,
    month_index,
    period_index,
    retention_by_group,
    retention_by_period,
    tenure_distribution,
)
from loyalty_engine.rules.compiled_insights import LapseRule

# Ten members, the months in which each made a counted purchase (program time).
MONTHS = {
    "A": {"2026-01", "2026-02", "2026-03", "2026-04"},
    "B": {"2026-01", "2026-03"},
    "C": {"2026-01"},
    "D": {"2026-02", "2026-03"},
    "E": {"2026-02"},
    "F": {"2026-03", "2026-04"},
    "G": {"2026-01", "2026-04"},
    "H": {"2026-04"},
    "I": {"2025-10", "2026-03"},  # back after five quiet months
    "J": {"2026-01", "2026-02"},
}
# Their first counted purchase days.
FIRST_DAYS = {
    "A": date(2026, 1, 5), "B": date(2026, 1, 10), "C": date(2026, 1, 20),
    "D": date(2026, 2, 3), "E": date(2026, 2, 14), "F": date(2026, 3, 1),
    "G": date(2026, 1, 25), "H": date(2026, 4, 20), "I": date(2025, 10, 15),
    "J": date(2026, 1, 2),
}
APRIL = month_index("2026-04")


def _figures(row: object) -> tuple[object, ...]:
    return tuple(getattr(row, name) for name in (
        "period", "at_start", "at_end", "new", "first_time", "returning", "retained",
        "lost", "retention", "defection"))


def test_monthly_retention_by_hand() -> None:
    rows = retention_by_period(MONTHS, "month", APRIL, 4)
    assert [_figures(r) for r in rows] == [
        # January: nobody bought in December 2025, so S = 0 and the rate is undefined;
        # E = bought in January = {A, B, C, G, J} = 5, all first-time buyers.
        ("2026-01", 0, 5, 5, 5, 0, 0, 0, None, None),
        # February: S = bought in January = {A, B, C, G, J} = 5; E = bought in February =
        # {A, D, E, J} = 4; N = E not in S = {D, E} = 2 (both first-time);
        # E - N = {A, J} = 2; retention 2 / 5 = 0.4, defection 3 / 5 = 0.6.
        ("2026-02", 5, 4, 2, 2, 0, 2, 3, 0.4, 0.6),
        # March: S = {A, D, E, J} = 4; E = bought in March = {A, B, D, F, I} = 5;
        # N = {B, F, I} = 3: F first-time, B (first in January) and I (first in October
        # 2025) returning; E - N = {A, D} = 2; retention 2 / 4 = 0.5.
        ("2026-03", 4, 5, 3, 1, 2, 2, 2, 0.5, 0.5),
        # April: S = {A, B, D, F, I} = 5; E = bought in April = {A, F, G, H} = 4;
        # N = {G, H}: H first-time, G returning; E - N = {A, F} = 2; 2 / 5 = 0.4.
        ("2026-04", 5, 4, 2, 1, 1, 2, 3, 0.4, 0.6),
    ]
    assert [r.start for r in rows] == [date(2026, m, 1) for m in (1, 2, 3, 4)]
    assert rows[-1].end == date(2026, 5, 1)


def test_a_two_month_activity_window_by_hand() -> None:
    (april,) = retention_by_period(MONTHS, "month", APRIL, 1, window=2)
    # S = bought in February or March = {A, D, E, J} + {B, F, I} = 7;
    # E = bought in March or April = {A, B, D, F, I} + {G, H} = 7;
    # N = E not in S = {G, H} = 2 (H first-time, G returning: January is outside the
    # window); E - N = {A, B, D, F, I} = 5; retention 5 / 7, defection 2 / 7 (E and J).
    assert (april.at_start, april.at_end, april.new, april.first_time, april.returning,
            april.retained, april.lost) == (7, 7, 2, 1, 1, 5, 2)
    assert april.retention == pytest.approx(5 / 7)
    assert april.defection == pytest.approx(2 / 7)


def test_quarterly_retention_by_hand() -> None:
    q1, q2 = retention_by_period(MONTHS, "quarter", period_index("quarter", "2026-04"), 2,
                                 last_partial=True)
    # 2026-Q1: S = bought in 2025-Q4 = {I} = 1; E = bought in Q1 = every member but H = 9;
    # N = 8, all first-time; E - N = {I} = 1; retention 1 / 1 = 1.
    assert _figures(q1) == ("2026-Q1", 1, 9, 8, 8, 0, 1, 0, 1.0, 0.0)
    assert not q1.partial
    # 2026-Q2 (so far): S = 9; E = bought in Q2 = {A, F, G, H} = 4; N = {H} = 1;
    # E - N = {A, F, G} = 3; retention 3 / 9 = 1/3, defection 6 / 9 = 2/3.
    assert _figures(q2)[:8] == ("2026-Q2", 9, 4, 1, 1, 0, 3, 6)
    assert q2.retention == pytest.approx(1 / 3)
    assert q2.defection == pytest.approx(2 / 3)
    assert q2.partial
    (year,) = retention_by_period(MONTHS, "year", 2026, 1)
    # 2026: S = bought in 2025 = {I}; E = bought in 2026 = all 10; N = 9 first-time;
    # E - N = 1; retention 1.
    assert _figures(year) == ("2026", 1, 10, 9, 9, 0, 1, 0, 1.0, 0.0)


def test_retention_split_by_group_by_hand() -> None:
    groups = {"A": ("gold",), "B": ("gold",), "D": ("gold",), "F": ("silver",),
              "I": ("silver", "club"), "J": ("silver",)}
    split = retention_by_group(MONTHS, groups, "month", APRIL, 1)
    # gold = {A, B, D}: S = bought in March = {A, B, D} = 3; E = bought in April = {A};
    # N = 0; E - N = 1; retention 1 / 3.
    assert _figures(split["gold"][0])[1:8] == (3, 1, 0, 0, 0, 1, 2)
    # silver = {F, I, J}: S = {F, I} = 2; E = {F}; N = 0; retention 1 / 2.
    assert split["silver"][0].retention == 0.5
    # club = {I}: S = {I}; E = {}; retention 0.
    assert split["club"][0].retention == 0.0
    # no group = {C, E, G, H}: S = bought in March = {}; E = {G, H}; N = 2 (G returning,
    # H first-time); retention undefined.
    none = split[NO_GROUP][0]
    assert (none.at_start, none.at_end, none.first_time, none.returning,
            none.retention) == (0, 2, 1, 1, None)
    assert sorted(split) == [NO_GROUP, "club", "gold", "silver"]


def test_cohort_matrix_by_hand() -> None:
    cohorts = cohort_matrix(MONTHS, "2026-01", "2026-04")
    assert [(c.month, c.size, c.active) for c in cohorts] == [
        # January cohort {A, B, C, G, J}: February {A, J}, March {A, B}, April {A, G}.
        ("2026-01", 5, (5, 2, 2, 2)),
        # February cohort {D, E}: March {D}, April nobody.
        ("2026-02", 2, (2, 1, 0)),
        # March cohort {F} (I's first purchase was in October 2025): April {F}.
        ("2026-03", 1, (1, 1)),
        ("2026-04", 1, (1,)),  # {H}
    ]
    assert [c.shares for c in cohorts] == [
        (1.0, 0.4, 0.4, 0.4), (1.0, 0.5, 0.0), (1.0, 1.0), (1.0,)]
    # I's October 2025 cohort: one member, back five months later (March 2026 is k = 5).
    october = cohort_matrix(MONTHS, "2025-10", "2026-04")[0]
    assert (october.size, october.active) == (1, (1, 0, 0, 0, 0, 1, 0))
    assert cohort_matrix(MONTHS, "2025-11", "2025-11")[0].size == 0


def test_tenure_distribution_by_hand() -> None:
    as_of = date(2026, 4, 30)  # day 120 of 2026 (31 + 28 + 31 + 30)
    tenure = {m: (as_of - day).days for m, day in FIRST_DAYS.items()}
    # A: 120 - 5 = 115; B: 110; C: 100; D: 120 - 34 = 86; E: 120 - 45 = 75;
    # F: 120 - 60 = 60; G: 95; H: 120 - 110 = 10; J: 118;
    # I: 2025-10-15 is day 288 (273 + 15), so 365 - 288 + 120 = 197.
    assert tenure == {"A": 115, "B": 110, "C": 100, "D": 86, "E": 75, "F": 60, "G": 95,
                      "H": 10, "I": 197, "J": 118}
    buckets = tenure_distribution(tenure.values())
    assert [(b.label, b.members, b.share) for b in buckets] == [
        ("under 30 days", 1, 0.1),  # H
        ("30-89 days", 3, 0.3),  # D, E, F
        ("90-179 days", 5, 0.5),  # A, B, C, G, J
        ("180-364 days", 1, 0.1),  # I
        ("1-2 years", 0, 0.0), ("2-3 years", 0, 0.0), ("3 years or more", 0, 0.0)]
    edges = tenure_distribution([29, 30, 364, 365, 1094, 1095, 5000])
    assert [b.members for b in edges] == [1, 1, 0, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="contiguously"):
        tenure_distribution([1], ((0, 10, "a"), (20, None, "b")))


RULE = LapseRule(p_alive_below=0.3, gap_multiple=3.0, default_gap_days=90)


def test_the_gap_rule_by_hand() -> None:
    # Purchase days 1 January, 30 January, 1 March 2026: (59 days) / (3 - 1) = 29.5 days
    # mean gap; the limit is 3 x 29.5 = 88.5 days.
    regular = Activity("R", date(2026, 1, 1), date(2026, 3, 1), 3)
    assert regular.mean_gap_days == 29.5
    # 1 March -> 28 May is 30 + 30 + 28 = 88 days: not more than 88.5.
    kept = judge(regular, date(2026, 5, 28), RULE)
    assert (kept.lapsed, kept.rule, kept.gap_days, kept.threshold_days) == (
        False, "gap", 88, 88.5)
    # 1 March -> 1 June is 31 + 30 + 31 = 92 days: more than 88.5.
    gone = judge(regular, date(2026, 6, 1), RULE)
    assert (gone.lapsed, gone.gap_days) == (True, 92)
    assert gone.reason == ("92 days since the last purchase is more than 3 x their mean gap "
                           "of 29.5 days (88.5 days)")
    # One purchase day (1 January): the default 90 days. 1 January -> 1 April = 90 days.
    once = Activity("O", date(2026, 1, 1), date(2026, 1, 1), 1)
    assert once.mean_gap_days is None
    assert not judge(once, date(2026, 4, 1), RULE).lapsed
    lapsed = judge(once, date(2026, 4, 2), RULE)
    assert lapsed.lapsed and lapsed.threshold_days == 90.0
    assert lapsed.reason == ("91 days since the last purchase is more than the default 90 "
                             "days (one purchase day)")


def test_the_p_alive_rule_and_the_fallback_by_hand() -> None:
    regular = Activity("R", date(2026, 1, 1), date(2026, 3, 1), 3)
    once = Activity("O", date(2026, 1, 1), date(2026, 1, 1), 1)
    verdicts = judge_all([regular, once], date(2026, 6, 1), RULE, {"R": 0.3})
    # R: P(alive) 0.3 is not below 0.3 (not lapsed, although the gap rule would say so).
    assert (verdicts["R"].lapsed, verdicts["R"].rule) == (False, "p_alive")
    assert verdicts["R"].reason == "P(alive) 0.300 is not below 0.3"
    # O has no P(alive): the gap rule, 151 days > 90.
    assert (verdicts["O"].lapsed, verdicts["O"].rule, verdicts["O"].gap_days) == (
        True, "gap", 151)
    low = judge(regular, date(2026, 3, 2), RULE, 0.29)
    assert low.lapsed and low.reason == "P(alive) 0.290 is below 0.3"
    with pytest.raises(ValueError, match="not in"):
        judge(regular, date(2026, 3, 2), RULE, 1.5)
    with pytest.raises(ValueError, match="after the as-of day"):
        judge(regular, date(2026, 2, 1), RULE)


# Properties over random activity: members buying in random months of 2024-2026.
MONTH_KEYS = [f"{y}-{m:02d}" for y in (2024, 2025, 2026) for m in range(1, 13)]
activities = st.dictionaries(
    st.text("abcdefghij", min_size=1, max_size=3),
    st.sets(st.sampled_from(MONTH_KEYS), min_size=1, max_size=12), max_size=30)
PROPERTY = settings(deadline=None, max_examples=60)


@PROPERTY
@given(activities, st.sampled_from(["month", "quarter", "year"]), st.integers(1, 4))
def test_rates_lie_in_0_1_and_the_books_balance(
        activity: dict[str, set[str]], period: str, window: int) -> None:
    last = period_index(period, "2026-12")  # type: ignore[arg-type]
    rows = retention_by_period(activity, period, last, 6, window)  # type: ignore[arg-type]
    for row in rows:
        assert 0 <= row.retained <= row.at_start
        assert row.new == row.first_time + row.returning
        for rate in (row.retention, row.defection):
            assert rate is None or 0.0 <= rate <= 1.0
        if row.retention is not None and row.defection is not None:
            assert row.retention + row.defection == pytest.approx(1.0)
    # The customers at the end of one period are those at the start of the next.
    for before, after in pairwise(rows):
        assert before.at_end == after.at_start


@PROPERTY
@given(activities)
def test_cohort_shares_start_at_one_and_never_exceed_it(
        activity: dict[str, set[str]]) -> None:
    cohorts = cohort_matrix(activity, "2024-01", "2026-12")
    assert sum(c.size for c in cohorts) == len(activity)
    for c in cohorts:
        if c.size:
            assert c.shares[0] == 1.0
            assert all(0.0 <= s <= 1.0 for s in c.shares)
            assert len(c.active) == month_index("2026-12") - month_index(c.month) + 1


@PROPERTY
@given(st.lists(st.integers(0, 4000), max_size=50))
def test_tenure_buckets_hold_every_member_once(days: list[int]) -> None:
    buckets = tenure_distribution(days)
    assert sum(b.members for b in buckets) == len(days)
    assert len(buckets) == len(TENURE_BUCKETS)
    if days:
        assert sum(b.share for b in buckets) == pytest.approx(1.0)


@PROPERTY
@given(st.dates(date(2020, 1, 1), date(2026, 12, 31)), st.integers(0, 900),
       st.integers(1, 40), st.integers(0, 900), st.integers(0, 400))
def test_a_lapsed_member_stays_lapsed_while_they_do_not_buy(
        first: date, span: int, days: int, wait: int, more: int) -> None:
    days = min(days, span + 1)  # no more distinct days than the span holds
    member = Activity("M", first, first + timedelta(days=span), days)
    as_of = member.last_day + timedelta(days=wait)
    now, later = judge(member, as_of, RULE), judge(member, as_of + timedelta(days=more), RULE)
    assert not now.lapsed or later.lapsed
    assert now.threshold_days == pytest.approx(
        RULE.default_gap_days if days == 1 else RULE.gap_multiple * span / (days - 1))
