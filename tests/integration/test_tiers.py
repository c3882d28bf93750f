"""Tiers on a real database: upgrades at the till, reviews on every kind of window, the three
downgrade policies, missed reviews caught up, refunds, members at risk, manual floors, and a
review whose SQL does not grow with the number of members.

Figures are worked out by hand from rules/glow-beauty.yaml (spend 0 / 350 / 1000 EUR on the
calendar year, Glow x1.25, Radiant x1.5, hold_next_period, refunds immediate, Europe/Paris)
and from the ladders written below; the comments show the arithmetic. Spend is in minor
units (cents) wherever the API reports credit.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import TierError
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.records.purchase_writer import PurchaseOutcome, PurchaseWriter
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.tiers import (
    ReviewResult,
    at_risk,
    review_tiers,
    set_manual_tier,
    show_tiers,
)
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction, write_transaction
from tests.integration.helpers import statements

from .walk import (
    RECORDED_AT,
    ROOT,
    apply_files,
    apply_text,
    assert_ledger_exact,
    at,
    buy,
    points,
    refund,
)

GLOW = ROOT / "rules" / "glow-beauty.yaml"
PARIS = ZoneInfo("Europe/Paris")

History = list[tuple[str, str, str]]  # (from, to, reason)


# --- helpers ----------------------------------------------------------------------------------

def ladder_yaml(*, window: str | int = "calendar_year", downgrade: str = "qualified",
                refunds: str = "at_review", measure: str = "spend",
                program: str = "ladder") -> str:
    """glow-beauty's ladder and earning with another measure, window, policy or refund rule.

    window: "calendar_year", "anniversary", or a number of rolling months."""
    rolling = isinstance(window, int)
    window_text = f"\n    rolling_months: {window}" if rolling else f" {window}"
    if measure == "spend":
        glow, radiant = '"350.00"', '"1000.00"'
    elif measure == "visits":
        glow, radiant = "3", "6"
    else:  # points
        glow, radiant = "350", "1000"
    return f"""\
program: {program}
name: Ladder {program}
currency: EUR
timezone: Europe/Paris
enrolment: open
stores: ["GB-*"]
exclude:
  categories: [gift-cards]
tiers:
  measure: {measure}
  window:{window_text}
  downgrade: {downgrade}
  refunds: {refunds}
  levels:
    - id: blush
      threshold: 0
    - id: glow
      threshold: {glow}
      multiplier: 1.25
    - id: radiant
      threshold: {radiant}
      multiplier: 1.5
rules:
  - id: points-per-euro
    kind: points_per_spend
    points_per_unit: 1
    rounding: floor
