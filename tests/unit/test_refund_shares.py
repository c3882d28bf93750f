"""Refund shares: what each refund reverses of each effect, by the spend it was earned on."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.engine.refund_shares import Line, Refunded, RefundShares
from loyalty_engine.rules import load_program_text

PROGRAM = load_program_text("""\
program: shop
name: Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude: {categories: [gift-cards]}
rewards: [{id: free, name: Free, kind: free_item, category: coffee}]
rules:
  - {id: spend, kind: points_per_spend, points_per_unit: 1}
  - {id: card, kind: stamp_card, when: {categories: [coffee]}, stamp_per: item,
     card_size: 9, reward: free}
""").compiled
LINES = [Line("LATTE", "coffee", 600), Line("CAKE", "food", 400),
         Line("GIFT", "gift-cards", 5000)]
TOTAL = 6000


def _backs(refunds: list[Refunded], value: int, rule: str | None) -> list[int]:
    return [RefundShares(LINES, TOTAL, refunds[:i], r).back(value, PROGRAM, rule)
            for i, r in enumerate(refunds)]


def test_listed_items_reverse_what_they_earned() -> None:
    latte = Refunded(600, (("LATTE", 600),))
    gift = Refunded(5000, (("GIFT", 5000),))
    assert _backs([gift], 10, "spend") == [0]  # the gift card earned nothing
    assert _backs([latte], 10, "spend") == [6]  # 6.00 of the 10.00 that earned
    assert _backs([latte], 2, "card") == [2]  # the card counted only the latte
    assert _backs([Refunded(400, (("CAKE", 400),))], 2, "card") == [0]


def test_unlisted_refunds_are_pro_rata_over_the_whole_purchase() -> None:
    assert _backs([Refunded(3000, None)], 10, "spend") == [5]
    assert _backs([Refunded(3000, None), Refunded(3000, None)], 10, "spend") == [5, 5]


@given(
    cuts=st.lists(st.integers(1, TOTAL - 1), max_size=4, unique=True),
    value=st.integers(-500, 500),
    rule=st.sampled_from(["spend", "card", None]),
)
def test_refunds_in_parts_add_up_to_exactly_the_whole(cuts: list[int], value: int,
                                                      rule: str | None) -> None:
    bounds = [0, *sorted(cuts), TOTAL]
    parts = [Refunded(high - low, None) for low, high in itertools.pairwise(bounds)]
    assert sum(_backs(parts, value, rule)) == value


def test_returning_items_that_earned_double_takes_back_double() -> None:
    beans_double = load_program_text("""\
program: roaster
name: Roaster
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - {id: spend, kind: points_per_spend, points_per_unit: 1,
     category_multipliers: {coffee-beans: 2}}
""").compiled
    lines = [Line("LATTE", "coffee", 600), Line("BEANS", "coffee-beans", 1250)]
    # Earned: 6 for the latte, 25 for the beans (12.50 x 2) = 31.
    shares = RefundShares(lines, 1850, [], Refunded(1250, (("BEANS", 1250),)))
    assert shares.back(31, beans_double, "spend") == 25
    shares = RefundShares(lines, 1850, [], Refunded(600, (("LATTE", 600),)))
    assert shares.back(31, beans_double, "spend") == 6
