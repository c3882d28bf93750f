"""A year of the coffee star program (tests/fixtures/programs/coffee-stars.yaml) on both
databases: members paying with the app, by card, in cash and with stars, in the store, on
the web and in the app, through a Double Star week and a web-order week, with refunds and a
redemption. Every figure is worked out by hand from the program file in the comments.

The program: stars-per-euro (1 a euro) and app-stars (2 a euro paid with the app) are a
best-of group; app-stars' promotions double-star-week (x2, 16-22 March, excludes the
breakfast bonus) and web-week (x1.5 on the web, 19-31 March) are a best-of group; the
breakfast bonus is x1.5 on pastry; order-ahead is 5 stars in the app channel. Stars are
rounded down once per purchase, gift cards earn nothing, stars never expire.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import RedemptionRejectedError
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

from .walk import apply_files, assert_ledger_exact, buy, points, refund, spend

STARS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs" / \
    "coffee-stars.yaml"
P = "coffee-stars"
LATTE = ("LATTE", "coffee", "1", "4.50")
TWO_LATTES = ("LATTE", "coffee", "2", "4.50")
CROISSANT = ("CROISSANT", "pastry", "1", "2.80")
BEANS = ("BEANS-1KG", "coffee-beans", "1", "12.00")
GIFT_CARD = ("GIFT-25", "gift-cards", "1", "25.00")


def _reason(engine: Engine, transaction_id: str, rule_id: str) -> dict[str, Any]:
    """The ledger reason of a purchase's earning entry for a rule."""
    e, p = tables.ledger_entries, tables.purchases
    with read_transaction(engine) as conn:
        reason: dict[str, Any] = conn.execute(
            select(e.c.reason).join(p, p.c.id == e.c.purchase_id)
            .where(p.c.transaction_id == transaction_id, e.c.rule_id == rule_id,
                   e.c.kind == "earn")).scalar_one()
    return reason


def _earned(outcome: Any) -> dict[str, int]:
    return {a.rule_id: a.points for a in outcome.awards}


def test_a_year_of_the_app_loyalist(engine: Engine) -> None:
    apply_files(engine, STARS)

    # Mon 12 Jan, paid with the app at the counter: latte 4.50 x 2 = 9, croissant
    # 2.80 x 2 x 1.5 (breakfast bonus) = 8.4; 17.4 -> 17. (1 a euro would be 7: app wins.)
    t1 = buy(engine, "T1", "2026-01-12", [LATTE, CROISSANT], tender="app", channel="store")
    assert _earned(t1) == {"app-stars": 17}
    assert points(engine, P) == (17, 0)

    # Wed 4 Feb, by card: a 25.00 gift card (excluded) and a latte: 4.50 -> 4.
    t2 = buy(engine, "T2", "2026-02-04", [GIFT_CARD, LATTE], tender="card", channel="store")
    assert _earned(t2) == {"stars-per-euro": 4}
    assert points(engine, P) == (21, 0)  # 17 + 4

    # Tue 17 Mar, Double Star week, ordered ahead in the app: (9.00 + 2.80) x 2 x 2 = 47.2
    # -> 47 (the breakfast bonus is excluded by the double week); order-ahead 5.
    t3 = buy(engine, "T3", "2026-03-17", [TWO_LATTES, CROISSANT], tender="app",
             channel="app")
    assert _earned(t3) == {"app-stars": 47, "order-ahead": 5}
    assert _reason(engine, "T3", "app-stars")["set_aside"] == {
        "breakfast-bonus": "excluded by double-star-week"}
    assert points(engine, P) == (73, 0)  # 21 + 52

    # Fri 20 Mar on the web, both promotions running: best of x2 and x1.5 is x2;
    # (12.00 + 2.80) x 2 x 2 = 59.2 -> 59. No order-ahead (web, not the app channel).
    t4 = buy(engine, "T4", "2026-03-20", [BEANS, CROISSANT], tender="app", channel="web")
    assert _earned(t4) == {"app-stars": 59}
    reason = _reason(engine, "T4", "app-stars")
    assert reason["boosts"] == {"double-star-week": "2"}
    assert reason["set_aside"] == {
        "breakfast-bonus": "excluded by double-star-week",
        "web-week": "best of promotions: double-star-week is larger"}
    assert points(engine, P) == (132, 0)  # 73 + 59

    # Mon 23 Mar on the web, the web week alone: latte 4.50 x 2 x 1.5 = 13.5; croissant
    # 2.80 x 2 x 1.5 x 1.5 (web week and breakfast bonus, another group) = 12.6;
    # 26.1 -> 26.
    t5 = buy(engine, "T5", "2026-03-23", [LATTE, CROISSANT], tender="app", channel="web")
    assert _earned(t5) == {"app-stars": 26}
    assert _reason(engine, "T5", "app-stars")["boosts"] == {
        "breakfast-bonus": "1.5", "web-week": "1.5"}
    assert points(engine, P) == (158, 0)  # 132 + 26

    # Tue 24 Mar the croissant comes back. The refund's share is unchanged by tenders and
    # promotions: 26 x 2.80 / 7.30 = 9.97 -> 10 back (item-selecting multipliers are not
    # weighted in a refund's share).
    r1 = refund(engine, "R1", "T5", "2026-03-24", "2.80", items=[("CROISSANT", "1", "2.80")])
    assert r1.points == {P: 10}
    assert points(engine, P) == (148, 0)  # 158 - 10

    # 148 stars are not enough for a free drink (150).
    with pytest.raises(RedemptionRejectedError):
        spend(engine, "RD-0", "2026-03-25", P, reward="free-drink")

    # Mon 6 Apr, app at the counter: a latte, 4.50 x 2 = 9.
    buy(engine, "T6", "2026-04-06", [LATTE], tender="app", channel="store")
    assert points(engine, P) == (157, 0)  # 148 + 9

    # Wed 8 Apr: a free drink for 150 stars.
    spend(engine, "RD-1", "2026-04-08", P, reward="free-drink")
    assert points(engine, P) == (7, 0)  # 157 - 150

    # Mon 6 Jul, paid with stars: earns as cash, 4.50 -> 4.
    t7 = buy(engine, "T7", "2026-07-06", [LATTE], tender="points", channel="store")
    assert _earned(t7) == {"stars-per-euro": 4}
    assert points(engine, P) == (11, 0)  # 7 + 4

    # Tue 10 Nov, ordered ahead in the app: 17 as on 12 January, and 5; then returned in
    # full the next day: both come back.
    t8 = buy(engine, "T8", "2026-11-10", [LATTE, CROISSANT], tender="app", channel="app")
    assert _earned(t8) == {"app-stars": 17, "order-ahead": 5}
    assert points(engine, P) == (33, 0)  # 11 + 22
    r2 = refund(engine, "R2", "T8", "2026-11-11", "7.30")
    assert r2.points == {P: 22}
    assert points(engine, P) == (11, 0)  # the year ends with 11 stars
    assert_ledger_exact(engine)