"""


def ladder(engine: Engine, tmp_path: Path, **options: Any) -> str:
    """Apply a custom ladder program; returns its id."""
    program = str(options.setdefault("program", "ladder"))
    apply_text(engine, tmp_path, ladder_yaml(**options))
    return program


def gb(engine: Engine, tx: str, day: str, amount: str, member: str = "M-1",
       category: str = "makeup") -> PurchaseOutcome:
    """One line of `amount` euros at a Glow Beauty store."""
    return buy(engine, tx, day, [(f"SKU-{category}", category, "1", amount)],
               member=member, store="GB-01")


def give_back(engine: Engine, refund_id: str, tx: str, day: str, amount: str) -> Any:
    return refund(engine, refund_id, tx, day, amount, store="GB-01")


def review(engine: Engine, day: str, program: str) -> ReviewResult:
    return review_tiers(engine, at(day), RECORDED_AT, program_id=program)


def shown(engine: Engine, member: str, day: str, program: str) -> dict[str, Any]:
    [found] = show_tiers(engine, member, at(day), program_id=program)
    return found


def tier(engine: Engine, member: str, day: str, program: str) -> str:
    found: str = shown(engine, member, day, program)["tier"]
    return found


def history(engine: Engine, member: str, program: str) -> History:
    return [(h["from"], h["to"], h["reason"])
            for h in shown(engine, member, "2035-01-01", program)["history"]]


def history_rows(engine: Engine) -> int:
    with read_transaction(engine) as conn:
        count: int = conn.execute(select(func.count()).select_from(tables.tier_history)
                                  ).scalar_one()
    return count


def midnight(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), PARIS)


# --- 1. Glow Beauty, 2026 to 2029 ----------------------------------------------------------

def test_glow_beauty_from_2026_to_2029(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"

    # 1 Feb 2026: 200 euros, the first purchase: Blush ("enrolment"), 200 points at x1.
    assert gb(engine, "T1", "2026-02-01", "200.00").points == 200
    seen = shown(engine, "M-1", "2026-02-15", gbp)
    assert (seen["tier"], seen["earned_tier"], seen["credit"]) == ("blush", "blush", 20000)
    assert (seen["next_tier"], seen["next_tier_lacks"]) == ("glow", 35000 - 20000)
    assert seen["window"] == [date(2026, 1, 1), date(2027, 1, 1)]
    assert seen["next_review"] == date(2027, 1, 1)
    assert seen["policy"] == "hold_next_period" and seen["measure"] == "spend"

    # 1 Mar: 150 euros takes the year to exactly 350.00: Glow at once, but this purchase
    # still earns at Blush (150 points). Reached in 2026: held until 1 January 2028.
    assert gb(engine, "T2", "2026-03-01", "150.00").points == 150
    seen = shown(engine, "M-1", "2026-03-01", gbp)
    assert (seen["tier"], seen["credit"], seen["held_until"]) == ("glow", 35000,
                                                                  date(2028, 1, 1))
    assert (seen["next_tier"], seen["next_tier_lacks"]) == ("radiant", 100000 - 35000)
    # 1 Apr: the next purchase earns at Glow: 100 x 1.25 = 125.
    assert gb(engine, "T3", "2026-04-01", "100.00").points == 125
    # 1 May: 650 euros takes the year to 1,100: Radiant at once; earns at Glow:
    # 650 x 1.25 = 812.5 -> 812.
    assert gb(engine, "T4", "2026-05-01", "650.00").points == 812
    assert tier(engine, "M-1", "2026-05-01", gbp) == "radiant"
    # 1 Jun: at Radiant, 100 x 1.5 = 150.
    assert gb(engine, "T5", "2026-06-01", "100.00").points == 150
    assert points(engine, gbp) == (200 + 150 + 125 + 812 + 150, 0)

    # No review is due before 1 January.
    early = review(engine, "2026-12-31", gbp)
    assert early.reviewed == {gbp: 0} and early.review_days == {gbp: []}

    # Review on 1 Jan 2027 judges 2026 (110,000 + 10,000 cents): Radiant confirmed, no change.
    confirmed = review(engine, "2027-01-01", gbp)
    assert confirmed.reviewed == {gbp: 1} and confirmed.review_days == {gbp: ["2027-01-01"]}
    assert (confirmed.upgraded, confirmed.downgraded) == ({gbp: 0}, {gbp: 0})
    # Status earned in 2026 holds through 2027 though nothing was spent in 2027 yet.
    seen = shown(engine, "M-1", "2027-06-01", gbp)
    assert (seen["tier"], seen["credit"], seen["held_until"]) == ("radiant", 0,
                                                                  date(2028, 1, 1))
    assert seen["window"] == [date(2027, 1, 1), date(2028, 1, 1)]
    assert seen["next_review"] == date(2028, 1, 1)
    # 2027 spend: 400 euros, at Radiant 400 x 1.5 = 600 points; no change of tier.
    assert gb(engine, "T6", "2027-03-01", "400.00").points == 600
    assert tier(engine, "M-1", "2027-12-31", gbp) == "radiant"

    # Review on 1 Jan 2028 judges 2027: 40,000 qualifies for Glow; the hold ended today.
    dropped = review(engine, "2028-01-01", gbp)
    assert dropped.downgraded == {gbp: 1} and dropped.held == {gbp: 0}
    assert tier(engine, "M-1", "2028-01-01", gbp) == "glow"
    # Nothing in 2028: the review on 1 Jan 2029 judges 0 -> Blush.
    assert review(engine, "2029-01-01", gbp).downgraded == {gbp: 1}
    assert tier(engine, "M-1", "2029-01-01", gbp) == "blush"
    # 2029: back at x1.
    assert gb(engine, "T7", "2029-02-01", "100.00").points == 100

    assert history(engine, "M-1", gbp) == [
        ("", "blush", "enrolment"), ("blush", "glow", "upgrade"),
        ("glow", "radiant", "upgrade"), ("radiant", "glow", "review"),
        ("glow", "blush", "review"),
    ]
    reviews = [h for h in shown(engine, "M-1", "2029-06-01", gbp)["history"]
               if h["reason"] == "review"]
    assert [h["changed_at"] for h in reviews] == [midnight("2028-01-01"),
                                                 midnight("2029-01-01")]
    assert reviews[0]["detail"]["credit"] == 40000
    assert reviews[0]["detail"]["window"] == ["2027-01-01", "2028-01-01"]
    assert reviews[1]["detail"]["credit"] == 0
    assert_ledger_exact(engine)


# --- 2. windows ----------------------------------------------------------------------------------

def test_anniversary_window_reviews_each_members_year(engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window="anniversary", downgrade="qualified")

    # M-1 enrols on 10 May 2026 (100 euros): Blush. Its years: [2026-05-10, 2027-05-10), ...
    gb(engine, "A1", "2026-05-10", "100.00")
    # 9 May 2027, the last day of year one: 100 + 300 = 400 -> Glow at once.
    gb(engine, "A2", "2027-05-09", "300.00")
    assert tier(engine, "M-1", "2027-05-09", pid) == "glow"
    # M-2 enrols on 20 Nov 2026 at Glow (400 euros at once).
    gb(engine, "B1", "2026-11-20", "400.00", member="M-2")

    # 1 January is no review day for anniversary windows, nor is 9 May.
    assert review(engine, "2027-01-01", pid).review_days == {pid: []}
    assert review(engine, "2027-05-09", pid).reviewed == {pid: 0}

    # 10 May 2027, first day of year two: 700 euros (x1.25 = 875), credit of year two only.
    assert gb(engine, "A3", "2027-05-10", "700.00").points == 875
    # The review on 10 May 2027 judges [2026-05-10, 2027-05-10): 10,000 + 30,000 -> Glow.
    # (Counting 10 May 2027 would give 110,000 -> Radiant; dropping 9 May, 10,000 -> Blush.)
    first = review(engine, "2027-05-10", pid)
    assert first.reviewed == {pid: 1}  # M-2's anniversary is 20 November
    assert first.review_days == {pid: ["2027-05-10"]}
    seen = shown(engine, "M-1", "2027-06-01", pid)
    assert (seen["tier"], seen["credit"]) == ("glow", 70000)
    assert seen["window"] == [date(2027, 5, 10), date(2028, 5, 10)]
    assert seen["next_review"] == date(2028, 5, 10)

    # 1 Jun 2027: 300 more: 70,000 + 30,000 = 100,000 -> Radiant at once (earns 375 at Glow).
    assert gb(engine, "A4", "2027-06-01", "300.00").points == 375
    assert tier(engine, "M-1", "2027-06-01", pid) == "radiant"

    # M-2's review on 20 Nov 2027 judges [2026-11-20, 2027-11-20): 40,000 -> Glow kept.
    second = review(engine, "2027-11-20", pid)
    assert second.reviewed == {pid: 1} and second.review_days == {pid: ["2027-11-20"]}
    assert tier(engine, "M-2", "2027-11-20", pid) == "glow"

    # 10 May 2028 judges [2027-05-10, 2028-05-10): 100,000 -> Radiant kept. 20 Nov 2028
    # judges M-2's second year: nothing -> Blush (qualified: straight down).
    review(engine, "2028-05-10", pid)
    assert tier(engine, "M-1", "2028-05-10", pid) == "radiant"
    review(engine, "2028-11-20", pid)
    assert tier(engine, "M-2", "2028-11-20", pid) == "blush"
    # 10 May 2029: nothing in year three -> Blush.
    review(engine, "2029-05-10", pid)
    assert tier(engine, "M-1", "2029-05-10", pid) == "blush"
    last = shown(engine, "M-1", "2029-06-01", pid)["history"][-1]
    assert (last["from"], last["to"], last["reason"]) == ("radiant", "blush", "review")
    assert last["detail"]["window"] == ["2028-05-10", "2029-05-10"]
    assert last["changed_at"] == midnight("2029-05-10")
    assert_ledger_exact(engine)


def test_rolling_three_months_reviewed_on_the_first(engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window=3, downgrade="qualified")

    # 31 Jan: 650 euros, enrols straight at Glow (650 points at x1).
    assert gb(engine, "R1", "2026-01-31", "650.00").points == 650
    assert history(engine, "M-1", pid) == [("", "glow", "enrolment")]
    # 1 Feb: 100 (x1.25 = 125). Review on 1 Feb judges [1 Nov, 1 Feb): 65,000 -> Glow.
    assert gb(engine, "R2", "2026-02-01", "100.00").points == 125
    assert review(engine, "2026-02-01", pid).review_days == {pid: ["2026-02-01"]}
    # Reviews 1 Mar ([1 Dec, 1 Mar): 75,000) and 1 Apr ([1 Jan, 1 Apr): 75,000): Glow.
    assert review(engine, "2026-04-01", pid).review_days == {pid: ["2026-03-01",
                                                                   "2026-04-01"]}
    assert tier(engine, "M-1", "2026-04-01", pid) == "glow"
    # 15 Apr: 250 euros; the 3 months to the day [16 Jan, 16 Apr) hold 65,000 + 10,000 +
    # 25,000 = 100,000 -> Radiant at once (earns 312.5 -> 312 at Glow).
    assert gb(engine, "R3", "2026-04-15", "250.00").points == 312
    assert tier(engine, "M-1", "2026-04-15", pid) == "radiant"
    # 1 May: 700 euros at Radiant (1050 points); [2 Feb, 2 May) holds 95,000: no change.
    assert gb(engine, "R4", "2026-05-01", "700.00").points == 1050

    # The review on 1 May judges [1 Feb, 1 May): 10,000 + 25,000 = 35,000 -> Glow.
    # (From 31 Jan it would be 100,000; counting 1 May, 105,000; from 2 Feb, 25,000.)
    may = review(engine, "2026-05-01", pid)
    assert may.downgraded == {pid: 1} and may.review_days == {pid: ["2026-05-01"]}
    seen = shown(engine, "M-1", "2026-05-15", pid)
    assert (seen["tier"], seen["credit"]) == ("glow", 25000 + 70000)
    assert seen["window"] == [date(2026, 2, 16), date(2026, 5, 16)]
    assert (seen["next_tier"], seen["next_tier_lacks"]) == ("radiant", 5000)
    assert seen["next_review"] == date(2026, 6, 1)
    last = seen["history"][-1]
    assert last["detail"]["window"] == ["2026-02-01", "2026-05-01"]
    assert last["detail"]["credit"] == 35000

    # 1 Jun [1 Mar, 1 Jun): 95,000; 1 Jul [1 Apr, 1 Jul): 95,000; 1 Aug [1 May, 1 Aug):
    # 70,000 -> Glow each time; 1 Sep [1 Jun, 1 Sep): nothing -> Blush.
    summer = review(engine, "2026-09-01", pid)
    assert summer.review_days == {pid: ["2026-06-01", "2026-07-01", "2026-08-01",
                                        "2026-09-01"]}
    assert summer.reviewed == {pid: 4} and summer.downgraded == {pid: 1}
    assert tier(engine, "M-1", "2026-09-01", pid) == "blush"
    assert history(engine, "M-1", pid)[-1] == ("glow", "blush", "review")
    assert_ledger_exact(engine)


# --- measures ------------------------------------------------------------------------------------

def test_visits_measure(engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window=1, measure="visits")  # Glow 3 visits, Radiant 6

    # Three visits in February: Blush at the first, Glow at the third (which earns at x1).
    gb(engine, "V1", "2026-02-02", "10.00")
    gb(engine, "V2", "2026-02-10", "10.00")
    # A gift card alone is no eligible visit (excluded category).
    gb(engine, "V3", "2026-02-11", "50.00", category="gift-cards")
    assert tier(engine, "M-1", "2026-02-11", pid) == "blush"
    assert shown(engine, "M-1", "2026-02-11", pid)["credit"] == 2
    assert gb(engine, "V4", "2026-02-20", "10.00").points == 10
    assert tier(engine, "M-1", "2026-02-20", pid) == "glow"
    assert gb(engine, "V5", "2026-02-21", "10.00").points == 12  # 12.5 at Glow, floored

    # 1 Mar judges February: 4 visits -> Glow. 1 Apr judges March: none -> Blush.
    review(engine, "2026-03-01", pid)
    assert tier(engine, "M-1", "2026-03-01", pid) == "glow"
    review(engine, "2026-04-01", pid)
    assert tier(engine, "M-1", "2026-04-01", pid) == "blush"


def test_points_measure_counts_points_after_the_multiplier(engine: Engine,
                                                           tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, measure="points")  # Glow 350 points, Radiant 1000

    assert gb(engine, "P1", "2026-02-01", "300.00").points == 300  # Blush, 300 points
    assert gb(engine, "P2", "2026-03-01", "100.00").points == 100  # 400 points -> Glow
    assert tier(engine, "M-1", "2026-03-01", pid) == "glow"
    assert gb(engine, "P3", "2026-04-01", "400.00").points == 500  # x1.25: 900 points
    assert tier(engine, "M-1", "2026-04-01", pid) == "glow"
    # 80 x 1.25 = 100 points: 1,000 -> Radiant (had it counted spend, 880 would not).
    assert gb(engine, "P4", "2026-05-01", "80.00").points == 100
    seen = shown(engine, "M-1", "2026-05-01", pid)
    assert (seen["tier"], seen["credit"], seen["measure"]) == ("radiant", 1000, "points")


# --- 3. downgrade policies -----------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "in_2028", "in_2029", "why"), [
    ("qualified", "blush", "blush", "not requalified"),
    ("one_level", "glow", "blush", "one level down"),
    ("hold_next_period", "blush", "blush", "not requalified"),
])
def test_downgrade_policies_on_calendar_years(engine: Engine, tmp_path: Path, policy: str,
                                              in_2028: str, in_2029: str, why: str) -> None:
    pid = ladder(engine, tmp_path, downgrade=policy)
    # M-1 enrols at Radiant in 2026 (1,200 euros) and spends nothing afterwards.
    gb(engine, "D1", "2026-03-01", "1200.00")
    # M-2 likewise, but spends 400 in 2027: Glow for 2028 under every policy.
    gb(engine, "E1", "2026-03-01", "1200.00", member="M-2")
    gb(engine, "E2", "2027-03-01", "400.00", member="M-2")

    # 1 Jan 2027 judges 2026 (120,000): both keep Radiant.
    review(engine, "2027-01-01", pid)
    assert tier(engine, "M-1", "2027-01-01", pid) == "radiant"
    # 1 Jan 2028 judges 2027: M-1 has 0 (qualifies Blush), M-2 40,000 (Glow).
    # qualified: straight to Blush; one_level: Glow; hold_next_period: the hold of a tier
    # reached in 2026 ended on 1 Jan 2028, so straight to Blush.
    review(engine, "2028-01-01", pid)
    assert tier(engine, "M-1", "2028-01-01", pid) == in_2028
    assert tier(engine, "M-2", "2028-01-01", pid) == "glow"
    last = shown(engine, "M-1", "2028-01-01", pid)["history"][-1]
    assert (last["reason"], last["detail"]["why"], last["detail"]["policy"]) == (
        "review", why, policy)
    # 1 Jan 2029 judges 2028: nothing -> one_level takes its second step to Blush.
    review(engine, "2029-01-01", pid)
    assert tier(engine, "M-1", "2029-01-01", pid) == in_2029
    assert tier(engine, "M-2", "2029-01-01", pid) == "blush"  # from Glow, nothing in 2028
    expected: History = [("", "radiant", "enrolment"), ("radiant", in_2028, "review")]
    if in_2029 != in_2028:
        expected.append((in_2028, in_2029, "review"))
    assert history(engine, "M-1", pid) == expected


def test_hold_next_period_on_a_rolling_window(engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window=3, downgrade="hold_next_period")

    # 5 Feb: 100 euros -> Blush; 10 Feb: 300 more -> Glow, reached in the month of Feb:
    # held until the end of the 3 months after it: 1 Jun.
    gb(engine, "H1", "2026-02-05", "100.00")
    gb(engine, "H2", "2026-02-10", "300.00")
    seen = shown(engine, "M-1", "2026-02-10", pid)
    assert (seen["tier"], seen["held_until"]) == ("glow", date(2026, 6, 1))

    # Reviews 1 Mar, 1 Apr, 1 May judge windows that hold February's 40,000: Glow
    # confirmed each time, the hold renewed from the window judged: confirmed in
    # [Feb, May) on 1 May -> held until 1 Aug.
    for day, held in [("2026-03-01", date(2026, 6, 1)), ("2026-04-01", date(2026, 7, 1)),
                      ("2026-05-01", date(2026, 8, 1))]:
        done = review(engine, day, pid)
        assert done.held == {pid: 0} and done.downgraded == {pid: 0}
        assert shown(engine, "M-1", day, pid)["held_until"] == held, day

    # Before 1 Jun: the window [1 Mar, 1 Jun) is empty, but the hold lasts past the
    # review: not at risk.
    assert at_risk(engine, at("2026-05-15"), program_id=pid) == []

    # 1 Jun and 1 Jul judge nothing (qualified: Blush) but the hold lasts: Glow, "held".
    for day in ["2026-06-01", "2026-07-01"]:
        done = review(engine, day, pid)
        assert done.held == {pid: 1} and done.downgraded == {pid: 0}, day
        assert tier(engine, "M-1", day, pid) == "glow"
    # Now the next review (1 Aug) is where the hold ends: at risk.
    [risk] = at_risk(engine, at("2026-07-15"), program_id=pid)
    assert (risk["member_id"], risk["tier"], risk["would_drop_to"]) == ("M-1", "glow",
                                                                        "blush")
    assert (risk["review_day"], risk["credit"], risk["lacks"]) == (date(2026, 8, 1), 0, 35000)
    assert risk["window"] == [date(2026, 5, 1), date(2026, 8, 1)]
    # 1 Aug: the hold has ended -> Blush.
    done = review(engine, "2026-08-01", pid)
    assert done.held == {pid: 0} and done.downgraded == {pid: 1}
    assert tier(engine, "M-1", "2026-08-01", pid) == "blush"
    assert history(engine, "M-1", pid) == [("", "blush", "enrolment"),
                                           ("blush", "glow", "upgrade"),
                                           ("glow", "blush", "review")]


def test_review_run_late_keeps_an_upgrade_made_after_the_review_day_began(
        engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, downgrade="qualified")
    gb(engine, "L1", "2026-03-01", "100.00")  # 2026: 10,000 -> Blush
    # The first shop of 2027, at noon on 1 January: 120,000 this year -> Radiant at once.
    gb(engine, "L2", "2027-01-01", "1200.00")
    assert tier(engine, "M-1", "2027-01-01", pid) == "radiant"
    # The nightly job runs the 1 January review that evening. The review (as of midnight)
    # judges 2026: Blush was the tier then, and stays Blush; the upgrade at noon stands.
    review_tiers(engine, at("2027-01-01T18:00:00+01:00"), RECORDED_AT, program_id=pid)
    seen = shown(engine, "M-1", "2027-01-01T18:00:00+01:00", pid)
    assert (seen["credit"], seen["tier"]) == (120000, "radiant")


def test_catch_up_keeps_an_upgrade_made_after_the_missed_reviews(engine: Engine,
                                                                 tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window=3, downgrade="qualified")
    gb(engine, "K1", "2026-01-05", "400.00")  # Glow at enrolment
    review(engine, "2026-02-01", pid)  # [1 Nov, 1 Feb): 40,000 -> Glow
    # 10 May: 1,000 euros; [11 Feb, 11 May) holds 100,000 -> Radiant at once.
    gb(engine, "K2", "2026-05-10", "1000.00")
    assert tier(engine, "M-1", "2026-05-10", pid) == "radiant"
    # The missed reviews: 1 Mar and 1 Apr see 40,000 (Glow, as the member was then), 1 May
    # sees [1 Feb, 1 May) = 0 -> Blush; then on 10 May the purchase made it Radiant.
    review(engine, "2026-05-15", pid)
    assert tier(engine, "M-1", "2026-05-15", pid) == "radiant"
    assert ("radiant", "glow", "review") not in history(engine, "M-1", pid)


# --- 4. catch-up ---------------------------------------------------------------------------------

def test_missed_reviews_are_caught_up_in_order_each_once(engine: Engine,
                                                         tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, window=3, downgrade="one_level")

    # M-1 enrols on 5 Jan at Radiant (1,200 euros) and buys nothing more.
    gb(engine, "C1", "2026-01-05", "1200.00")
    # Reviews run until 1 Mar: 1 Feb [1 Nov, 1 Feb) and 1 Mar [1 Dec, 1 Mar): 120,000.
    assert review(engine, "2026-03-01", pid).review_days == {pid: ["2026-02-01",
                                                                   "2026-03-01"]}
    # M-2 enrols on 10 Mar at Glow (400 euros).
    gb(engine, "C2", "2026-03-10", "400.00", member="M-2")
    before = history_rows(engine)

    # No review is run for three months. On 15 Jun the missed ones are applied in order:
    # M-1: 1 Apr [1 Jan, 1 Apr): 120,000 -> Radiant; 1 May [1 Feb, 1 May): 0 -> one level
    # down, Glow; 1 Jun [1 Mar, 1 Jun): 0 -> Blush. Applied at once it would be one step.
    # M-2: 1 Apr, 1 May, 1 Jun each see its 40,000 -> Glow.
    caught = review(engine, "2026-06-15", pid)
    assert caught.review_days == {pid: ["2026-04-01", "2026-05-01", "2026-06-01"]}
    assert caught.reviewed == {pid: 6}
    assert caught.downgraded == {pid: 2} and caught.upgraded == {pid: 0}
    assert tier(engine, "M-1", "2026-06-15", pid) == "blush"
    assert tier(engine, "M-2", "2026-06-15", pid) == "glow"
    changes = [h for h in shown(engine, "M-1", "2026-06-15", pid)["history"]
               if h["reason"] == "review"]
    assert [(h["from"], h["to"], h["changed_at"], h["detail"]["review_day"])
            for h in changes] == [
        ("radiant", "glow", midnight("2026-05-01"), "2026-05-01"),
        ("glow", "blush", midnight("2026-06-01"), "2026-06-01"),
    ]
    assert history_rows(engine) == before + 2

    # Running it again (same day or later in the month) changes nothing.
    for day in ["2026-06-15", "2026-06-30"]:
        again = review(engine, day, pid)
        assert again.reviewed == {pid: 0} and again.review_days == {pid: []}
        assert history_rows(engine) == before + 2
    assert tier(engine, "M-1", "2026-06-30", pid) == "blush"
    assert shown(engine, "M-1", "2026-06-30", pid)["next_review"] == date(2026, 7, 1)


# --- 5. refunds ----------------------------------------------------------------------------------

def test_immediate_refund_drops_the_tier_at_once(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # 200 + 200 = 400 -> Glow with the second purchase (both earn 200 at Blush).
    gb(engine, "T1", "2026-03-01", "200.00")
    assert gb(engine, "T2", "2026-03-02", "200.00").points == 200
    assert tier(engine, "M-1", "2026-03-02", gbp) == "glow"

    # Half of T2 back: 30,000 left, under 35,000 -> Blush at once; 100 of T2's points back.
    back = give_back(engine, "R1", "T2", "2026-03-10", "100.00")
    assert back.tiers == {gbp: "blush"} and back.points == {gbp: 100}
    seen = shown(engine, "M-1", "2026-03-10", gbp)
    assert (seen["tier"], seen["credit"]) == ("blush", 30000)
    last = seen["history"][-1]
    assert (last["from"], last["to"], last["reason"]) == ("glow", "blush", "refund")
    assert last["detail"]["credit"] == 30000
    # 60 euros at Blush rates (60 points) take the year to 36,000: Glow again.
    assert gb(engine, "T3", "2026-03-15", "60.00").points == 60
    assert tier(engine, "M-1", "2026-03-15", gbp) == "glow"
    # A refund that leaves exactly 35,000 changes nothing (10 of T3's points back) ...
    back = give_back(engine, "R2", "T3", "2026-03-20", "10.00")
    assert back.tiers == {} and back.points == {gbp: 10}
    assert tier(engine, "M-1", "2026-03-20", gbp) == "glow"
    # ... one cent more and the year is under 350.00 again: Blush.
    assert give_back(engine, "R3", "T1", "2026-03-21", "0.01").tiers == {gbp: "blush"}
    assert shown(engine, "M-1", "2026-03-21", gbp)["credit"] == 34999
    assert [h[2] for h in history(engine, "M-1", gbp)] == [
        "enrolment", "upgrade", "refund", "upgrade", "refund"]
    assert_ledger_exact(engine)


def test_immediate_refund_never_goes_below_the_last_reviewed_tier(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # 2026: 200 + 200 -> Glow. The review on 1 Jan 2027 confirms Glow (40,000).
    gb(engine, "T1", "2026-03-01", "200.00")
    gb(engine, "T2", "2026-03-02", "200.00")
    review(engine, "2027-01-01", gbp)
    # 2027: 1,100 euros -> Radiant at once (earns 1,375 at Glow).
    assert gb(engine, "T3", "2027-02-01", "1100.00").points == 1375
    assert tier(engine, "M-1", "2027-02-01", gbp) == "radiant"
    # All of it back: 2027 credit 0 qualifies Blush, but the reviewed tier is Glow.
    back = give_back(engine, "R1", "T3", "2027-02-10", "1100.00")
    assert back.tiers == {gbp: "glow"} and back.points == {gbp: 1375}
    seen = shown(engine, "M-1", "2027-02-10", gbp)
    assert (seen["tier"], seen["credit"]) == ("glow", 0)
    assert history(engine, "M-1", gbp)[-1] == ("radiant", "glow", "refund")
    assert_ledger_exact(engine)


def test_refund_fallback_keeps_the_reviewed_tiers_own_hold(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # Glow confirmed by the 1 Jan 2027 review for 2026 spend: held through 2027.
    gb(engine, "T1", "2026-03-01", "200.00")
    gb(engine, "T2", "2026-03-02", "200.00")
    review(engine, "2027-01-01", gbp)
    assert shown(engine, "M-1", "2027-01-01", gbp)["held_until"] == date(2028, 1, 1)
    # Radiant reached in 2027, then refunded in full: back to Glow, with Glow's hold.
    gb(engine, "T3", "2027-02-01", "1100.00")
    give_back(engine, "R1", "T3", "2027-02-10", "1100.00")
    held_after_refund = shown(engine, "M-1", "2027-02-10", gbp)["held_until"]
    # 1 Jan 2028 judges 2027: nothing left -> Blush (Glow's hold ended that day).
    # Actual: the review counts M-1 as "held" and keeps Glow, held until 1 Jan 2029.
    done = review(engine, "2028-01-01", gbp)
    assert (done.held, tier(engine, "M-1", "2028-01-01", gbp)) == ({gbp: 0}, "blush")
    assert held_after_refund == date(2028, 1, 1)


def test_immediate_refund_drops_a_tier_reached_on_enrolment(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # One 400-euro purchase: Glow straight away (enrolment).
    gb(engine, "T1", "2026-03-01", "400.00")
    assert history(engine, "M-1", gbp) == [("", "glow", "enrolment")]
    # 100 back: 30,000 left this year, under Glow's 350.00, reached this year -> Blush.
    back = give_back(engine, "R1", "T1", "2026-03-05", "100.00")
    assert back.tiers == {gbp: "blush"}
    assert tier(engine, "M-1", "2026-03-05", gbp) == "blush"


def test_refunds_at_review_wait_for_the_review(engine: Engine, tmp_path: Path) -> None:
    pid = ladder(engine, tmp_path, refunds="at_review", downgrade="qualified")
    gb(engine, "T1", "2026-03-01", "200.00")
    gb(engine, "T2", "2026-03-02", "200.00")  # 40,000 -> Glow
    # Half of T2 back: the tier stays until the review.
    back = give_back(engine, "R1", "T2", "2026-03-10", "100.00")
    assert back.tiers == {} and back.points == {pid: 100}
    seen = shown(engine, "M-1", "2026-03-10", pid)
    assert (seen["tier"], seen["credit"]) == ("glow", 30000)
    assert tier(engine, "M-1", "2026-12-31", pid) == "glow"
    # The review on 1 Jan 2027 judges 2026 with the reduced credit: 30,000 -> Blush.
    assert review(engine, "2027-01-01", pid).downgraded == {pid: 1}
    last = shown(engine, "M-1", "2027-01-01", pid)["history"][-1]
    assert (last["from"], last["to"], last["reason"]) == ("glow", "blush", "review")
    assert last["detail"]["credit"] == 30000
    assert history(engine, "M-1", pid) == [("", "blush", "enrolment"),
                                           ("blush", "glow", "upgrade"),
                                           ("glow", "blush", "review")]


# --- 6. at risk ----------------------------------------------------------------------------------

def test_at_risk_before_the_review(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # Four members reach Glow in 2026 (400 euros), confirmed by the 1 Jan 2027 review.
    for member in ["M-1", "M-2", "M-3", "M-4"]:
        gb(engine, f"{member}-26", "2026-03-01", "400.00", member=member)
    # M-5 stays at Blush (100 euros): nothing to lose.
    gb(engine, "M-5-26", "2026-03-01", "100.00", member="M-5")
    # Before the first review: 2026 holds 40,000 for each Glow member: nobody at risk.
    assert at_risk(engine, at("2026-06-01"), program_id=gbp) == []
    review(engine, "2027-01-01", gbp)

    # 2027: M-1, M-2 and M-3 spend 200 each; M-4 spends 400 (safe).
    for member in ["M-1", "M-2", "M-3"]:
        gb(engine, f"{member}-27", "2027-03-01", "200.00", member=member)
    gb(engine, "M-4-27", "2027-03-01", "400.00", member="M-4")
    # M-2 has a manual Glow floor lasting past the review (to 1 Feb 2028): protected.
    # M-3's floor ends on 1 Dec 2027, before the review: still at risk.
    set_manual_tier(engine, "M-2", "glow", at("2028-02-01"), "complaint", at("2027-05-01"),
                    RECORDED_AT, program_id=gbp)
    set_manual_tier(engine, "M-3", "glow", at("2027-12-01"), "complaint", at("2027-05-01"),
                    RECORDED_AT, program_id=gbp)

    # The review on 1 Jan 2028 judges 2027: 20,000 qualifies Blush; Glow needs 35,000.
    expected = {
        "program_id": gbp, "tier": "glow", "would_drop_to": "blush",
        "review_day": date(2028, 1, 1), "measure": "spend", "credit": 20000,
        "needed": 35000, "lacks": 15000, "window": [date(2027, 1, 1), date(2028, 1, 1)],
        "policy": "hold_next_period",
    }
    found = at_risk(engine, at("2027-06-01"), program_id=gbp)
    assert [r["member_id"] for r in found] == ["M-1", "M-3"]
    for risk in found:
        assert {k: risk[k] for k in expected} == expected
    # After the review the prediction came true for both.
    review(engine, "2028-01-01", gbp)
    assert [tier(engine, m, "2028-01-02", gbp) for m in ["M-1", "M-2", "M-3", "M-4"]] == [
        "blush", "glow", "blush", "glow"]
    assert shown(engine, "M-2", "2028-01-02", gbp)["earned_tier"] == "blush"


# --- 7. manual tier ------------------------------------------------------------------------------

def test_manual_tier_is_a_floor_until_it_expires(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    assert gb(engine, "T1", "2026-03-01", "100.00").points == 100  # Blush
    until = at("2026-09-01T00:00:00+02:00")
    made = set_manual_tier(engine, "M-1", "radiant", until, "VIP event", at("2026-04-01"),
                           RECORDED_AT, program_id=gbp)
    assert (made["tier"], made["earned_tier"], made["manual_tier"]) == ("radiant", "blush",
                                                                        "radiant")
    seen = shown(engine, "M-1", "2026-05-01", gbp)
    assert (seen["tier"], seen["earned_tier"]) == ("radiant", "blush")
    assert (seen["manual_tier"], seen["manual_until"]) == ("radiant", until)
    assert history(engine, "M-1", gbp)[-1] == ("blush", "radiant", "manual")

    # While it lasts purchases earn at Radiant: 100 x 1.5 = 150; and Radiant-only rules
    # apply: 40 euros of skincare: 60 + the 50-point radiant-skincare bonus.
    assert gb(engine, "T2", "2026-05-01", "100.00").points == 150
    assert gb(engine, "T3", "2026-05-02", "40.00", category="skincare").points == 60 + 50
    # The earned tier is unchanged (24,000 cents this year).
    seen = shown(engine, "M-1", "2026-08-31", gbp)
    assert (seen["tier"], seen["earned_tier"], seen["credit"]) == ("radiant", "blush", 24000)

    # After the expiry the earned tier applies: Blush, x1, no bonus.
    assert tier(engine, "M-1", "2026-09-01", gbp) == "blush"
    assert gb(engine, "T4", "2026-09-05", "50.00").points == 50
    assert gb(engine, "T5", "2026-09-06", "40.00", category="skincare").points == 40
    # 100 + 100 + 40 + 50 + 40 = 330 euros: still Blush.
    assert shown(engine, "M-1", "2026-09-06", gbp)["credit"] == 33000

    # The review on 1 Jan 2027 (33,000: Blush) records the end of the floor.
    done = review(engine, "2027-01-01", gbp)
    assert done.floors_ended == {gbp: 1}
    seen = shown(engine, "M-1", "2027-01-01", gbp)
    assert (seen["tier"], seen["manual_tier"], seen["manual_until"]) == ("blush", None, None)
    assert history(engine, "M-1", gbp) == [("", "blush", "enrolment"),
                                           ("blush", "radiant", "manual"),
                                           ("radiant", "blush", "manual")]
    ended = shown(engine, "M-1", "2027-01-01", gbp)["history"][-1]
    assert ended["changed_at"] == until and ended["detail"]["floor_ended"] == "radiant"
    assert_ledger_exact(engine)


def test_floor_end_history_records_the_tier_at_expiry(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    gb(engine, "T1", "2026-03-01", "100.00")  # Blush
    until = at("2026-09-01T00:00:00+02:00")
    set_manual_tier(engine, "M-1", "radiant", until, "VIP event", at("2026-04-01"),
                    RECORDED_AT, program_id=gbp)
    # After the floor ended: 300 euros take the year to 400 -> Glow on 6 Sep.
    gb(engine, "T2", "2026-09-06", "300.00")
    review(engine, "2027-01-01", gbp)  # Glow confirmed; the floor's end recorded
    # On 1 Sep the floor ended and the member fell to the earned Blush; Glow came on 6 Sep.
    assert history(engine, "M-1", gbp) == [("", "blush", "enrolment"),
                                           ("blush", "radiant", "manual"),
                                           ("radiant", "blush", "manual"),
                                           ("blush", "glow", "upgrade")]


def test_manual_tier_refusals(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gb(engine, "T1", "2026-03-01", "100.00")
    with pytest.raises(TierError):  # until in the past
        set_manual_tier(engine, "M-1", "glow", at("2026-03-01"), "late", at("2026-04-01"),
                        RECORDED_AT, program_id="glow-beauty")
    with pytest.raises(TierError):  # until == at
        set_manual_tier(engine, "M-1", "glow", at("2026-04-01"), "now", at("2026-04-01"),
                        RECORDED_AT, program_id="glow-beauty")
    with pytest.raises(TierError, match="gold"):  # no such tier
        set_manual_tier(engine, "M-1", "gold", at("2026-12-01"), "typo", at("2026-04-01"),
                        RECORDED_AT, program_id="glow-beauty")
    seen = shown(engine, "M-1", "2026-04-01", "glow-beauty")
    assert (seen["tier"], seen["manual_tier"]) == ("blush", None)
    assert history(engine, "M-1", "glow-beauty") == [("", "blush", "enrolment")]


# --- 8. set-based review -------------------------------------------------------------------------

def _bulk_purchases(engine: Engine, first: int, count: int, year: int) -> None:
    """count members (M-first ...), two purchases each in `year`, written in big batches.

    Spends vary: 100 + 100 (Blush), 200 + 200 (Glow), 600 + 600 (Radiant)."""
    amounts = ["100.00", "200.00", "600.00"]
    batch = []
    for n in range(first, first + count):
        amount = amounts[n % 3]
        for k, month in enumerate((3, 9)):
            body = {
                "transaction_id": f"B{year}-{n}-{k}", "store_id": "GB-01",
                "member_id": f"M-{n:05d}",
                "occurred_at": datetime(year, month, 1 + n % 28, 12, tzinfo=PARIS),
                "currency": "EUR", "total": amount,
                "items": [{"sku": "SKU", "category": "makeup", "quantity": "1",
                           "unit_price": amount}],
            }
            batch.append((len(batch), PurchaseEvent.model_validate(body).to_purchase()))
    with write_transaction(engine) as conn:
        writer = PurchaseWriter(conn, load_catalog(conn), RECORDED_AT)
        for start in range(0, len(batch), 2000):
            result = writer.write(batch[start:start + 2000])
            assert result.rejections == []



def test_review_statements_do_not_grow_with_members(engine: Engine) -> None:
    apply_files(engine, GLOW)
    gbp = "glow-beauty"
    # 200 members buy in 2026; the review on 1 Jan 2027 reviews 200.
    _bulk_purchases(engine, 0, 200, 2026)
    with statements(engine) as small:
        done = review(engine, "2027-01-01", gbp)
    assert (done.reviewed, done.downgraded) == ({gbp: 200}, {gbp: 0})

    # 1,800 more buy in 2027; the review on 1 Jan 2028 reviews all 2,000 (the first 200
    # judged on an empty 2027: their 2026 holds end that day, so they drop to Blush).
    _bulk_purchases(engine, 200, 1800, 2027)
    started = time.perf_counter()
    with statements(engine) as large:
        done = review(engine, "2028-01-01", gbp)
    took = time.perf_counter() - started
    # Of the first 200, 67 Glow (n % 3 == 1) and 66 Radiant (n % 3 == 2) drop to Blush.
    assert (done.reviewed, done.downgraded) == ({gbp: 2000}, {gbp: 133})
    # Counted: statements sent through SQLAlchemy (the catalog, the tier_status read, one
    # GROUP BY of credit, one executemany UPDATE). The history rows go through
    # store.bulk.insert_rows on the raw DBAPI cursor, which this event does not see.
    assert len(small) > 0
    assert len(large) == len(small), (small, large)
    assert took < 30
    # Spot checks: member 1 (1 % 3 == 1: 2 x 200) was Glow in 2026, nothing in 2027 ->
    # Blush; member 1999 (2 x 200 in 2027) -> Glow; member 200 (2 x 600 in 2027) -> Radiant.
    assert tier(engine, "M-00001", "2028-01-01", gbp) == "blush"
    assert tier(engine, "M-01999", "2028-01-01", gbp) == "glow"
    assert tier(engine, "M-00200", "2028-01-01", gbp) == "radiant"
