"""Counting rules on SQLite and PostgreSQL: a stamp only for items at or above a price, and
visits as distinct local days, through purchases and refunds. Each case is a program, steps
(a purchase: the points it earns; a refund: the stamps it takes back) and the counters and
vouchers left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from .walk import apply_text, assert_ledger_exact, buy, refund, state

HEAD = """\
program: counting
name: Counting
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rewards:
  - {id: free-coffee, name: Free coffee, kind: free_item, category: coffee}
rules:
"""
LATTE = ("LATTE", "coffee", "1", "3.00")
LATTES = ("LATTE", "coffee", "2", "3.00")
COOKIE = ("COOKIE", "coffee", "1", "1.50")
COOKIES = ("COOKIE", "coffee", "6", "1.50")
WATER = ("WATER", "coffee", "1", "0.00")  # the free drink
CARD = """\
  - id: card
    kind: stamp_card
    stamp_per: {per}
    card_size: {size}
    reward: free-coffee
    min_item_price: "2.00"
"""
VISITS = """\
  - id: third
    kind: nth_visit
    visit: 3
    period: month
    points: 100
"""
DAYS = VISITS + "    count: distinct_days\n"
DAY_CARD = """\
  - id: card
    kind: stamp_card
    stamp_per: visit
    card_size: 3
    reward: free-coffee
    count: distinct_days
