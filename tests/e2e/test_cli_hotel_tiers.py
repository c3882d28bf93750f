"""`loyalty tiers show` and `tiers at-risk` on a ladder of two measures (nights OR points,
tests/fixtures/programs/hotel-nights.yaml): what is lacking is said per measure."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.cli import Cli, purchase, write_jsonl

HOTEL = Path(__file__).resolve().parents[1] / "fixtures" / "programs" / "hotel-nights.yaml"


def test_show_and_at_risk_say_what_each_measure_lacks(sqlite_template: Path,
                                                      tmp_path: Path) -> None:
    db = tmp_path / "loyalty.db"
    shutil.copyfile(sqlite_template, db)
    cli = Cli(f"sqlite:///{db}", tmp_path)
    cli.ok("rules", "apply", HOTEL)
    # Ben: 2 nights x 1,200 = 24,000 points at no tier, then 2 nights x 1,500 = 30,000
    # points at Member: 54,000 points reach Gold (50,000) with 4 nights.
    write_jsonl(tmp_path / "stays.jsonl", [
        purchase("B1", "BEN", "2026-02-10T12:00:00+01:00",
                 [("ROOM", "room-night", "2", "1200.00")], "2400.00", store_id="HS-AMS"),
        purchase("B2", "BEN", "2026-04-20T12:00:00+02:00",
                 [("ROOM", "room-night", "2", "1500.00")], "3000.00", store_id="HS-AMS"),
    ])
    cli.ok("purchases", "import", "stays.jsonl")
    shown = cli.ok("tiers", "show", "BEN", "--as-of", "2026-05-01T12:00:00+02:00").out_flat
    # Platinum lacks 50 - 4 = 46 nights, or 100,000 - 54,000 = 46,000 points.
    assert "harbour-stays: gold" in shown
    assert "next tier platinum: 46 nights or 46,000 points short" in shown
    # In 2027 nothing more: the review of 1 January 2028 (after the hold) would drop Ben
    # to Member, short of Gold's 25 nights or 50,000 points.
    risk = cli.ok("tiers", "at-risk", "--as-of", "2027-12-01T12:00:00+01:00").out_flat
    assert "BEN" in risk and "25 nights or 50,000 points short" in risk, risk
    rows = cli.json("tiers", "at-risk", "--as-of", "2027-12-01T12:00:00+01:00")
    assert [(r["member_id"], r["lacking"]) for r in rows] == [
        ("BEN", {"nights": 25000, "points": 50000})]
