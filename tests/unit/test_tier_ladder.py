"""Tier ladders in local dates: windows, reviews, holds, the review decision per downgrade
policy, and the operator's manual floor (pure, no database).

Ladders are compiled from small YAML texts through the real loader. Expected dates are
worked out by hand in the comments next to each row; windows are [start, end).
"""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import pytest

from loyalty_engine.domain.decisions import Standing
from loyalty_engine.engine.standing import credit_in, effective_tier, review_tier
from loyalty_engine.rules import load_program_text
from loyalty_engine.rules.compiled_membership import TierLadder, Window

D = date.fromisoformat
DAY = timedelta(days=1)

# Calendar-year and rolling windows ignore the enrolment date; anniversaries count from it.
ENROLLED = D("2025-06-15")
LEAP = D("2024-02-29")  # an enrolment on 29 February: its anniversary is 28 February in
# common years (add_months clamps) and 29 February again in leap years.

WINDOWS = {
    "calendar_year": "calendar_year",
    "anniversary": "anniversary",
    "rolling 3": "{rolling_months: 3}",
    "rolling 12": "{rolling_months: 12}",
}


@lru_cache(maxsize=64)
def ladder(window: str = "calendar_year", downgrade: str = "qualified",
           measure: str = "spend") -> TierLadder:
    """silver 100, gold 500, platinum 1000 (EUR, or visits/points as given)."""
    text = textwrap.dedent(f"""\
        program: shop
        name: Shop
        currency: EUR
        timezone: Europe/Amsterdam
        enrolment: open
        tiers:
          measure: {measure}
          window: {WINDOWS[window]}
          downgrade: {downgrade}
          levels:
            - {{id: silver, threshold: 100}}
            - {{id: gold, threshold: 500}}
            - {{id: platinum, threshold: 1000}}
        rules:
          - id: per-euro
            kind: points_per_spend
            points_per_unit: 1
        """)
    tiers = load_program_text(text, "shop.yaml").compiled.tiers
    assert tiers is not None
    return tiers


def w(start: str, end: str) -> Window:
    return Window(D(start), D(end))


# --- the compiled ladder --------------------------------------------------------------------

def test_compiled_ladder_keeps_spend_thresholds_in_minor_units() -> None:
    spend = ladder()
    assert [(s.tier_id, s.rank, s.threshold) for s in spend.steps] == [
        ("silver", 0, 10000), ("gold", 1, 50000), ("platinum", 2, 100000)]
    assert (spend.window, spend.months, spend.counter) == ("calendar_year", 12, "*:spend")
    visits = ladder(measure="visits")
    assert [s.threshold for s in visits.steps] == [100, 500, 1000]
    assert visits.counter == "*:visits"
    assert ladder(measure="points").counter == "*:points"
    rolling = ladder("rolling 3")
    assert (rolling.window, rolling.months) == ("rolling", 3)
    assert (ladder("anniversary").window, ladder("anniversary").months) == ("anniversary", 12)


@pytest.mark.parametrize(
    ("credit", "tier"),
    [(0, ""), (9999, ""), (10000, "silver"), (49999, "silver"), (50000, "gold"),
     (99999, "gold"), (100000, "platinum"), (10**9, "platinum")],
)
def test_qualified_is_the_highest_threshold_reached(credit: int, tier: str) -> None:
    assert ladder().qualified(credit) == tier


@pytest.mark.parametrize(
    ("tier", "rank", "below"),
    [("silver", 0, ""), ("gold", 1, "silver"), ("platinum", 2, "gold"), ("", -1, ""),
     ("diamond", -1, "")],  # a tier the ladder does not (or no longer) have
)
def test_rank_and_one_below(tier: str, rank: int, below: str) -> None:
    assert ladder().rank(tier) == rank
    assert ladder().one_below(tier) == below


# --- the window a purchase counts in ---------------------------------------------------------