def test_a_year_at_the_counter_and_on_the_web(engine: Engine) -> None:
    apply_files(engine, STARS)

    # Thu 19 Mar, cash at the counter in the Double Star week: the promotions are the
    # app's; 1 a euro: 7.30 -> 7.
    c1 = buy(engine, "C1", "2026-03-19", [LATTE, CROISSANT], member="M-2", tender="cash",
             channel="store")
    assert _earned(c1) == {"stars-per-euro": 7}

    # Sat 21 Mar, by card on the web (the web week is the app's too): 12.00 -> 12.
    c2 = buy(engine, "C2", "2026-03-21", [BEANS], member="M-2", tender="card", channel="web")
    assert _earned(c2) == {"stars-per-euro": 12}
    assert points(engine, P, "M-2") == (19, 0)  # 7 + 12

    # Mon 23 Mar, half of the beans' price back: 12 x 6.00 / 12.00 = 6.
    assert refund(engine, "RC2", "C2", "2026-03-23", "6.00").points == {P: 6}
    assert points(engine, P, "M-2") == (13, 0)  # 19 - 6

    # Mon 1 Jun, a till that sends neither tender nor channel: 10.00 -> 10; tenders: and
    # channels: conditions do not hold, so no app stars and no order-ahead.
    c3 = buy(engine, "C3", "2026-06-01", [("MUG", "merchandise", "1", "10.00")],
             member="M-2")
    assert _earned(c3) == {"stars-per-euro": 10}
    assert points(engine, P, "M-2") == (23, 0)  # 13 + 10

    # M-3 in May: the app on the web (no promotion runs): 4.50 x 2 = 9; then ordering
    # ahead in the app but paying by card: 1 a euro, 4, and order-ahead 5.
    w1 = buy(engine, "W1", "2026-05-11", [LATTE], member="M-3", tender="app", channel="web")
    assert _earned(w1) == {"app-stars": 9}
    w2 = buy(engine, "W2", "2026-05-14", [LATTE], member="M-3", tender="card", channel="app")
    assert _earned(w2) == {"stars-per-euro": 4, "order-ahead": 5}
    assert points(engine, P, "M-3") == (18, 0)  # 9 + 4 + 5
    # Half of W2 back: stars-per-euro 4 x 2.25 / 4.50 = 2; order-ahead 5 x 0.5 = 2.5 ->
    # 3 (half up); 5 back.
    assert refund(engine, "RW2", "W2", "2026-05-15", "2.25").points == {P: 5}
    assert points(engine, P, "M-3") == (13, 0)  # 18 - 5
    assert_ledger_exact(engine)
