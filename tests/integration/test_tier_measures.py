"""Tier measures of issue 16 through purchases and refunds on both databases: distinct days
(a day goes only when all its purchases are refunded), a quantity of items, all: of two
measures, and a rolling window reviewed quarterly with catch-up. Figures by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from loyalty_engine.services.tiers import at_risk, review_tiers, show_tiers

from .walk import apply_text, at, buy, counter_total, refund, tier_of

HEAD = """\
program: bakery
name: Bakery
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude:
  categories: [deposit]
tiers:
  measure: {measure}
  window: {window}
  downgrade: qualified
  refunds: immediate
  levels:
{levels}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""

BREAD = ("BREAD", "bread", "1", "3.00")
CAKE = ("CAKE", "cake", "1", "20.00")


def program(tmp_path: Path, engine: Engine, measure: str, levels: str,
            window: str = "calendar_year") -> None:
    apply_text(engine, tmp_path, HEAD.format(measure=measure, window=window, levels=levels))


def test_days_count_distinct_local_days(engine: Engine, tmp_path: Path) -> None:
    program(tmp_path, engine, "days",
            "    - {id: regular, threshold: 0}\n    - {id: friend, threshold: 3}\n")
    buy(engine, "T1", "2026-03-02", [BREAD])
    buy(engine, "T2", "2026-03-02T18:00:00+01:00", [BREAD])  # the same day: still 1 day
    buy(engine, "T3", "2026-03-03", [("BOTTLE", "deposit", "1", "0.25")])  # no eligible spend
    assert counter_total(engine, "bakery", "*:days") == 2  # two purchases on 2 March
    assert tier_of(engine, "bakery")[0] == "regular"  # 1 day
    buy(engine, "T4", "2026-03-04", [BREAD])
    buy(engine, "T5", "2026-03-05", [BREAD])  # 2, 4, 5 March: 3 days -> friend at once
    assert tier_of(engine, "bakery")[0] == "friend"
    # One of 2 March's purchases refunded in full: that day still has the other.
    refund(engine, "R1", "T1", "2026-03-06", "3.00")
    [shown] = show_tiers(engine, "M-1", at("2026-03-06"))
    assert (shown["credit"], shown["tier"]) == (3, "friend")
    # 5 March's only purchase refunded in full: 2 days left; refunds: immediate drops
    # friend (reached this year) to regular, the enrolment's tier.
    back = refund(engine, "R5", "T5", "2026-03-07", "3.00")
    assert back.tiers == {"bakery": "regular"}
    [shown] = show_tiers(engine, "M-1", at("2026-03-07"))
    assert (shown["credit"], shown["next_tier_short"]) == (2, "1 day short")


def test_a_quantity_refunded_line_by_line(engine: Engine, tmp_path: Path) -> None:
    program(tmp_path, engine, "{quantity: {categories: [cake]}, unit: cakes}",
            "    - {id: fan, threshold: 0}\n    - {id: baker, threshold: 5}\n")
    # 3 cakes and 2 loaves: 3 cakes count (the bread is not selected).
    buy(engine, "T1", "2026-05-01", [("CAKE", "cake", "3", "20.00"), BREAD])
    assert counter_total(engine, "bakery", "*:quantity:quantity") == 3000
    buy(engine, "T2", "2026-05-02", [("CAKE", "cake", "2", "20.00")])  # 5 cakes: baker
    assert tier_of(engine, "bakery")[0] == "baker"
    # The bread of T1 comes back: no cake goes with it.
    refund(engine, "R1", "T1", "2026-05-03", "3.00", items=[("BREAD", "1", "3.00")])
    assert counter_total(engine, "bakery", "*:quantity:quantity") == 5000
    assert tier_of(engine, "bakery")[0] == "baker"
    # One cake of T1 (20.00 of its 60.00 of cake): 3 x 20/60 = exactly 1 cake back.
    refund(engine, "R2", "T1", "2026-05-04", "20.00", items=[("CAKE", "1", "20.00")])
    assert counter_total(engine, "bakery", "*:quantity:quantity") == 4000
    assert tier_of(engine, "bakery")[0] == "fan"  # 4 cakes: below baker at once
    [shown] = show_tiers(engine, "M-1", at("2026-05-05"))
    assert shown["next_tier_short"] == "1 cake short"


@pytest.mark.parametrize(
    ("cakes", "spend", "tier"),
    # all: 4 cakes and 100 EUR. Cakes are 20.00: 4 cakes are 80.00, so bread makes up the
    # rest of the spend.
    [("4", "0", "fan"),       # 4 cakes, 80.00: spend short
     ("4", "7", "gourmet"),   # 4 cakes, 80.00 + 7 x 3.00 = 101.00
     ("3", "10", "fan")],     # 3 cakes, 60.00 + 30.00 = 90.00: both short
)
def test_all_needs_every_threshold(engine: Engine, tmp_path: Path, cakes: str, spend: str,
                                   tier: str) -> None:
    program(tmp_path, engine, "{all: {cakes: {quantity: {skus: [CAKE]}}, spend: spend}}",
            "    - {id: fan, thresholds: {cakes: 0, spend: 0}}\n"
            "    - {id: gourmet, thresholds: {cakes: 4, spend: \"100.00\"}}\n")
    items = [("CAKE", "cake", cakes, "20.00")]
    if spend != "0":
        items.append(("BREAD", "bread", spend, "3.00"))
    buy(engine, "T1", "2026-06-01", items)
    assert tier_of(engine, "bakery")[0] == tier


def test_a_quarterly_review_catches_up_in_order(engine: Engine, tmp_path: Path) -> None:
    program(tmp_path, engine, "spend",
            "    - {id: fan, threshold: 0}\n    - {id: gold, threshold: \"50.00\"}\n",
            "{rolling_months: 3, review: quarterly}")
    buy(engine, "T1", "2026-02-10", [CAKE, CAKE, CAKE])  # 60.00: gold at once
    assert tier_of(engine, "bakery")[0] == "gold"
    # Due on 1 April (the 3 months Jan-Mar hold 60.00: gold) and 1 July (Apr-Jun: 0):
    # the member is at risk for the review of 1 April? No: 60.00 >= 50.00.
    assert at_risk(engine, at("2026-03-15")) == []
    # Run late, on 2 July: both reviews, in order: 1 April keeps gold, 1 July drops it.
    result = review_tiers(engine, at("2026-07-02"), at("2026-07-02"))
    assert result.review_days["bakery"] == ["2026-04-01", "2026-07-01"]
    assert (result.reviewed["bakery"], result.downgraded["bakery"]) == (2, 1)
    assert tier_of(engine, "bakery")[0] == "fan"