@pytest.mark.parametrize(
    ("window", "enrolled", "day", "expected"),
    [
        # Calendar year: 1 January to 1 January, whatever the enrolment.
        ("calendar_year", ENROLLED, "2026-03-14", w("2026-01-01", "2027-01-01")),
        ("calendar_year", ENROLLED, "2026-01-01", w("2026-01-01", "2027-01-01")),
        ("calendar_year", ENROLLED, "2026-12-31", w("2026-01-01", "2027-01-01")),
        # Anniversary from 15 June 2025: each window runs 15 June to 15 June.
        ("anniversary", ENROLLED, "2025-06-15", w("2025-06-15", "2026-06-15")),
        ("anniversary", ENROLLED, "2026-01-10", w("2025-06-15", "2026-06-15")),
        ("anniversary", ENROLLED, "2026-06-14", w("2025-06-15", "2026-06-15")),
        ("anniversary", ENROLLED, "2026-06-15", w("2026-06-15", "2027-06-15")),
        # Anniversary from 29 Feb 2024: 2025-02-28, 2026-02-28, 2027-02-28, 2028-02-29.
        ("anniversary", LEAP, "2024-02-29", w("2024-02-29", "2025-02-28")),
        ("anniversary", LEAP, "2025-02-27", w("2024-02-29", "2025-02-28")),
        ("anniversary", LEAP, "2025-02-28", w("2025-02-28", "2026-02-28")),
        ("anniversary", LEAP, "2025-03-01", w("2025-02-28", "2026-02-28")),
        ("anniversary", LEAP, "2028-02-28", w("2027-02-28", "2028-02-29")),  # 366 days
        ("anniversary", LEAP, "2028-02-29", w("2028-02-29", "2029-02-28")),
        # Rolling 3: the three months up to and including the day:
        # 14 Mar - 3 months = 14 Dec, +1 day -> [15 Dec, 15 Mar).
        ("rolling 3", ENROLLED, "2026-03-14", w("2025-12-15", "2026-03-15")),
        # 31 Mar - 3 months = 31 Dec, +1 -> [1 Jan, 1 Apr): the quarter exactly.
        ("rolling 3", ENROLLED, "2026-03-31", w("2026-01-01", "2026-04-01")),
        # 31 May - 3 months = 31 Feb, clamped to 28 Feb, +1 -> [1 Mar, 1 Jun).
        ("rolling 3", ENROLLED, "2026-05-31", w("2026-03-01", "2026-06-01")),
        # 1 Jan 2026 - 3 months = 1 Oct 2025, +1 -> [2 Oct 2025, 2 Jan 2026).
        ("rolling 3", ENROLLED, "2026-01-01", w("2025-10-02", "2026-01-02")),
        # Rolling 12: 14 Mar 2026 - 12 months = 14 Mar 2025, +1 -> [15 Mar 2025, 15 Mar 2026).
        ("rolling 12", ENROLLED, "2026-03-14", w("2025-03-15", "2026-03-15")),
        # 29 Feb 2024 - 12 months = 28 Feb 2023 (clamped), +1 -> [1 Mar 2023, 1 Mar 2024).
        ("rolling 12", ENROLLED, "2024-02-29", w("2023-03-01", "2024-03-01")),
        # 1 Mar 2025 - 12 months = 1 Mar 2024, +1 -> [2 Mar 2024, 2 Mar 2025).
        ("rolling 12", ENROLLED, "2025-03-01", w("2024-03-02", "2025-03-02")),
    ],
)
def test_current_window(window: str, enrolled: date, day: str, expected: Window) -> None:
    found = ladder(window).current_window(D(day), enrolled)
    assert found == expected
    assert found.contains(D(day))


@pytest.mark.parametrize("window", list(WINDOWS))
@pytest.mark.parametrize("enrolled", [ENROLLED, LEAP], ids=["15 June", "29 February"])
def test_every_day_falls_in_its_current_window(window: str, enrolled: date) -> None:
    # Four years of days from the enrolment, across two 29 Februaries (2024, 2028).
    tiers = ladder(window)
    day = enrolled
    while day < enrolled + timedelta(days=4 * 366):
        found = tiers.current_window(day, enrolled)
        assert found.contains(day), (day, found)
        low, high = (89, 92) if window == "rolling 3" else (365, 366)
        assert low <= (found.end - found.start).days <= high, (day, found)
        if not window.startswith("rolling"):
            # Fixed windows tile: the next day is in the same window or the very next one.
            following = tiers.current_window(day + DAY, enrolled)
            assert following == found or following.start == found.end, (day, following)
        day += DAY


# --- reviews: when they fall and what they judge ---------------------------------------------

