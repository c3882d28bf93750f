"""A year (and the next) at a hotel program: nights from multi-night stay lines, points,
tiers on nights OR points, a cancelled stay, and the year-end reviews, on both databases.

The program is tests/fixtures/programs/hotel-nights.yaml: 10 points per euro of room spend,
5 per euro of dining, city tax excluded; Silver 10 nights or 25,000 points, Gold 25 or
50,000, Platinum 50 or 100,000 in the calendar year; Silver x1.1, Gold x1.25, Platinum
x1.5; status held through the following year; refunds judged at the review. Every figure
is worked out by hand in the comments.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from loyalty_engine.services.tiers import at_risk, review_tiers, show_tiers

from .walk import HOTEL, apply_files, assert_ledger_exact, at, buy, counter_total, points, tier_of
from .walk import refund as refund_stay

P = "harbour-stays"
NIGHTS = "*:quantity:nights"


def stay(engine: Engine, tx: str, when: str, guest: str, nights: int, rate: str,
         dining: str | None = None) -> int:
    """A stay: one room-night line of quantity `nights`, city tax (3.50 a night, excluded)
    and an optional restaurant bill; returns the points it earned."""
    items = [("ROOM", "room-night", str(nights), rate),
             ("CITY-TAX", "city-tax", str(nights), "3.50")]
    if dining is not None:
        items.append(("DINNER", "dining", "1", dining))
    return buy(engine, tx, when, items, member=guest, store="HS-AMS").points


def test_a_year_of_stays(engine: Engine) -> None:
    apply_files(engine, HOTEL)

    # --- Anna: a business traveller who qualifies on nights -------------------------------
    # 12 Jan: 3 nights x 150 = 450 room -> 4,500 points, dinner 40 x 5 = 200: 4,700 at no
    # tier yet (her first stay makes her Member: 3 nights, 4,700 points).
    assert stay(engine, "A1", "2026-01-12", "ANNA", 3, "150.00", "40.00") == 4700
    assert tier_of(engine, P, "ANNA") == ("member", "2028-01-01")
    assert counter_total(engine, P, NIGHTS, "ANNA") == 3000  # nights in thousandths
    # 2 Mar: 7 nights x 150 = 1,050 -> 10,500 at Member; 3 + 7 = 10 nights: Silver at once
    # (15,200 points would not be).
    assert stay(engine, "A2", "2026-03-02", "ANNA", 7, "150.00") == 10500
    assert tier_of(engine, P, "ANNA") == ("silver", "2028-01-01")
    # 4 May: 10 nights x 150 = 1,500 x 10 x 1.1 = 16,500; 20 nights, 31,700 points: still
    # Silver (Gold needs 25 nights or 50,000 points).
    assert stay(engine, "A3", "2026-05-04", "ANNA", 10, "150.00") == 16500
    assert tier_of(engine, P, "ANNA")[0] == "silver"
    # 15 Jun: 5 nights x 160 = 800 x 10 x 1.1 = 8,800 at Silver; 25 nights: Gold.
    assert stay(engine, "A4", "2026-06-15", "ANNA", 5, "160.00") == 8800
    assert tier_of(engine, P, "ANNA") == ("gold", "2028-01-01")
    # 7 Sep: 4 nights x 150 = 600 x 10 x 1.25 = 7,500 at Gold: 29 nights, 48,000 points.
    assert stay(engine, "A5", "2026-09-07", "ANNA", 4, "150.00") == 7500
    # 4,700 + 10,500 + 16,500 + 8,800 + 7,500 = 48,000
    assert points(engine, P, "ANNA") == (48000, 0)
    assert counter_total(engine, P, NIGHTS, "ANNA") == 29000
    assert counter_total(engine, P, "*:points", "ANNA") == 48000

    # --- Ben: few nights in suites, qualifies on points -----------------------------------
    # 10 Feb: 2 nights x 1,200 = 2,400 -> 24,000 points: Member (2 nights, 24,000 points).
    assert stay(engine, "B1", "2026-02-10", "BEN", 2, "1200.00") == 24000
    assert tier_of(engine, P, "BEN")[0] == "member"
    # 20 Apr: 1 night x 1,500 -> 15,000, dinner 200 x 5 = 1,000: 16,000 at Member;
    # 40,000 points reach Silver's 25,000 (3 nights would not).
    assert stay(engine, "B2", "2026-04-20", "BEN", 1, "1500.00", "200.00") == 16000
    assert tier_of(engine, P, "BEN")[0] == "silver"
    # 1 Aug: 2 nights x 500 = 1,000 x 10 x 1.1 = 11,000; 51,000 points: Gold on points
    # with 5 nights.
    assert stay(engine, "B3", "2026-08-01", "BEN", 2, "500.00") == 11000
    assert tier_of(engine, P, "BEN") == ("gold", "2028-01-01")
    assert points(engine, P, "BEN") == (51000, 0)  # 24,000 + 16,000 + 11,000
    # What Platinum lacks: 50 - 5 = 45 nights, or 100,000 - 51,000 = 49,000 points.
    [shown] = show_tiers(engine, "BEN", at("2026-09-01"))
    assert (shown["tier"], shown["next_tier"]) == ("gold", "platinum")
    assert shown["credits"] == {"nights": 5000, "points": 51000}
    assert shown["lacking"] == {"nights": 45000, "points": 49000}
    assert shown["next_tier_short"] == "45 nights or 49,000 points short"

    # --- Cara: a stay cut short -----------------------------------------------------------
    # 16 Mar: 6 nights x 100 = 600 -> 6,000 points: Member (6 nights).
    assert stay(engine, "C1", "2026-03-16", "CARA", 6, "100.00") == 6000
    # 18 May: 5 nights x 100 = 500 -> 5,000 at Member; 11 nights: Silver.
    assert stay(engine, "C2", "2026-05-18", "CARA", 5, "100.00") == 5000
    assert tier_of(engine, P, "CARA") == ("silver", "2028-01-01")
    # 20 May: she leaves after 3 of the 5 nights: 2 room nights (200.00) are refunded.
    # Points back: 5,000 x 200 / 500 = 2,000; nights back: exactly the 2 refunded.
    back = refund_stay(engine, "RC2", "C2", "2026-05-20", "200.00", store="HS-AMS",
                       items=[("ROOM", "2", "200.00")])
    assert back.points == {P: 2000}
    assert counter_total(engine, P, NIGHTS, "CARA") == 9000  # 6 + 5 - 2 = 9 nights
    assert counter_total(engine, P, "*:points", "CARA") == 9000  # 6,000 + 5,000 - 2,000
    assert points(engine, P, "CARA") == (9000, 0)
    # refunds: at_review: she keeps Silver until a review judges the 9 nights.
    assert tier_of(engine, P, "CARA")[0] == "silver"
    assert back.tiers == {}

    # --- The review of 1 January 2027 -----------------------------------------------------
    result = review_tiers(engine, at("2027-01-02"), at("2027-01-02"), P)
    assert result.review_days[P] == ["2027-01-01"]
    # Anna: 29 nights (Gold: 25) and Ben: 51,000 points (Gold: 50,000) requalify, their
    # hold renewed from 2026: through 2027 (held until 1 Jan 2028). Cara: 9 nights and
    # 9,000 points qualify for Member only, but Silver reached in 2026 holds through 2027.
    assert tier_of(engine, P, "ANNA") == ("gold", "2028-01-01")
    assert tier_of(engine, P, "BEN") == ("gold", "2028-01-01")
    assert tier_of(engine, P, "CARA") == ("silver", "2028-01-01")
    assert (result.reviewed[P], result.held[P], result.downgraded[P]) == (3, 1, 0)

    # --- 2027 ------------------------------------------------------------------------------
    # 1 Feb 2027: Anna, 3 nights x 150 = 450 x 10 x 1.25 = 5,625 at Gold.
    assert stay(engine, "A6", "2027-02-01", "ANNA", 3, "150.00") == 5625
    assert points(engine, P, "ANNA") == (53625, 0)  # 48,000 + 5,625
    # 1 Dec 2027: who drops at the review of 1 January 2028 (their hold ends then)?
    risky = {r["member_id"]: r for r in at_risk(engine, at("2027-12-01"), P)}
    assert sorted(risky) == ["ANNA", "BEN", "CARA"]
    # Anna keeps Gold with 25 - 3 = 22 more nights or 50,000 - 5,625 = 44,375 points.
    assert risky["ANNA"]["short"] == "22 nights or 44,375 points short"
    assert risky["ANNA"]["lacking"] == {"nights": 22000, "points": 44375}
    assert risky["ANNA"]["would_drop_to"] == "member"
    assert risky["BEN"]["short"] == "25 nights or 50,000 points short"
    assert risky["CARA"]["short"] == "10 nights or 25,000 points short"
    assert risky["CARA"]["review_day"] == date(2028, 1, 1)

    # The review of 1 January 2028: the holds are over; 2027's credit (Anna: 3 nights,
    # 5,625 points; Ben and Cara nothing) qualifies everyone for Member only, which holds
    # through 2028 (until 1 Jan 2029) like any tier a year's credit reached.
    result = review_tiers(engine, at("2028-01-02"), at("2028-01-02"), P)
    assert result.review_days[P] == ["2028-01-01"]
    assert tier_of(engine, P, "ANNA") == ("member", "2029-01-01")
    assert tier_of(engine, P, "BEN") == ("member", "2029-01-01")
    assert tier_of(engine, P, "CARA") == ("member", "2029-01-01")
    assert (result.reviewed[P], result.downgraded[P]) == (3, 3)
    # Points are a balance, not status: nobody loses any.
    assert [points(engine, P, g)[0] for g in ("ANNA", "BEN", "CARA")] == [53625, 51000, 9000]
    assert_ledger_exact(engine)