"""

Step = tuple[Any, ...]  # ("buy", when, items) or ("refund", transaction, when, amount, items)
# (rules, steps, what each step gives: points a purchase earns / stamps a refund takes back,
#  counters left (name/period -> value, the non-zero ones of these names), vouchers issued)
CASES: dict[str, tuple[str, list[Step], list[int], dict[str, int], int]] = {
    "per item: the free drink and the cookie earn no stamp": (
        CARD.format(per="item", size=3),
        [("buy", "2026-03-02", [LATTE, WATER, COOKIE]),  # 1 stamp: only the latte is 2.00+
         ("buy", "2026-03-03", [WATER]),  # nothing reaches the price
         ("buy", "2026-03-04", [LATTES])],  # 2 more: 3, a full card
        [0, 0, 0], {"card:stamps/2026-03-02": 0, "card:stamps/2026-03-04": 0}, 1),
    "per item: returning the cookies takes no stamp back": (
        CARD.format(per="item", size=9),
        # 2 lattes (6.00) earn 2 stamps; 6 cookies (9.00) earn none.
        [("buy", "2026-03-02", [LATTES, COOKIES]),
         # Shared over the stamped lines only (6.00): the cookies are 0 of it. Over the
         # whole 15.00 they would take round(2 x 9/15) = 1 stamp back.
         ("refund", "T0", "2026-03-03", "9.00", [("COOKIE", "6", "9.00")]),
         # One latte of the two: round(2 x 3.00/6.00) = 1 stamp back.
         ("refund", "T0", "2026-03-03", "3.00", [("LATTE", "1", "3.00")])],
        [0, 0, 1], {"card:stamps/2026-03-02": 1, "card:stamps/debt": 0}, 0),
    "per visit: a visit counts when some item reaches the price": (
        CARD.format(per="visit", size=2),
        [("buy", "2026-03-02", [COOKIE, WATER]),  # no stamp
         ("buy", "2026-03-03", [COOKIE, LATTE]),  # 1 stamp
         ("buy", "2026-03-04", [LATTE])],  # 2: a card
        [0, 0, 0], {}, 1),
    "visits as purchases (the default): the third purchase earns": (
        VISITS,
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02", [LATTE]),
         ("buy", "2026-03-03", [LATTE])],
        [0, 0, 100], {"third:visits/2026-03": 3}, 0),
    "distinct days: two purchases on one day are one visit": (
        DAYS,
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02T18:00:00+01:00", [LATTE]),
         ("buy", "2026-03-03", [LATTE]),  # day 2 of 3
         ("buy", "2026-03-05", [LATTE]),  # day 3: 100
         ("buy", "2026-03-06", [LATTE])],  # day 4: once a month
        [0, 0, 0, 100, 0],
        {"third:days:visits/2026-03-02": 2, "third:days:visits/2026-03-03": 1,
         "third:days:visits/2026-03-05": 1, "third:days:visits/2026-03-06": 1}, 0),
    "distinct days: a local day, not a UTC one": (
        DAYS,
        # 23:30 UTC on 2 March is 00:30 on 3 March in Amsterdam: two local days ...
        [("buy", "2026-03-02T22:30:00+00:00", [LATTE]),
         ("buy", "2026-03-02T23:30:00+00:00", [LATTE]),
         ("buy", "2026-03-04", [LATTE])],  # ... so this is the third
        [0, 0, 100], {}, 0),
    "distinct days: a day stays a visit while one of its purchases stands": (
        DAYS,
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02T18:00:00+01:00", [LATTE]),
         ("refund", "T0", "2026-03-03", "3.00", None),  # in full: T1 is still that day's
         ("buy", "2026-03-03", [LATTE]),
         ("buy", "2026-03-04", [LATTE])],  # days 2, 3 and 4 March: 100
        [0, 0, 0, 0, 100], {"third:days:visits/2026-03-02": 1}, 0),
    "distinct days: refunding every purchase of a day takes the visit back": (
        DAYS,
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02T18:00:00+01:00", [LATTE]),
         ("refund", "T0", "2026-03-03", "3.00", None),
         ("refund", "T1", "2026-03-03", "3.00", None),  # 2 March is no visit now
         ("buy", "2026-03-03", [LATTE]),
         ("buy", "2026-03-04", [LATTE])],  # only two days
        [0, 0, 0, 0, 0, 0], {"third:days:visits/2026-03-02": 0}, 0),
    "distinct days: a partial refund leaves the visit": (
        DAYS,
        [("buy", "2026-03-02", [LATTES]),
         ("refund", "T0", "2026-03-02", "3.00", None),  # half of it: still a visit
         ("buy", "2026-03-03", [LATTE]), ("buy", "2026-03-04", [LATTE])],
        [0, 0, 0, 100], {"third:days:visits/2026-03-02": 1}, 0),
    "stamps per distinct day: a second coffee that day earns none": (
        DAY_CARD,
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02T18:00:00+01:00", [LATTE]),
         ("buy", "2026-03-03", [LATTE])],
        [0, 0, 0],
        {"card:stamps/2026-03-02": 1, "card:stamps/2026-03-03": 1,
         "card:days:visits/2026-03-02": 2}, 0),
    "stamps per distinct day: the stamp goes back with the purchase that earned it": (
        DAY_CARD,
        # T0 earned 2 March's stamp; refunded in full it takes it back (1), and T1, which
        # earned none, does not earn it now: the stamp belongs to the purchase.
        [("buy", "2026-03-02", [LATTE]), ("buy", "2026-03-02T18:00:00+01:00", [LATTE]),
         ("refund", "T0", "2026-03-03", "3.00", None),
         ("refund", "T1", "2026-03-03", "3.00", None),  # earned no stamp: takes none
         ("buy", "2026-03-02T19:00:00+01:00", [LATTE])],  # the day is free again: a stamp
        [0, 0, 1, 0, 0],
        {"card:stamps/2026-03-02": 1, "card:days:visits/2026-03-02": 1}, 0),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_counting_rule(engine: Engine, tmp_path: Path, case: str) -> None:
    rules, steps, expected, counters, vouchers = CASES[case]
    apply_text(engine, tmp_path, HEAD + rules)
    got: list[int] = []
    bought = 0
    for step in steps:
        if step[0] == "buy":
            got.append(buy(engine, f"T{bought}", step[1], step[2]).points)
            bought += 1
        else:
            _, transaction, when, amount, items = step
            out = refund(engine, f"R{len(got)}", transaction, when, amount, items=items)
            got.append(sum(out.stamps.values()))
    assert got == expected
    seen = {f"{counter}/{period}": value
            for (_, counter, period), value in state(engine)["counters"].items()}
    assert {k: seen.get(k, 0) for k in counters} == counters
    assert len(state(engine)["vouchers"]) == vouchers
    assert_ledger_exact(engine)