@pytest.mark.parametrize(
    ("window", "enrolled", "after", "expected"),
    [
        ("calendar_year", ENROLLED, "2026-03-14", "2027-01-01"),
        ("calendar_year", ENROLLED, "2026-12-31", "2027-01-01"),
        ("calendar_year", ENROLLED, "2027-01-01", "2028-01-01"),  # strictly after
        ("anniversary", ENROLLED, "2025-06-15", "2026-06-15"),
        ("anniversary", ENROLLED, "2026-06-14", "2026-06-15"),
        ("anniversary", ENROLLED, "2026-06-15", "2027-06-15"),
        ("anniversary", LEAP, "2024-02-29", "2025-02-28"),
        ("anniversary", LEAP, "2025-02-28", "2026-02-28"),
        ("anniversary", LEAP, "2027-02-28", "2028-02-29"),
        ("anniversary", LEAP, "2028-02-28", "2028-02-29"),
        ("anniversary", LEAP, "2028-02-29", "2029-02-28"),
        ("rolling 3", ENROLLED, "2026-03-14", "2026-04-01"),
        ("rolling 3", ENROLLED, "2026-03-01", "2026-04-01"),
        ("rolling 12", ENROLLED, "2026-12-31", "2027-01-01"),
    ],
)
def test_next_review(window: str, enrolled: date, after: str, expected: str) -> None:
    assert ladder(window).next_review(D(after), enrolled) == D(expected)


@pytest.mark.parametrize(
    ("window", "enrolled", "review", "expected"),
    [
        ("calendar_year", ENROLLED, "2027-01-01", w("2026-01-01", "2027-01-01")),
        ("anniversary", ENROLLED, "2026-06-15", w("2025-06-15", "2026-06-15")),
        ("anniversary", ENROLLED, "2027-06-15", w("2026-06-15", "2027-06-15")),
        ("anniversary", LEAP, "2025-02-28", w("2024-02-29", "2025-02-28")),
        ("anniversary", LEAP, "2026-02-28", w("2025-02-28", "2026-02-28")),
        ("anniversary", LEAP, "2028-02-29", w("2027-02-28", "2028-02-29")),
        ("anniversary", LEAP, "2029-02-28", w("2028-02-29", "2029-02-28")),
        # Rolling: a review on the 1st judges the N whole months before it.
        ("rolling 3", ENROLLED, "2026-04-01", w("2026-01-01", "2026-04-01")),
        ("rolling 3", ENROLLED, "2026-01-01", w("2025-10-01", "2026-01-01")),
        ("rolling 12", ENROLLED, "2026-04-01", w("2025-04-01", "2026-04-01")),
    ],
)
def test_review_window(window: str, enrolled: date, review: str, expected: Window) -> None:
    assert ladder(window).review_window(D(review), enrolled) == expected


@pytest.mark.parametrize("window", ["calendar_year", "anniversary"])
@pytest.mark.parametrize("enrolled", [ENROLLED, LEAP], ids=["15 June", "29 February"])
def test_a_review_judges_the_window_of_the_day_before(window: str, enrolled: date) -> None:
    # review_window is "the one that ends that day": what the last day's purchases were
    # judged on (for upgrades) is what the review judges, so nothing that earned an
    # upgrade is missing at the review the next morning.
    tiers = ladder(window)
    review = tiers.next_review(enrolled, enrolled)
    for _ in range(30):
        assert tiers.review_window(review, enrolled) == tiers.current_window(
            review - DAY, enrolled), review
        following = tiers.next_review(review, enrolled)
        assert following > review
        review = following


@pytest.mark.parametrize(
    ("window", "review", "expected"),
    [
        # Month ends whose day-of-month exists N months earlier agree with the review.
        ("rolling 3", "2026-04-01", w("2026-01-01", "2026-04-01")),  # 31 Mar <- 31 Dec
        ("rolling 3", "2026-06-01", w("2026-03-01", "2026-06-01")),  # 31 May <- 28 Feb
        ("rolling 12", "2026-03-01", w("2025-03-01", "2026-03-01")),  # 28 Feb <- 28 Feb
        ("rolling 12", "2024-03-01", w("2023-03-01", "2024-03-01")),  # 29 Feb <- 28 Feb
    ],
)
def test_rolling_review_judges_the_window_of_the_day_before(window: str, review: str,
                                                            expected: Window) -> None:
    tiers = ladder(window)
    assert tiers.review_window(D(review), ENROLLED) == expected
    assert tiers.current_window(D(review) - DAY, ENROLLED) == expected


@pytest.mark.parametrize(
    ("window", "review", "expected"),
    [
        # The three months up to 30 Apr are Feb-Apr = [1 Feb, 1 May), as the 1 May review
        # judges; current_window(30 Apr) gives [31 Jan, 1 May) (30 Apr - 3 = 30 Jan, +1).
        ("rolling 3", "2026-05-01", w("2026-02-01", "2026-05-01")),
        # Up to 28 Feb: Dec-Feb = [1 Dec, 1 Mar); current_window gives [29 Nov, 1 Mar).
        ("rolling 3", "2026-03-01", w("2025-12-01", "2026-03-01")),
        # Up to 28 Feb 2025: [1 Mar 2024, 1 Mar 2025); current_window gives [29 Feb 2024, ...).
        ("rolling 12", "2025-03-01", w("2024-03-01", "2025-03-01")),
    ],
)
def test_rolling_month_end_window_matches_the_next_review(window: str, review: str,
                                                          expected: Window) -> None:
    tiers = ladder(window)
    assert tiers.review_window(D(review), ENROLLED) == expected  # holds
    assert tiers.current_window(D(review) - DAY, ENROLLED) == expected  # does not


