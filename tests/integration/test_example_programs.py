"""A year with each shipped example program: every balance, stamp count and voucher checked.

Figures are worked out by hand from the program files (rules/bean-there-coffee.yaml and
rules/fresh-market-grocery.yaml); the comments show the arithmetic.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import RedemptionRejectedError
from loyalty_engine.services.points import activate_pending, expire_points

from .walk import (
    COFFEE,
    GROCERY,
    apply_files,
    assert_ledger_exact,
    at,
    buy,
    points,
    refund,
    spend,
    stamps,
    state,
)

FLAT_WHITE = ("FLAT-WHITE", "coffee", "1", "3.60")
BEANS = ("BEANS-HOUSE-1KG", "coffee-beans", "1", "12.50")


def _vouchers(engine: Engine) -> list[tuple[str, str]]:
    return state(engine)["vouchers"]


def test_a_year_at_the_coffee_chain(engine: Engine) -> None:
    apply_files(engine, COFFEE, GROCERY)

    # Mon 5 Jan: 2 flat whites, 7.20 -> 7 points, pending for 14 days; 2 stamps.
    t01 = buy(engine, "T01", "2026-01-05", [("FLAT-WHITE", "coffee", "2", "3.60")])
    assert t01.points == 7
    # Tue 6 Jan: a flat white and beans: (3.60 + 12.50 x 2 for beans) x 2 on Tuesday = 57.2.
    t02 = buy(engine, "T02", "2026-01-06", [FLAT_WHITE, BEANS])
    assert [(a.rule_id, a.points) for a in t02.awards] == [("points-per-euro", 57)]
    assert points(engine, "bean-there") == (0, 64)  # all pending
    assert stamps(engine) == {"2026-01-05": 2, "2026-01-06": 1}  # beans are not coffee

    # The return window passes: 14 days after each purchase.
    activate_pending(engine, at("2026-01-19T11:59:59+01:00"))
    assert points(engine, "bean-there") == (0, 64)
    activate_pending(engine, at("2026-01-20"))
    assert points(engine, "bean-there") == (64, 0)

    # Mon 2 Feb: 6 cappuccinos, 20.40 -> 20 points; 3 + 6 = 9 stamps fill the card.
    buy(engine, "T03", "2026-02-02", [("CAPPUCCINO", "coffee", "6", "3.40")])
    assert stamps(engine) == {}
    [(card, status)] = _vouchers(engine)
    assert status == "issued" and card.startswith("bean-there-coffee-card-")
    # Tue 3 Feb: 2 espressos, 4.80 x 2 = 9.6 -> 9 points; 2 stamps on a new card.
    buy(engine, "T04", "2026-02-03", [("ESPRESSO", "coffee", "2", "2.40")])
    assert stamps(engine) == {"2026-02-03": 2}

    # Wed 4 Feb: one cappuccino of T03 comes back (1/6): 20 x 1/6 = 3.33 -> 3 points from
    # T03's own pending lot; 6 x 1/6 = 1 stamp. The card T03 filled is voided, its 9
    # stamps return, one goes, and the 10 left fill the card again (9 oldest stamps).
    back = refund(engine, "R1", "T03", "2026-02-04", "3.40",
                  items=[("CAPPUCCINO", "1", "3.40")])
    assert back.points == {"bean-there": 3}
    assert back.vouchers_voided == [card] and len(back.vouchers_reissued) == 1
    assert stamps(engine) == {"2026-02-03": 1}
    assert points(engine, "bean-there") == (64, 17 + 9)
    reissued = back.vouchers_reissued[0]
    assert _vouchers(engine) == sorted([(card, "void"), (reissued, "issued")])

    # The free coffee is used on 10 Feb; a second use is refused.
    spend(engine, "RD-1", "2026-02-10", "bean-there", voucher=reissued)
    with pytest.raises(RedemptionRejectedError, match="redeemed"):
        spend(engine, "RD-2", "2026-02-11", "bean-there", voucher=reissued)
    activate_pending(engine, at("2026-02-20"))
    assert points(engine, "bean-there") == (7 + 57 + 17 + 9, 0)

    # Tue 10 Mar: 4 bags of beans, 50.00 x 2 (beans) x 2 (Tuesday) = 200 points.
    buy(engine, "T05", "2026-03-10", [("BEANS-HOUSE-1KG", "coffee-beans", "4", "12.50")])
    with pytest.raises(RedemptionRejectedError, match="90 spendable points"):
        spend(engine, "RD-3", "2026-03-11", "bean-there", reward="five-euro-off")
    activate_pending(engine, at("2026-03-25"))
    assert points(engine, "bean-there") == (290, 0)
    # Five euros off for 250 points, oldest lots first: 7 + 57 + 17 + 9, then 160 of T05.
    bought = spend(engine, "RD-4", "2026-03-26", "bean-there", reward="five-euro-off")
    assert (bought.points, bought.voucher) == (250, "R-RD-4")
    assert points(engine, "bean-there") == (40, 0)

    # T05 comes back in full on 27 Mar: 200 points, but 160 are spent. The program keeps a
    # negative balance: 40 from T05's lot, and the balance shows -160.
    back = refund(engine, "R2", "T05", "2026-03-27", "50.00")
    assert back.points == {"bean-there": 200} and back.debts == {"bean-there": 160}
    assert points(engine, "bean-there") == (-160, 0)

    # Mon 3 Aug: the stamp of 3 Feb lapsed this morning (6 months); a flat white gives
    # 1 stamp and 3 points, which go to the debt.
    buy(engine, "T06", "2026-08-03", [FLAT_WHITE])
    assert stamps(engine) == {"2026-02-03": 1, "2026-08-03": 1}  # the old one no longer counts
    assert points(engine, "bean-there") == (-157, 0)
    member = state(engine)
    assert sorted(v for _, v in member["vouchers"]) == ["issued", "redeemed", "void"]
    assert_ledger_exact(engine)


def test_a_year_at_the_grocery_chain(engine: Engine) -> None:
    apply_files(engine, COFFEE, GROCERY)
    basket = [("WEEKLY-SHOP", "groceries", "1", "45.00")]

    def shop(tx: str, day: str, amount: str) -> int:
        return buy(engine, tx, day, [("SHOP", "groceries", "1", amount)], store="FM-01").points

    # Five shops in January, 45 euros each: 45 points each; the fifth also earns the
    # fifth-visit bonus (100) and takes the quarter past 200 euros (500).
    for n, day in enumerate(["2026-01-03", "2026-01-10", "2026-01-17", "2026-01-24"], 1):
        assert buy(engine, f"G0{n}", day, basket, store="FM-01").points == 45
    assert buy(engine, "G05", "2026-01-31", basket, store="FM-01").points == 45 + 100 + 500
    assert points(engine, "fresh-market") == (825, 0)
    counters = state(engine)["counters"]
    assert counters[("fresh-market", "fifth-visit:visits", "2026-01")] == 5
    assert counters[("fresh-market", "quarterly-200:spend", "2026-Q1")] == 22500
    assert counters[("fresh-market", "annual-rebate:spend", "2026")] == 22500

    # G05 is refunded in full: all 645 points, the visit, the spend and the award go.
    back = refund(engine, "GR1", "G05", "2026-02-10", "45.00", store="FM-01")
    assert back.points == {"fresh-market": 645}
    assert points(engine, "fresh-market") == (180, 0)
    counters = state(engine)["counters"]
    assert counters[("fresh-market", "fifth-visit:visits", "2026-01")] == 4
    assert ("fresh-market", "quarterly-200:awarded", "2026-Q1") not in counters
    # The quarter reaches 200 euros again with the next shop, which earns the 500.
    assert shop("G06", "2026-02-14", "30.00") == 30 + 500
    assert points(engine, "fresh-market") == (710, 0)

    # May: a 900-euro shop (900 + 500 for Q2), then ten euros off for 1000 points, taken
    # from the oldest lots: 4 x 45, 30, 500, and 290 of the 900.
    assert shop("G07", "2026-05-05", "900.00") == 1400
    spend(engine, "GRD-1", "2026-05-06", "fresh-market", member="M-1", reward="ten-euro-off")
    assert points(engine, "fresh-market") == (1110, 0)
    # G07 is refunded in full: 900 from its own lot (610 left) and 290 from its 500 lot;
    # then the 500 takes the 210 left, and 290 are owed: this program records a debt.
    back = refund(engine, "GR2", "G07", "2026-05-08", "900.00", store="FM-01")
    assert back.points == {"fresh-market": 900 + 210} and back.debts == {"fresh-market": 290}
    assert points(engine, "fresh-market") == (0, 0)

    # New points repay the debt first, each repayment a ledger entry of its own.
    assert shop("G08", "2026-06-01", "100.00") == 100
    assert points(engine, "fresh-market") == (0, 0)
    assert shop("G09", "2026-06-20", "250.00") == 250 + 500
    assert points(engine, "fresh-market") == (750 - 190, 0)
    member = state(engine)
    assert member["counters"][("fresh-market", "annual-rebate:spend", "2026")] == 56000
    assert member["counters"][("fresh-market", "fifth-visit:visits", "2026-06")] == 2
    assert ("fresh-market", "fifth-visit:visits", "2026-05") not in member["counters"]
    assert member["vouchers"] == [("R-GRD-1", "issued")]

    # Points lapse twelve months after they were earned: June's points on 20 June 2027.
    assert expire_points(engine, at("2027-06-20T11:59:59+02:00")).points == 0
    expired = expire_points(engine, at("2027-06-21"))
    assert (expired.points, expired.lots) == (560, 2)
    assert expire_points(engine, at("2027-06-21")).points == 0  # a second run: nothing
    assert points(engine, "fresh-market") == (0, 0)
    assert_ledger_exact(engine)
