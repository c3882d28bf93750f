"""Member figures and RFM scores, pure: a ten-member table scored by hand (quintiles with the
tie rule, fixed boundaries, the default segment map), the R x F grid, and properties of
quintile scores (balanced, ties equal, monotone, independent of order)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.analytics.figures import MemberFigures, half_up
from loyalty_engine.analytics.rfm import (
    fixed_scores,
    grid_of,
    quintile_scores,
    recency_scores,
    score_members,
)
from loyalty_engine.analytics.segments import DEFAULT_SEGMENTS
from loyalty_engine.rules.compiled_insights import RfmSettings

AS_OF = date(2026, 6, 30)


def figures(member: str, recency: int, purchases: int, spend: int, *, days: int | None = None,
            first_days_ago: int = 400) -> MemberFigures:
    last = AS_OF - timedelta(days=recency)
    first = AS_OF - timedelta(days=max(first_days_ago, recency))
    return MemberFigures(
        member, AS_OF, datetime.combine(first, datetime.min.time(), UTC),
        datetime.combine(last, datetime.min.time(), UTC), first, last, purchases,
        days if days is not None else purchases, spend)


# Ten members: (recency days, purchases, spend in cents), and the scores worked out below.
TABLE = {
    "A": (0, 12, 50000), "B": (200, 8, 42000), "C": (3, 8, 30000), "D": (3, 6, 30000),
    "E": (20, 5, 25000), "F": (45, 4, 12000), "G": (60, 3, 9000), "H": (5, 1, 5000),
    "I": (150, 1, 2000), "J": (300, 2, 1500),
}
# n = 10: position p (0-based, ascending) scores floor(5p/10) + 1 = p // 2 + 1, and a tie
# takes its first position's score.
# F ascending: H 1, I 1 (p0, p1: 1 1) | J 2 (p2: 2) | G 3 (p3: 2) | F 4 (p4: 3) | E 5 (p5: 3)
#   | D 6 (p6: 4) | B 8, C 8 (p7, p8: tie at p7 -> 4 4) | A 12 (p9: 5)
# R, days descending: J 300 (p0: 1) | B 200 (p1: 1) | I 150 (p2: 2) | G 60 (p3: 2)
#   | F 45 (p4: 3) | E 20 (p5: 3) | H 5 (p6: 4) | C 3, D 3 (p7, p8: tie at p7 -> 4 4)
#   | A 0 (p9: 5)
# M ascending: J 1500 (1) | I 2000 (1) | H 5000 (2) | G 9000 (2) | F 12000 (3)
#   | E 25000 (3) | C, D 30000 (p6, p7: tie at p6 -> 4 4) | B 42000 (p8: 5) | A 50000 (5)
# Segments over R x F with the default map.
EXPECTED = {
    "A": (5, 5, 5, "champions"),       # r 5, f 4-5
    "B": (1, 4, 5, "at_risk"),         # r 1-2, f 3-4
    "C": (4, 4, 4, "loyal"),           # r 3-4, f 4-5
    "D": (4, 4, 4, "loyal"),
    "E": (3, 3, 3, "need_attention"),  # r 3, f 3
    "F": (3, 3, 3, "need_attention"),
    "G": (2, 2, 2, "hibernating"),     # r 2, f 1-2
    "H": (4, 1, 2, "promising"),       # r 4, f 1
    "I": (2, 1, 1, "hibernating"),
    "J": (1, 2, 1, "hibernating"),     # r 1, f 2
}


def table() -> list[MemberFigures]:
    return [figures(m, *values) for m, values in TABLE.items()]


def test_ten_members_scored_by_quintiles_as_worked_by_hand() -> None:
    scored = score_members(table(), RfmSettings(), DEFAULT_SEGMENTS)
    assert {m: (s.r, s.f, s.m, s.segment) for m, s in scored.items()} == EXPECTED


def test_the_scores_do_not_depend_on_the_order_members_are_read_in() -> None:
    scored = score_members(list(reversed(table())), RfmSettings(), DEFAULT_SEGMENTS)
    assert {m: (s.r, s.f, s.m, s.segment) for m, s in scored.items()} == EXPECTED


def test_fixed_boundaries_score_against_the_cuts() -> None:
    # Recency cuts 7, 30, 90, 180 days: <= 7 -> 5, <= 30 -> 4, <= 90 -> 3, <= 180 -> 2, else 1.
    # Frequency cuts 1, 2, 4, 8: <= 1 -> 1, <= 2 -> 2, <= 4 -> 3, <= 8 -> 4, else 5.
    # Monetary: no cuts, so quintiles as above.
    settings_ = RfmSettings(recency_days=(7, 30, 90, 180), frequency=(1, 2, 4, 8))
    scored = score_members(table(), settings_, DEFAULT_SEGMENTS)
    assert {m: (s.r, s.f, s.m) for m, s in scored.items()} == {
        "A": (5, 5, 5), "B": (1, 4, 5), "C": (5, 4, 4), "D": (5, 4, 4), "E": (4, 4, 3),
        "F": (3, 3, 3), "G": (3, 3, 2), "H": (5, 1, 2), "I": (2, 1, 1), "J": (1, 2, 1),
    }
    assert {m: s.segment for m, s in scored.items()} == {
        "A": "champions", "B": "at_risk", "C": "champions", "D": "champions", "E": "loyal",
        "F": "need_attention", "G": "need_attention", "H": "new", "I": "hibernating",
        "J": "hibernating"}


def test_a_value_on_a_cut_scores_at_or_below_it() -> None:
    assert fixed_scores([0, 1, 2, 3, 4, 5, 8, 9], (1, 2, 4, 8)) == [1, 1, 2, 3, 3, 4, 4, 5]
    assert recency_scores([0, 7, 8, 30, 31, 180, 181], (7, 30, 90, 180)) == [
        5, 5, 4, 4, 3, 2, 1]


def test_small_programs() -> None:
    # One member: position 0 of 1 scores 1; two: 1 and floor(5/2) + 1 = 3; all equal: 1.
    assert quintile_scores([10]) == [1]
    assert quintile_scores([10, 20]) == [1, 3]
    assert quintile_scores([7, 7, 7]) == [1, 1, 1]
    assert quintile_scores([]) == []
    assert recency_scores([30, 0]) == [1, 3]


def test_the_grid_counts_cells_and_segments() -> None:
    grid = grid_of(list(score_members(table(), RfmSettings(), DEFAULT_SEGMENTS).values()),
                   DEFAULT_SEGMENTS)
    assert grid.members == 10
    assert {cell: n for cell, n in grid.cells.items() if n} == {
        (5, 5): 1, (1, 4): 1, (4, 4): 2, (3, 3): 2, (2, 2): 1, (4, 1): 1, (2, 1): 1, (1, 2): 1}
    assert len(grid.cells) == 25
    assert list(grid.segments) == list(DEFAULT_SEGMENTS.names)
    assert {s: n for s, n in grid.segments.items() if n} == {
        "champions": 1, "at_risk": 1, "loyal": 2, "need_attention": 2, "hibernating": 3,
        "promising": 1}
    shown = grid.as_json()
    assert shown["grid"][0] == {"r": 5, "counts": [0, 0, 0, 0, 1]}  # type: ignore[index]
    assert shown["grid"][4] == {"r": 1, "counts": [0, 1, 0, 1, 0]}  # type: ignore[index]


def test_member_figures_by_hand() -> None:
    x = MemberFigures("M", AS_OF, datetime(2026, 1, 1, 9, tzinfo=UTC),
                      datetime(2026, 3, 1, 9, tzinfo=UTC), date(2026, 1, 1), date(2026, 3, 1),
                      purchases=5, days=4, spend_minor=1001)
    # 1 Jan to 30 Jun: 30 + 28 + 31 + 30 + 31 + 30 = 180 days; 1 Mar to 30 Jun: 121.
    assert (x.tenure_days, x.recency_days) == (180, 121)
    assert x.mean_gap_days == pytest.approx(59 / 3)  # 1 Jan to 1 Mar is 59 days, 3 gaps
    assert x.average_spend_minor == 200  # 1001 / 5 = 200.2
    one_day = MemberFigures("M", AS_OF, x.first_at, x.first_at, date(2026, 1, 1),
                            date(2026, 1, 1), purchases=2, days=1, spend_minor=5)
    assert one_day.mean_gap_days is None
    assert one_day.average_spend_minor == 3  # 2.5 rounded half up


def test_half_up() -> None:
    assert [half_up(n, 2) for n in (1, 3, 5, -1, -3)] == [1, 2, 3, -1, -2]
    assert half_up(7, 0) == 0
    assert half_up(2, 3) == 1 and half_up(1, 3) == 0


PROPERTY = settings(deadline=None, max_examples=200)


@PROPERTY
@given(st.lists(st.integers(-10**6, 10**6), min_size=1, max_size=300, unique=True))
def test_distinct_values_fill_each_quintile_with_a_fifth(values: list[int]) -> None:
    scores = quintile_scores(values)
    n = len(values)
    for score in range(1, 6):
        assert scores.count(score) in (n // 5, -(-n // 5)), (score, n)


@PROPERTY
@given(st.lists(st.integers(0, 20), min_size=1, max_size=200))
def test_equal_values_score_equal_and_higher_values_no_lower(values: list[int]) -> None:
    scores = quintile_scores(values)
    assert all(1 <= s <= 5 for s in scores)
    for i, a in enumerate(values):
        for j, b in enumerate(values):
            if a == b:
                assert scores[i] == scores[j]
            elif a < b:
                assert scores[i] <= scores[j]
    days = recency_scores(values)
    for i, a in enumerate(values):
        for j, b in enumerate(values):
            if a < b:
                assert days[i] >= days[j]  # fewer days since the last purchase: no lower


@PROPERTY
@given(st.lists(st.integers(0, 50), min_size=1, max_size=100), st.randoms())
def test_scores_follow_the_values_not_their_order(values: list[int], rng: object) -> None:
    order = list(range(len(values)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    scores = quintile_scores(values)
    assert quintile_scores([values[i] for i in order]) == [scores[i] for i in order]


@PROPERTY
@given(st.lists(st.integers(0, 10**5), min_size=1, max_size=100),
       st.lists(st.integers(0, 10**5), min_size=4, max_size=4).map(sorted))
def test_fixed_scores_are_monotone_and_in_range(values: list[int], cuts: list[int]) -> None:
    scores = fixed_scores(values, cuts)
    days = recency_scores(values, cuts)
    for v, s, d in zip(values, scores, days, strict=True):
        assert 1 <= s <= 5 and s + d == 6
        assert s == 1 + sum(1 for c in cuts if c < v)