@pytest.mark.parametrize(
    ("window", "enrolled", "after", "through", "expected"),
    [
        # A scheduler that was down for years catches up review by review, in order.
        ("calendar_year", ENROLLED, "2024-06-30", "2027-01-01",
         ["2025-01-01", "2026-01-01", "2027-01-01"]),
        ("calendar_year", ENROLLED, "2025-12-31", "2026-01-01", ["2026-01-01"]),
        ("calendar_year", ENROLLED, "2026-01-01", "2026-12-31", []),  # after is excluded
        ("calendar_year", ENROLLED, "2026-01-01", "2026-01-01", []),
        ("anniversary", ENROLLED, "2025-06-15", "2028-06-14", ["2026-06-15", "2027-06-15"]),
        ("anniversary", ENROLLED, "2025-06-15", "2028-06-15",
         ["2026-06-15", "2027-06-15", "2028-06-15"]),
        ("anniversary", LEAP, "2024-02-29", "2028-03-01",
         ["2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"]),
        ("anniversary", LEAP, "2025-02-28", "2025-02-28", []),
        ("rolling 3", ENROLLED, "2026-01-15", "2026-04-01",
         ["2026-02-01", "2026-03-01", "2026-04-01"]),
        ("rolling 3", ENROLLED, "2026-04-01", "2026-04-30", []),
        ("rolling 12", ENROLLED, "2025-11-20", "2026-02-15",
         ["2025-12-01", "2026-01-01", "2026-02-01"]),
    ],
)
def test_reviews_between(window: str, enrolled: date, after: str, through: str,
                         expected: list[str]) -> None:
    found = ladder(window).reviews_between(D(after), D(through), enrolled)
    assert found == [D(d) for d in expected]


# --- hold_next_period: how long a tier reached on a day holds --------------------------------

@pytest.mark.parametrize(
    ("window", "enrolled", "reached", "expected"),
    [
        # Reached in 2026: the 2027-01-01 review judges 2026 (holds), the 2028-01-01 one
        # judges 2027: held through 2027.
        ("calendar_year", ENROLLED, "2026-05-10", "2028-01-01"),
        ("calendar_year", ENROLLED, "2026-01-01", "2028-01-01"),
        ("calendar_year", ENROLLED, "2026-12-31", "2028-01-01"),
        # Reached in the membership year [2025-06-15, 2026-06-15): held through the next
        # one, until 2027-06-15.
        ("anniversary", ENROLLED, "2025-09-01", "2027-06-15"),
        ("anniversary", ENROLLED, "2026-06-14", "2027-06-15"),
        ("anniversary", ENROLLED, "2026-06-15", "2028-06-15"),
        # Reached in [2024-02-29, 2025-02-28): held until two anniversaries on, 2026-02-28.
        ("anniversary", LEAP, "2024-03-10", "2026-02-28"),
        # Reached in [2026-02-28, 2027-02-28): held until 2028-02-29 (a leap year).
        ("anniversary", LEAP, "2026-03-01", "2028-02-29"),
        # Rolling 3, reached in March: the reviews of 1 Apr, 1 May and 1 Jun judge windows
        # holding March; 1 Jul judges Apr-Jun. 1 Mar + 4 months = 1 Jul.
        ("rolling 3", ENROLLED, "2026-03-14", "2026-07-01"),
        ("rolling 3", ENROLLED, "2026-03-31", "2026-07-01"),
        ("rolling 3", ENROLLED, "2026-11-30", "2027-03-01"),  # 1 Nov + 4 months
        # Rolling 12, reached in March 2026: 1 Mar 2026 + 13 months = 1 Apr 2027.
        ("rolling 12", ENROLLED, "2026-03-14", "2027-04-01"),
    ],
)
def test_held_until(window: str, enrolled: date, reached: str, expected: str) -> None:
    tiers = ladder(window, "hold_next_period")
    held = tiers.held_until(D(reached), enrolled)
    assert held == D(expected)
    # It is a review day: the first whose window no longer holds the day it was reached,
    # while the review before it still judged a window holding that day.
    assert tiers.next_review(held - DAY, enrolled) == held
    assert not tiers.review_window(held, enrolled).contains(D(reached))
    before = [d for d in tiers.reviews_between(D(reached), held, enrolled) if d < held]
    assert before, "at least one review must still see the day the tier was reached"
    assert tiers.review_window(before[-1], enrolled).contains(D(reached))


