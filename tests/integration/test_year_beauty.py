"""A year at a beauty retailer (tests/fixtures/programs/glow-beauty-year.yaml), on SQLite and
PostgreSQL: tiers reached and lost, a birthday-month bonus, a guarded attribute condition
and a bonus written in euros; every balance checked against the arithmetic in the comments.

Points per euro are floor(eligible euros x the tier's multiplier); fixed bonuses are not
multiplied; the purchase that reaches a tier still earns at the tier before it. A refund
takes back each rule's points in proportion to its share of the spend they were earned on.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from loyalty_engine.services.enrolment import enrol_member
from loyalty_engine.services.tiers import show_tiers

from .walk import RECORDED_AT, apply_files, assert_ledger_exact, at, buy, points, refund

PROGRAM = Path(__file__).resolve().parents[1] / "fixtures" / "programs" / "glow-beauty-year.yaml"
GB = "glow-beauty-year"


def gb(engine: Engine, tx: str, day: str, lines: list[tuple[str, str, str, str]],
       member: str) -> int:
    """The points a purchase at a Glow Beauty store earns."""
    return buy(engine, tx, day, lines, member=member, store="GB-PARIS").points


def back(engine: Engine, refund_id: str, tx: str, day: str, amount: str,
         items: list[tuple[str, str, str]] | None = None) -> int:
    """The points a refund takes back."""
    out = refund(engine, refund_id, tx, day, amount, store="GB-PARIS", items=items)
    return out.points.get(GB, 0)


def tier(engine: Engine, member: str, day: str) -> str:
    [found] = show_tiers(engine, member, at(day), program_id=GB)
    name: str = found["tier"]
    return name


SERUM = ("SERUM", "skincare", "1", "45.00")


def test_a_year_at_the_beauty_retailer(engine: Engine) -> None:
    apply_files(engine, PROGRAM)
    # Ana: born in June, sensitive skin. Ben: a date of birth the till typed wrong, and no
    # skin type: his purchases earn no birthday or skin bonus, and none is rejected.
    enrol_member(engine, "ANA", {"date_of_birth": "1990-06-14", "skin_type": "sensitive"},
                 {}, at("2026-01-02"), RECORDED_AT, program_id=GB)
    enrol_member(engine, "BEN", {"date_of_birth": "14/06/1990"}, {}, at("2026-01-02"),
                 RECORDED_AT, program_id=GB)

    # 10 Jan: a 45.00 serum at Blush: 45 x 1 = 45; sensitive skin +20; 45 < 60, no basket.
    assert gb(engine, "A1", "2026-01-10", [SERUM], "ANA") == 45 + 20
    # 20 Feb: two 30.00 lipsticks: 60; a basket of exactly 60 euros +30.
    assert gb(engine, "A2", "2026-02-20", [("LIPSTICK", "makeup", "2", "30.00")],
              "ANA") == 60 + 30
    # 5 Mar: a 50.00 gift card and a 20.00 mascara: only the mascara counts (20 points,
    # 20 euros of spend); 20 eligible euros is no big basket though the total is 70.
    assert gb(engine, "A3", "2026-03-05", [("GIFT-50", "gift-cards", "1", "50.00"),
                                           ("MASCARA", "makeup", "1", "20.00")], "ANA") == 20
    assert points(engine, GB, "ANA") == (65 + 90 + 20, 0)
    assert tier(engine, "ANA", "2026-03-05") == "blush"  # 45 + 60 + 20 = 125 euros

    # 14 Jun, her birthday month: a 250.00 cream takes the year to 375 euros: Glow at once,
    # but it earns at Blush: 250; birthday +100; sensitive skin +20; big basket +30.
    assert gb(engine, "A4", "2026-06-14", [("CREAM", "skincare", "1", "250.00")],
              "ANA") == 250 + 100 + 20 + 30
    assert tier(engine, "ANA", "2026-06-14") == "glow"
    # 28 Jun: a 40.00 palette at Glow: 40 x 1.25 = 50; the June birthday bonus was paid.
    assert gb(engine, "A5", "2026-06-28", [("PALETTE", "makeup", "1", "40.00")],
              "ANA") == 50
    assert points(engine, GB, "ANA") == (175 + 400 + 50, 0)

    # 15 Sep: one lipstick of A2 back (30.00 of its 60.00): half of its 60 per-euro points
    # (30) and half of its 30 basket points (15). The year: 415 - 30 = 385, still Glow.
    assert back(engine, "R1", "A2", "2026-09-15", "30.00",
                [("LIPSTICK", "1", "30.00")]) == 30 + 15
    assert tier(engine, "ANA", "2026-09-15") == "glow"
    assert points(engine, GB, "ANA") == (625 - 45, 0)

    # 1 Oct: two serums (90.00) at Glow: 90 x 1.25 = 112.5 -> 112; +20 skin; +30 basket.
    assert gb(engine, "A6", "2026-10-01", [("SERUM", "skincare", "2", "45.00")],
              "ANA") == 112 + 20 + 30
    # 20 Nov: a 600.00 perfume takes the year to 385 + 90 + 600 = 1,075: Radiant at once;
    # it earns at Glow: 600 x 1.25 = 750; +30 basket.
    assert gb(engine, "A7", "2026-11-20", [("PERFUME", "fragrance", "1", "600.00")],
              "ANA") == 750 + 30
    assert tier(engine, "ANA", "2026-11-20") == "radiant"
    # 10 Dec: a serum at Radiant: 45 x 1.5 = 67.5 -> 67; Radiant skincare of 40+ euros +50;
    # sensitive skin +20; no basket.
    assert gb(engine, "A8", "2026-12-10", [SERUM], "ANA") == 67 + 50 + 20
    assert points(engine, GB, "ANA") == (580 + 162 + 780 + 137, 0)

    # 20 Dec: the perfume back in full: its 780 points; the year falls to 1,120 - 600 = 520,
    # below Radiant's 1,000 reached this year: back to Glow at once.
    assert back(engine, "R2", "A7", "2026-12-20", "600.00") == 780
    assert tier(engine, "ANA", "2026-12-20") == "glow"
    # 22 Dec: a serum at Glow again: 45 x 1.25 = 56.25 -> 56; no Radiant bonus; +20 skin.
    assert gb(engine, "A9", "2026-12-22", [SERUM], "ANA") == 56 + 20
    # 65 + 90 + 20 + 400 + 50 - 45 + 162 + 780 + 137 - 780 + 76 = 955.
    assert points(engine, GB, "ANA") == (955, 0)

    # Ben, 14 Jun: a 50.00 cream. His date of birth is malformed, so his birthday month is
    # 0 and never the purchase's; no skin_type, and the guarded condition is simply false.
    assert gb(engine, "B1", "2026-06-14", [("CREAM", "skincare", "1", "50.00")],
              "BEN") == 50
    # 15 Jul: 70.00 of skincare: 70; +30 basket.
    assert gb(engine, "B2", "2026-07-15", [("CREAM", "skincare", "1", "70.00")],
              "BEN") == 70 + 30
    assert points(engine, GB, "BEN") == (150, 0)
    assert tier(engine, "BEN", "2026-07-15") == "blush"  # 120 euros
    assert_ledger_exact(engine)
