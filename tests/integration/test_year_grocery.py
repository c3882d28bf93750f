"""A year at Harvest Grocery (tests/fixtures/programs/grocery-year.yaml) on both databases:
one shopper keeps shopping, one stops. Every balance is worked out by hand in the comments.

The program: 1 point per euro (rounded down); 50 points on the 4th shop of a calendar month;
points last to the end of the sixth month after the month of earning; the whole balance
lapses 4 months after the last earning or redemption. Amsterdam: a bare date is 12:00 +01:00
(walk.at), i.e. 12:00 CET in winter and 13:00 CEST in summer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import RedemptionRejectedError
from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.notices import send_notices
from loyalty_engine.services.outbox import list_events
from loyalty_engine.services.points import StepResult

from .walk import GROCERY_YEAR, apply_files, assert_ledger_exact, at, buy, points, shown, spend

HG = "harvest-grocery"
NOW = datetime(2027, 6, 1, tzinfo=UTC)


def _shop(engine: Engine, tid: str, when: str, euros: str, member: str) -> int:
    return buy(engine, tid, when, [("BASKET", "groceries", "1", euros)], member=member,
               store="HG-01").points


def test_a_year_of_two_shoppers_one_keeps_shopping_one_stops(engine: Engine) -> None:
    apply_files(engine, GROCERY_YEAR)

    # --- Anna keeps shopping ---------------------------------------------------------------
    assert _shop(engine, "A01", "2026-01-10", "45.60", "M-A") == 45   # floor(45.60)
    assert _shop(engine, "A02", "2026-02-10", "30.00", "M-A") == 30
    # Four shops in March: 20 each, and the 4th earns 50 more.
    assert [_shop(engine, f"A03-{d}", f"2026-03-{d}", "20.00", "M-A")
            for d in ("02", "09", "16", "23")] == [20, 20, 20, 70]
    assert _shop(engine, "A04", "2026-04-10", "55.99", "M-A") == 55
    assert _shop(engine, "A05", "2026-05-10", "40.00", "M-A") == 40
    assert _shop(engine, "A06", "2026-06-10", "25.50", "M-A") == 25
    # 45 + 30 + 130 + 55 + 40 + 25 = 325.
    assert shown(engine, "2026-06-14", HG, "M-A") == (325, 0)
    # 15 June: 100 points redeemed, oldest first: January 45, February 30, 2 March 20, and
    # 5 of 9 March's 20. 325 - 100 = 225.
    spend(engine, "RA-1", "2026-06-15", HG, member="M-A", points=100)
    assert shown(engine, "2026-06-15", HG, "M-A") == (225, 0)

    # --- Ben stops in March ----------------------------------------------------------------
    assert _shop(engine, "B01", "2026-01-20", "80.00", "M-B") == 80
    assert _shop(engine, "B02", "2026-02-20", "64.50", "M-B") == 64
    assert [_shop(engine, f"B03-{d}", f"2026-03-{d}", "10.00", "M-B")
            for d in ("03", "06", "10", "15")] == [10, 10, 10, 60]
    # 80 + 64 + 90 = 234. His last activity: 15 March 12:00 CET; 4 months later, the same
    # local time: 15 July 12:00 CEST (10:00 UTC), before any of his points' own expiry
    # (January's: end of July).
    assert shown(engine, "2026-06-20", HG, "M-B") == (234, 0)

    # 20 June: notices 30 days ahead. Ben's balance will lapse on 15 July; Anna's deadline
    # is 15 October (4 months after her redemption) and her oldest lot with points left
    # (9 March) lasts to the end of September: nothing for her yet.
    assert send_notices(engine, at("2026-06-20"), NOW, days=30).recorded == {
        "balance_lapsing_soon": 1}
    [warning] = [e for e in list_events(engine, 0, 1000) if e["kind"] == "balance_lapsing_soon"]
    assert (warning["member_id"], warning["data"]) == (
        "M-B", {"points": 234, "lapses_at": "2026-07-15T10:00:00+00:00"})

    assert _shop(engine, "A07", "2026-07-10", "60.00", "M-A") == 60
    assert shown(engine, "2026-07-15T11:59:00+02:00", HG, "M-B") == (234, 0)
    assert shown(engine, "2026-07-15T12:00:00+02:00", HG, "M-B") == (0, 0)
    # 20 July: Ben comes to redeem; nothing is left (the expire job has not run).
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        spend(engine, "RB-1", "2026-07-20", HG, member="M-B", points=100)
    assert points(engine, HG, "M-B") == (234, 0)  # the cached row: nothing recorded yet

    # The nightly job of 16 July records Ben's lapse: his 7 lots, 234 points. Anna has
    # nothing due (her January lot, empty anyway, goes at the end of July).
    done = expire_due(engine, at("2026-07-16"), NOW)
    lapse = datetime(2026, 7, 15, 10, tzinfo=UTC)
    assert done.points == StepResult(7, 234, 1, {HG: 234}, {("M-B", HG, lapse): 234})
    assert points(engine, HG, "M-B") == (0, 0)
    # 225 + 60 = 285 on 31 July; unchanged on 1 August (January's lot had nothing left).
    assert shown(engine, "2026-07-31", HG, "M-A") == (285, 0)
    assert shown(engine, "2026-08-01", HG, "M-A") == (285, 0)

    assert _shop(engine, "A08", "2026-08-10", "35.00", "M-A") == 35
    assert _shop(engine, "A09", "2026-09-10", "50.00", "M-A") == 50
    # 285 + 35 + 50 = 370 on 30 September; March's lots (15 + 20 + 20 + 50 = 105 left) last
    # to the end of September: 370 - 105 = 265 on 1 October, no job run.
    assert shown(engine, "2026-09-30", HG, "M-A") == (370, 0)
    assert shown(engine, "2026-10-01", HG, "M-A") == (265, 0)
    assert _shop(engine, "A10", "2026-10-10", "20.00", "M-A") == 20
    # 265 + 20 = 285; April's 55 go at the end of October: 230 on 1 November.
    assert shown(engine, "2026-10-31", HG, "M-A") == (285, 0)
    assert shown(engine, "2026-11-01", HG, "M-A") == (230, 0)

    # Ben comes back in November: 22 new points; the 234 that lapsed do not come back.
    assert _shop(engine, "B11", "2026-11-05", "22.00", "M-B") == 22
    assert shown(engine, "2026-11-05", HG, "M-B") == (22, 0)

    assert _shop(engine, "A11", "2026-11-10", "45.00", "M-A") == 45
    # 230 + 45 = 275; May's 40 go at the end of November: 235.
    assert shown(engine, "2026-12-01", HG, "M-A") == (235, 0)
    assert _shop(engine, "A12", "2026-12-10", "30.00", "M-A") == 30
    # 235 + 30 = 265 on 31 December; June's 25 go at the end of December: 240.
    assert shown(engine, "2026-12-31", HG, "M-A") == (265, 0)
    assert shown(engine, "2027-01-01", HG, "M-A") == (240, 0)
    assert shown(engine, "2027-01-01", HG, "M-B") == (22, 0)  # November's: end of May 2027

    # The job of 2 January records Anna's expiries: the lots of 9 March (15), 16 March (20),
    # 23 March (20 and 50), April (55), May (40) and June (25): 7 lots, 225 points. Her
    # cached balance: earned 565 (325 + 60 + 35 + 50 + 20 + 45 + 30) - 100 - 225 = 240.
    done = expire_due(engine, at("2027-01-02"), NOW)
    assert done.points == StepResult(7, 225, 1, {HG: 225})
    assert points(engine, HG, "M-A") == (240, 0)
    assert points(engine, HG, "M-B") == (22, 0)
    assert expire_due(engine, at("2027-01-02"), NOW).points == StepResult(0, 0, 0)
    assert [e["member_id"] for e in list_events(engine, 0, 1000)
            if e["kind"] == "balance_lapsed"] == ["M-B"]
    assert_ledger_exact(engine)


def test_twelve_months_of_inactivity_beside_the_sixth_month_rule_is_refused() -> None:
    # Every point has lapsed by the end of its 6th month, long before 12 months without
    # activity can pass: the rule could never act, so the file says what to change.
    text = GROCERY_YEAR.read_text(encoding="utf-8").replace("inactive_months: 4",
                                                            "inactive_months: 12")
    with pytest.raises(ProgramFileError) as refused:
        load_program_text(text, "grocery-year.yaml")
    [problem] = refused.value.problems
    assert str(problem).startswith("grocery-year.yaml:19:")
    assert "inactive_months 12 can never expire anything: with after_months 6" in str(problem)