# --- the review decision per downgrade policy ------------------------------------------------

SILVER, GOLD, PLATINUM = 10000, 50000, 100000  # thresholds in cents
NEW_YEAR = D("2027-01-01")  # a calendar-year review, judging 2026


@pytest.mark.parametrize(
    ("downgrade", "tier", "held", "credit", "review", "expected"),
    [
        # qualified: wherever the credit puts the member, up or down, no hold.
        ("qualified", "platinum", None, 0, NEW_YEAR, ("", None, "not requalified")),
        ("qualified", "platinum", None, GOLD + 1, NEW_YEAR, ("gold", None, "not requalified")),
        ("qualified", "gold", None, GOLD, NEW_YEAR, ("gold", None, "qualified")),  # exactly
        ("qualified", "gold", None, GOLD - 1, NEW_YEAR, ("silver", None, "not requalified")),
        ("qualified", "silver", None, PLATINUM, NEW_YEAR,
         ("platinum", None, "qualified higher")),
        ("qualified", "", None, SILVER, NEW_YEAR, ("silver", None, "qualified higher")),
        ("qualified", "", None, 0, NEW_YEAR, ("", None, "qualified")),
        # A tier the ladder dropped counts as none.
        ("qualified", "diamond", None, SILVER, NEW_YEAR, ("silver", None, "qualified higher")),
        # A hold left over from another policy means nothing under this one.
        ("qualified", "gold", D("2028-01-01"), 0, NEW_YEAR, ("", None, "not requalified")),
        # one_level: down one rung at most, but never below what the credit qualifies for.
        ("one_level", "platinum", None, 0, NEW_YEAR, ("gold", None, "one level down")),
        ("one_level", "platinum", None, SILVER, NEW_YEAR, ("gold", None, "one level down")),
        ("one_level", "platinum", None, GOLD, NEW_YEAR, ("gold", None, "one level down")),
        ("one_level", "gold", None, 0, NEW_YEAR, ("silver", None, "one level down")),
        ("one_level", "silver", None, 0, NEW_YEAR, ("", None, "one level down")),
        ("one_level", "gold", None, GOLD, NEW_YEAR, ("gold", None, "qualified")),
        ("one_level", "gold", None, PLATINUM, NEW_YEAR, ("platinum", None, "qualified higher")),
        # hold_next_period, still held (review before held_until): the tier stays.
        ("hold_next_period", "gold", D("2028-01-01"), 0, NEW_YEAR,
         ("gold", D("2028-01-01"), "held")),
        ("hold_next_period", "gold", D("2028-01-01"), SILVER, NEW_YEAR,
         ("gold", D("2028-01-01"), "held")),
        # Requalified: the hold is renewed from the window just judged (2026 -> 2028-01-01).
        ("hold_next_period", "gold", D("2028-01-01"), GOLD, NEW_YEAR,
         ("gold", D("2028-01-01"), "qualified")),
        ("hold_next_period", "gold", D("2028-01-01"), PLATINUM, NEW_YEAR,
         ("platinum", D("2028-01-01"), "qualified higher")),
        ("hold_next_period", "", None, SILVER, NEW_YEAR,
         ("silver", D("2028-01-01"), "qualified higher")),
        ("hold_next_period", "", None, 0, NEW_YEAR, ("", None, "qualified")),
        # After the hold (the review on held_until is no longer held): to the qualified tier.
        # (the lower tier was earned in 2027 too, so it holds through 2028)
        ("hold_next_period", "gold", D("2028-01-01"), SILVER, D("2028-01-01"),
         ("silver", D("2029-01-01"), "not requalified")),
        ("hold_next_period", "gold", D("2028-01-01"), 0, D("2028-01-01"),
         ("", None, "not requalified")),
        ("hold_next_period", "gold", D("2027-01-01"), 0, NEW_YEAR,
         ("", None, "not requalified")),
        # A tier row without a hold is not held.
        ("hold_next_period", "gold", None, 0, NEW_YEAR, ("", None, "not requalified")),
        # Requalifying after the hold renews it: review 2028-01-01 judges 2027 -> 2029-01-01.
        ("hold_next_period", "gold", D("2028-01-01"), GOLD, D("2028-01-01"),
         ("gold", D("2029-01-01"), "qualified")),
    ],
)
def test_review_tier_calendar_year(downgrade: str, tier: str, held: date | None, credit: int,
                                   review: date,
                                   expected: tuple[str, date | None, str]) -> None:
    assert review_tier(ladder("calendar_year", downgrade), tier, held, credit, review,
                       ENROLLED) == expected


@pytest.mark.parametrize(
    ("window", "enrolled", "held", "credit", "review", "expected"),
    [
        # Anniversary from 29 Feb 2024, gold reached in the first year: held until
        # 2026-02-28 (see test_held_until).
        ("anniversary", LEAP, "2026-02-28", 0, "2025-02-28", ("gold", "2026-02-28", "held")),
        ("anniversary", LEAP, "2026-02-28", 0, "2026-02-28", ("", None, "not requalified")),
        # Requalified at 2025-02-28: the window judged ends that day; renewed to 2026-02-28.
        ("anniversary", LEAP, "2026-02-28", GOLD, "2025-02-28",
         ("gold", "2026-02-28", "qualified")),
        # ... and at 2027-02-28: renewed to the next-but-one anniversary, 2028-02-29.
        ("anniversary", LEAP, "2027-02-28", GOLD, "2027-02-28",
         ("gold", "2028-02-29", "qualified")),
        # Rolling 3, gold reached 2026-03-14: held until 2026-07-01.
        ("rolling 3", ENROLLED, "2026-07-01", 0, "2026-06-01", ("gold", "2026-07-01", "held")),
        ("rolling 3", ENROLLED, "2026-07-01", SILVER, "2026-07-01",
         ("silver", "2026-10-01", "not requalified")),
        # Requalified at 2026-07-01 (judging Apr-Jun, "reached" 30 Jun): 1 Jun + 4 = 1 Oct.
        ("rolling 3", ENROLLED, "2026-07-01", GOLD, "2026-07-01",
         ("gold", "2026-10-01", "qualified")),
        # Rolling 12 requalified at 2026-04-01 (reached 31 Mar): 1 Mar 2026 + 13 = 1 Apr 2027.
        ("rolling 12", ENROLLED, "2026-04-01", GOLD, "2026-04-01",
         ("gold", "2027-04-01", "qualified")),
    ],
)
def test_review_tier_hold_next_period_per_window(
        window: str, enrolled: date, held: str, credit: int, review: str,
        expected: tuple[str, str | None, str]) -> None:
    tier, until, why = expected
    assert review_tier(ladder(window, "hold_next_period"), "gold", D(held), credit, D(review),
                       enrolled) == (tier, None if until is None else D(until), why)


def _catch_up(tiers: TierLadder, tier: str, held: date | None, progress: dict[tuple[str, str],
              int], after: date, through: date) -> list[tuple[date, str, date | None, str]]:
    """Run every missed review in order, as a scheduler catching up would."""
    steps = []
    for review in tiers.reviews_between(after, through, ENROLLED):
        credit = credit_in(progress, tiers.counter, tiers.review_window(review, ENROLLED))
        tier, held, why = review_tier(tiers, tier, held, credit, review, ENROLLED)
        steps.append((review, tier, held, why))
    return steps


def test_catch_up_one_level_steps_down_a_rung_per_missed_review() -> None:
    # Platinum credit in 2026 (1200 EUR over two days), nothing after.
    progress = {("*:spend", "2026-05-10"): 70000, ("*:spend", "2026-11-02"): 50000}
    steps = _catch_up(ladder("calendar_year", "one_level"), "platinum", None, progress,
                      D("2026-05-10"), D("2030-06-30"))
    assert steps == [
        (D("2027-01-01"), "platinum", None, "qualified"),  # 2026: 120000 >= platinum
        (D("2028-01-01"), "gold", None, "one level down"),  # 2027: nothing
        (D("2029-01-01"), "silver", None, "one level down"),
        (D("2030-01-01"), "", None, "one level down"),
    ]


def test_catch_up_hold_next_period_holds_through_the_following_year() -> None:
    # Gold reached on 2026-05-10 (held until 2028-01-01); silver credit in 2027, none after.
    tiers = ladder("calendar_year", "hold_next_period")
    progress = {("*:spend", "2026-05-10"): 60000, ("*:spend", "2027-03-01"): 20000,
                ("*:visits", "2028-02-01"): 99}  # another counter never counts
    held = tiers.held_until(D("2026-05-10"), ENROLLED)
    steps = _catch_up(tiers, "gold", held, progress, D("2026-05-10"), D("2029-01-01"))
    assert steps == [
        (D("2027-01-01"), "gold", D("2028-01-01"), "qualified"),  # judged 2026: 600 EUR
        # judged 2027: 200 EUR, silver earned in 2027 holds through 2028
        (D("2028-01-01"), "silver", D("2029-01-01"), "not requalified"),
        (D("2029-01-01"), "", None, "not requalified"),  # judged 2028: nothing
    ]


def test_credit_in_counts_only_the_window_and_the_counter() -> None:
    progress = {("*:spend", "2025-12-31"): 1, ("*:spend", "2026-01-01"): 10,
                ("*:spend", "2026-12-31"): 100, ("*:spend", "2027-01-01"): 1000,
                ("*:visits", "2026-06-01"): 5, ("per-euro:cap", "2026-06-01"): 7}
    assert credit_in(progress, "*:spend", w("2026-01-01", "2027-01-01")) == 110
    assert credit_in(progress, "*:visits", w("2026-01-01", "2027-01-01")) == 5
    assert credit_in({}, "*:spend", w("2026-01-01", "2027-01-01")) == 0


# --- the operator's manual floor -------------------------------------------------------------

UNTIL = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("standing", "at", "expected"),
    [
        # A floor above the earned tier lifts it while it lasts ...
        (Standing("silver", manual_tier="platinum", manual_until=UNTIL),
         UNTIL - timedelta(seconds=1), "platinum"),
        # ... and no longer from its expiry instant on.
        (Standing("silver", manual_tier="platinum", manual_until=UNTIL), UNTIL, "silver"),
        (Standing("silver", manual_tier="platinum", manual_until=UNTIL),
         UNTIL + timedelta(days=400), "silver"),
        # Without an expiry it lasts.
        (Standing("silver", manual_tier="gold"), datetime(2099, 1, 1, tzinfo=UTC), "gold"),
        # A floor is a floor: it never lowers an earned tier.
        (Standing("platinum", manual_tier="silver", manual_until=UNTIL),
         UNTIL - timedelta(days=1), "platinum"),
        # A floor for a member without an earned tier.
        (Standing("", manual_tier="gold", manual_until=UNTIL), UNTIL - timedelta(days=1),
         "gold"),
        (Standing("", manual_tier="gold", manual_until=UNTIL), UNTIL, ""),
        # Tiers the ladder does not have count as none.
        (Standing("silver", manual_tier="diamond"), UNTIL, "silver"),
        (Standing("diamond"), UNTIL, ""),
        (Standing(), UNTIL, ""),
    ],
)
def test_effective_tier(standing: Standing, at: datetime, expected: str) -> None:
    assert effective_tier(ladder(), standing, at) == expected


def test_effective_tier_without_a_ladder_is_none() -> None:
    assert effective_tier(None, Standing("gold", manual_tier="gold"), UNTIL) == ""


# --- measures of issue 16: quantities, days, two measures; quarterly and yearly reviews ------

def multi_ladder(measure: str, levels: str, window: str = "calendar_year") -> TierLadder:
    text = textwrap.dedent("""\
        program: inn
        name: Inn
        currency: EUR
        timezone: Europe/Amsterdam
        enrolment: open
        tiers:
          measure: {measure}
          window: {window}
          downgrade: qualified
          levels:
        {levels}
        rules:
          - id: per-euro
            kind: points_per_spend
            points_per_unit: 1
        """).format(measure=measure, window=window,
                    levels=textwrap.indent(textwrap.dedent(levels), "    "))
    tiers = load_program_text(text, "inn.yaml").compiled.tiers
    assert tiers is not None
    return tiers


NIGHTS_LEVELS = """\
- {id: silver, thresholds: {nights: 10, spend: "1000.00"}}
- {id: gold, thresholds: {nights: 25, spend: "5000.00"}}
"""


def test_two_measures_compile_a_threshold_each_in_stored_units() -> None:
    both = multi_ladder("{any: {nights: {quantity: {categories: [room-night]}}, spend: spend}}",
                        NIGHTS_LEVELS)
    # Nights in thousandths (10 nights = 10,000), spend in cents (1,000.00 EUR = 100,000).
    assert [s.thresholds for s in both.steps] == [(10000, 100000), (25000, 500000)]
    assert both.counters == ("*:quantity:nights", "*:spend")
    assert (both.measure, both.combine) == ("any:nights,spend", "any")


@pytest.mark.parametrize(
    ("combine", "nights", "spend", "tier"),
    [("any", 9999, 99999, ""),        # 9.999 nights, 999.99 EUR: neither reaches silver
     ("any", 10000, 0, "silver"),     # 10 nights alone is enough with any
     ("any", 0, 100000, "silver"),    # and so is 1,000 EUR alone
     ("any", 25000, 100000, "gold"),  # 25 nights: gold, whatever the spend
     ("all", 25000, 100000, "silver"),  # all: 25 nights but only silver's spend
     ("all", 10000, 99999, ""),         # all: silver's nights, 1 cent short of its spend
     ("all", 30000, 600000, "gold")],
)
def test_any_and_all_qualify(combine: str, nights: int, spend: int, tier: str) -> None:
    both = multi_ladder(f"{{{combine}: {{nights: {{quantity: {{skus: [ROOM]}}}}, "
                        "spend: spend}}", NIGHTS_LEVELS)
    assert both.qualified((nights, spend)) == tier


def test_lacking_and_shortfall_say_each_measure() -> None:
    from loyalty_engine.services.tiers import shortfall
    both = multi_ladder("{any: {nights: {quantity: {skus: [ROOM]}}, spend: spend}}",
                        NIGHTS_LEVELS)
    gold = both.steps[1]
    # 25 - 22 = 3 nights, or 5,000.00 - 3,800.00 = 1,200.00 EUR.
    assert both.lacking(gold, (22000, 380000)) == {"nights": 3000, "spend": 120000}
    assert shortfall(both, gold, (22000, 380000), "EUR") == "3 nights or 1200.00 EUR short"
    every = multi_ladder("{all: {nights: {quantity: {skus: [ROOM]}}, spend: spend}}",
                         NIGHTS_LEVELS)
    # all: only the measures still short are named (the spend is reached).
    assert shortfall(every, every.steps[1], (22500, 500000), "EUR") == "2.5 nights short"
    assert shortfall(every, every.steps[1], (25000, 500000), "EUR") == ""


def test_days_count_the_days_whose_purchases_are_not_all_refunded() -> None:
    from loyalty_engine.engine.standing import credits_in
    days = multi_ladder("days", "- {id: regular, threshold: 3}\n")
    progress = {("*:days", "2026-03-01"): 2,   # two purchases that day: one day
                ("*:days", "2026-03-02"): 0,   # its purchase refunded in full: no day
                ("*:days", "2026-03-05"): 1,
                ("*:days", "2027-01-01"): 1,   # outside 2026
                ("*:spend", "2026-03-03"): 500}  # another counter
    assert credits_in(progress, days, w("2026-01-01", "2027-01-01")) == (2,)


ROLLING = "{{rolling_months: 12, review: {review}}}"


@pytest.mark.parametrize(
    ("review", "after", "expected"),
    [("monthly", "2026-03-14", "2026-04-01"),
     ("quarterly", "2026-03-14", "2026-04-01"),   # 1 April follows 1 January
     ("quarterly", "2026-04-01", "2026-07-01"),   # strictly after a review day
     ("quarterly", "2026-12-31", "2027-01-01"),
     ("yearly", "2026-03-14", "2027-01-01"),
     ("yearly, review_on: 03-01", "2026-02-28", "2026-03-01"),
     ("yearly, review_on: 03-01", "2026-03-01", "2027-03-01"),
     ("yearly, review_on: 03-01", "2026-12-31", "2027-03-01")],
)
def test_rolling_review_dates(review: str, after: str, expected: str) -> None:
    rolling = multi_ladder("spend", "- {id: silver, threshold: 100}\n",
                           ROLLING.format(review=review))
    assert rolling.next_review(D(after), ENROLLED) == D(expected)
    # The review judges the 12 months before its day.
    day = D(expected)
    assert rolling.review_window(day, ENROLLED) == Window(day.replace(year=day.year - 1), day)


def test_quarterly_catch_up_lists_each_missed_review_in_order() -> None:
    rolling = multi_ladder("spend", "- {id: silver, threshold: 100}\n",
                           ROLLING.format(review="quarterly"))
    assert rolling.reviews_between(D("2026-02-10"), D("2026-10-01"), ENROLLED) == [
        D("2026-04-01"), D("2026-07-01"), D("2026-10-01")]
    yearly = multi_ladder("spend", "- {id: silver, threshold: 100}\n",
                          ROLLING.format(review="yearly, review_on: 03-01"))
    assert yearly.reviews_between(D("2026-02-10"), D("2028-03-01"), ENROLLED) == [
        D("2026-03-01"), D("2027-03-01"), D("2028-03-01")]
    # The shared review day on or before a date, and the one before it.
    assert rolling.review_on_or_before(D("2026-06-30")) == D("2026-04-01")
    assert yearly.review_on_or_before(D("2026-02-28")) == D("2025-03-01")
