"""Earning: points per unit of eligible spend, rounding, minimums, exclusions, multipliers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loyalty_engine.domain.decisions import EarnPoints
from loyalty_engine.engine import evaluate_purchase, round_points
from loyalty_engine.rules import load_program_text
from loyalty_engine.services.program_files import load_program_file

from .builders import Line, program, purchase

# --- round_points ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("numerator", "denominator", "floor", "ceiling", "half_up", "half_even"),
    [
        (1200, 100, 12, 12, 12, 12),  # exact: no mode moves it
        (1201, 100, 12, 13, 12, 12),  # just above
        (1249, 100, 12, 13, 12, 12),
        (1250, 100, 12, 13, 13, 12),  # tie, even below
        (1350, 100, 13, 14, 14, 14),  # tie, even above
        (1251, 100, 12, 13, 13, 13),
        (1299, 100, 12, 13, 13, 13),
        (0, 100, 0, 0, 0, 0),
        (1, 100, 0, 1, 0, 0),
        (50, 100, 0, 1, 1, 0),  # 0.5: half_even goes to 0
        (150, 100, 1, 2, 2, 2),  # 1.5: half_even goes to 2
        (250, 100, 2, 3, 3, 2),  # 2.5: half_even goes to 2
        (7, 2, 3, 4, 4, 4),  # 3.5
        (5, 2, 2, 3, 3, 2),  # 2.5
        (10, 3, 3, 4, 3, 3),  # 3.33...
        (20, 3, 6, 7, 7, 7),  # 6.66...
        (5, 1, 5, 5, 5, 5),
    ],
)
def test_round_points(
    numerator: int, denominator: int, floor: int, ceiling: int, half_up: int, half_even: int
) -> None:
    assert round_points(numerator, denominator, "floor") == floor
    assert round_points(numerator, denominator, "ceiling") == ceiling
    assert round_points(numerator, denominator, "half_up") == half_up
    assert round_points(numerator, denominator, "half_even") == half_even


def test_round_points_handles_numbers_beyond_float_precision() -> None:
    big = 10**30
    assert round_points(big * 10 + 5, 10, "half_even") == big  # big is even
    assert round_points(big * 10 + 5, 10, "half_up") == big + 1
    assert round_points(big * 10 + 1, 10, "ceiling") == big + 1


# --- points per unit and rounding ------------------------------------------------------------


def points(program_kwargs: dict[str, Any], lines: list[Line], currency: str = "EUR") -> int:
    """Total points a basket earns; 0 when no decision is made."""
    compiled = program(currency=currency, **program_kwargs)
    decisions = evaluate_purchase(compiled, purchase(lines, currency=currency))
    return sum(d.points for d in decisions)


@pytest.mark.parametrize(
    ("price", "rounding", "expected"),
    [
        ("12.00", "floor", 12),
        ("12.00", "ceiling", 12),
        ("12.00", "half_up", 12),
        ("12.00", "half_even", 12),
        ("12.99", "floor", 12),
        ("12.99", "ceiling", 13),
        ("12.99", "half_up", 13),
        ("12.99", "half_even", 13),
        ("12.49", "floor", 12),
        ("12.49", "ceiling", 13),
        ("12.49", "half_up", 12),
        ("12.49", "half_even", 12),
        ("12.01", "ceiling", 13),
        ("12.50", "floor", 12),
        ("12.50", "ceiling", 13),
        ("12.50", "half_up", 13),
        ("12.50", "half_even", 12),
        ("13.50", "half_up", 14),
        ("13.50", "half_even", 14),
        ("13.50", "floor", 13),
    ],
)
def test_one_point_per_euro_with_each_rounding(price: str, rounding: str, expected: int) -> None:
    assert points({"rounding": rounding}, [("CAKE", "pastry", "1", price)]) == expected


def test_rounding_is_applied_once_to_the_whole_basket_not_per_line() -> None:
    # Three lines of 0.60 earn 1.80 points -> 1 under floor; per line they would earn 0.
    lines = [("A", "pastry", "1", "0.60"), ("B", "pastry", "1", "0.60"),
             ("C", "pastry", "1", "0.60")]
    assert points({"rounding": "floor"}, lines) == 1
    assert points({"rounding": "half_up"}, lines) == 2


@pytest.mark.parametrize(
    ("ppu", "price", "rounding", "expected"),
    [
        ("10", "3.45", "floor", 34),
        ("0.5", "9.99", "floor", 4),
        ("0.5", "9.00", "half_up", 5),  # 4.5
        ("0.5", "9.00", "half_even", 4),  # 4.5
        ("0.1", "25.00", "floor", 2),
        ("0.1", "25.00", "half_up", 3),
        ("0.1", "25.00", "half_even", 2),
        ("0.1", "35.00", "half_even", 4),
        ("1.5", "3.00", "floor", 4),
        ("0.01", "150.00", "floor", 1),
        ("3", "0.34", "floor", 1),  # 1.02
        ("2.5", "1.00", "half_even", 2),
    ],
)
def test_points_per_unit_other_than_one(
    ppu: str, price: str, rounding: str, expected: int
) -> None:
    kwargs = {"points_per_unit": ppu, "rounding": rounding}
    assert points(kwargs, [("CAKE", "pastry", "1", price)]) == expected


def test_quantity_multiplies_the_spend() -> None:
    assert points({}, [("FLAT-WHITE", "coffee", "3", "3.20")]) == 9  # 9.60


def test_fractional_quantity_earns_on_the_rounded_line_amount() -> None:
    # 0.5 kg at 19.99 is 9.995, rounded half-up to 10.00: 10 points, not 9.
    assert points({}, [("BEANS", "coffee-beans", "0.5", "19.99")]) == 10


def test_spend_that_rounds_to_zero_points_makes_no_decision() -> None:
    compiled = program()
    assert evaluate_purchase(compiled, purchase([("GUM", "candy", "1", "0.99")])) == []


def test_ceiling_turns_any_spend_into_a_point() -> None:
    assert points({"rounding": "ceiling"}, [("GUM", "candy", "1", "0.01")]) == 1


def test_free_item_earns_nothing() -> None:
    compiled = program(rounding="ceiling")
    assert evaluate_purchase(compiled, purchase([("SAMPLE", "coffee", "1", "0.00")])) == []


# --- minimum purchase ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [("1.99", 0), ("2.00", 2), ("2.01", 2), ("10.00", 10)],
)
def test_minimum_purchase_is_inclusive(price: str, expected: int) -> None:
    assert points({"minimum_purchase": "2.00"}, [("CAKE", "pastry", "1", price)]) == expected


def test_minimum_purchase_may_be_met_by_several_items() -> None:
    lines = [("A", "pastry", "1", "1.00"), ("B", "coffee", "1", "1.00")]
    assert points({"minimum_purchase": "2.00"}, lines) == 2


def test_minimum_purchase_ignores_excluded_categories() -> None:
    lines = [("CAKE", "pastry", "1", "1.50"), ("GIFT-25", "gift-cards", "1", "25.00")]
    kwargs = {"minimum_purchase": "2.00", "exclude_categories": ["gift-cards"]}
    assert points(kwargs, lines) == 0


def test_minimum_purchase_ignores_excluded_skus() -> None:
    lines = [("CAKE", "pastry", "1", "1.50"), ("DEPOSIT-BOTTLE", "drinks", "4", "0.25")]
    kwargs = {"minimum_purchase": "2.00", "exclude_skus": ["DEPOSIT-BOTTLE"]}
    assert points(kwargs, lines) == 0


def test_minimum_purchase_counts_spend_before_multipliers() -> None:
    # 1.50 of beans earns 3.0 "multiplied" points but the eligible spend is still 1.50.
    lines = [("BEANS", "coffee-beans", "1", "1.50")]
    kwargs = {"minimum_purchase": "2.00", "multipliers": {"coffee-beans": "2"}}
    assert points(kwargs, lines) == 0


def test_minimum_purchase_uses_the_fractional_line_amount() -> None:
    # 0.5 x 3.99 = 1.995 -> 2.00 after half-up rounding: meets a 2.00 minimum.
    assert points({"minimum_purchase": "2.00"}, [("BEANS", "b", "0.5", "3.99")]) == 2


# --- exclusions ------------------------------------------------------------------------------


def test_excluded_categories_and_skus_earn_nothing() -> None:
    compiled = program(exclude_categories=["gift-cards", "tobacco"],
                       exclude_skus=["DEPOSIT-BOTTLE"])
    basket = purchase([
        ("FLAT-WHITE", "coffee", "1", "3.20"),
        ("GIFT-25", "gift-cards", "1", "25.00"),
        ("CIGS", "tobacco", "1", "9.00"),
        ("DEPOSIT-BOTTLE", "drinks", "2", "0.25"),
    ])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 3
    assert decision.reason["eligible_spend_minor"] == 320
    assert decision.reason["excluded_items"] == 3


def test_sku_exclusion_applies_in_any_category() -> None:
    compiled = program(exclude_skus=["DEPOSIT-BOTTLE"])
    basket = purchase([("DEPOSIT-BOTTLE", "coffee", "1", "5.00"), ("X", "coffee", "1", "2.00")])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 2


def test_exclusions_match_exactly() -> None:
    compiled = program(exclude_categories=["tobacco"], exclude_skus=["DEPOSIT-BOTTLE"])
    basket = purchase([("deposit-bottle", "Tobacco", "1", "5.00")])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 5


def test_basket_of_only_excluded_items_makes_no_decision() -> None:
    compiled = program(rounding="ceiling", exclude_categories=["gift-cards"])
    basket = purchase([("GIFT-25", "gift-cards", "1", "25.00")])
    assert evaluate_purchase(compiled, basket) == []


def test_multiplier_on_an_excluded_category_does_not_earn() -> None:
    compiled = program(multipliers={"gift-cards": "3"}, exclude_categories=["gift-cards"])
    basket = purchase([("GIFT-25", "gift-cards", "1", "25.00"), ("X", "coffee", "1", "2.00")])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 2
    assert "multipliers" not in decision.reason


# --- category multipliers --------------------------------------------------------------------


def test_category_multiplier_applies_only_to_its_category() -> None:
    compiled = program(multipliers={"coffee-beans": "2"})
    basket = purchase([("BEANS", "coffee-beans", "1", "10.00"),
                       ("FLAT-WHITE", "coffee", "1", "3.00")])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 23


def test_fractional_multiplier_and_points_per_unit_are_exact() -> None:
    # 10.00 x 0.5 x 1.5 = 7.5 and 3.00 x 0.5 = 1.5: 9 points exactly, in every mode.
    lines = [("BEANS", "coffee-beans", "1", "10.00"), ("CAKE", "pastry", "1", "3.00")]
    for rounding in ("floor", "ceiling", "half_up", "half_even"):
        kwargs = {"points_per_unit": "0.5", "multipliers": {"coffee-beans": "1.5"},
                  "rounding": rounding}
        assert points(kwargs, lines) == 9, rounding


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [("floor", 7), ("ceiling", 8), ("half_up", 8), ("half_even", 8)],
)
def test_fractional_multiplier_tie(rounding: str, expected: int) -> None:
    # 10.00 x 0.5 x 1.5 = 7.5 points.
    kwargs = {"points_per_unit": "0.5", "multipliers": {"coffee-beans": "1.5"},
              "rounding": rounding}
    assert points(kwargs, [("BEANS", "coffee-beans", "1", "10.00")]) == expected


def test_multipliers_below_one_reduce_points() -> None:
    kwargs = {"multipliers": {"sale": "0.25"}}
    assert points(kwargs, [("X", "sale", "1", "10.00"), ("Y", "coffee", "1", "1.00")]) == 3


def test_several_multiplied_categories() -> None:
    kwargs = {"points_per_unit": "2", "multipliers": {"beans": "3", "merch": "1.25"},
              "rounding": "half_even"}
    lines = [("B", "beans", "1", "1.00"), ("M", "merch", "2", "2.00"), ("C", "coffee", "1", "0.30")]
    # 1.00x2x3 = 6, 4.00x2x1.25 = 10, 0.30x2 = 0.6 -> 16.6 -> 17
    assert points(kwargs, lines) == 17


# --- other currencies ------------------------------------------------------------------------


def test_jpy_one_point_per_yen() -> None:
    assert points({}, [("ONIGIRI", "food", "2", "150")], currency="JPY") == 300


def test_jpy_one_point_per_hundred_yen() -> None:
    kwargs = {"points_per_unit": "0.01"}
    assert points(kwargs, [("BENTO", "food", "1", "1299")], currency="JPY") == 12
    kwargs_up = {"points_per_unit": "0.01", "rounding": "half_up"}
    assert points(kwargs_up, [("BENTO", "food", "1", "1250")], currency="JPY") == 13


def test_jpy_minimum_purchase() -> None:
    kwargs = {"minimum_purchase": "500"}
    assert points(kwargs, [("A", "food", "1", "499")], currency="JPY") == 0
    assert points(kwargs, [("A", "food", "1", "500")], currency="JPY") == 500


def test_jpy_reason_is_in_yen() -> None:
    compiled = program(currency="JPY")
    (decision,) = evaluate_purchase(compiled, purchase([("A", "f", "1", "740")], currency="JPY"))
    assert decision.reason["eligible_spend_minor"] == 740


def test_bhd_three_decimals() -> None:
    kwargs = {"points_per_unit": "10", "minimum_purchase": "1.001"}
    assert points(kwargs, [("TEA", "drinks", "1", "1.234")], currency="BHD") == 12
    assert points(kwargs, [("TEA", "drinks", "1", "1.000")], currency="BHD") == 0


# --- decisions and their reasons -------------------------------------------------------------


def test_decision_names_program_rule_and_points() -> None:
    compiled = program(rounding="floor")
    decisions = evaluate_purchase(compiled, purchase([("CAKE", "pastry", "1", "4.50")]))
    assert decisions == [
        EarnPoints(
            program_id="test-program",
            rule_id="points",
            points=4,
            reason={
                "eligible_spend_minor": 450,
                "excluded_items": 0,
                "points_per_unit": "1",
                "rounding": "floor",
            },
        )
    ]


def test_reason_explains_multipliers_and_exclusions() -> None:
    compiled = program(points_per_unit="0.5", rounding="half_even",
                       multipliers={"coffee-beans": "1.5", "merch": "2"},
                       exclude_categories=["gift-cards"])
    basket = purchase([
        ("BEANS-1", "coffee-beans", "1", "6.00"),
        ("BEANS-2", "coffee-beans", "1", "4.00"),
        ("GIFT", "gift-cards", "1", "50.00"),
        ("CAKE", "pastry", "1", "3.00"),
    ])
    (decision,) = evaluate_purchase(compiled, basket)
    assert decision.points == 9
    assert decision.reason == {
        "eligible_spend_minor": 1300,
        "excluded_items": 1,
        "points_per_unit": "0.5",
        "rounding": "half_even",
        "multipliers": {"coffee-beans": {"spend_minor": 1000, "multiplier": "1.5"}},
    }


def test_reason_lists_multiplied_categories_in_name_order() -> None:
    compiled = program(multipliers={"zeta": "2", "alpha": "3"})
    basket = purchase([("Z", "zeta", "1", "1.00"), ("A", "alpha", "1", "1.00")])
    (decision,) = evaluate_purchase(compiled, basket)
    assert list(decision.reason["multipliers"]) == ["alpha", "zeta"]


TWO_RULES = """\
program: two-rules
name: Two Rules
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - id: base
    kind: points_per_spend
    points_per_unit: 1
  - id: big-spender
    kind: points_per_spend
    points_per_unit: 2
    minimum_purchase: "50.00"
"""


def test_each_rule_decides_on_its_own() -> None:
    compiled = load_program_text(TWO_RULES).compiled
    small = evaluate_purchase(compiled, purchase([("X", "c", "1", "10.00")]))
    assert [(d.rule_id, d.points) for d in small] == [("base", 10)]
    large = evaluate_purchase(compiled, purchase([("X", "c", "1", "60.00")]))
    assert [(d.rule_id, d.points) for d in large] == [("base", 60), ("big-spender", 120)]


def test_bean_there_example_basket() -> None:
    path = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "bean-there-basic.yaml"
    compiled = load_program_file(path).compiled
    basket = purchase([
        ("FLAT-WHITE", "coffee", "2", "3.20"),
        ("HOUSE-BLEND-250G", "coffee-beans", "1", "12.00"),
        ("GIFT-25", "gift-cards", "1", "25.00"),
        ("DEPOSIT-BOTTLE", "drinks", "1", "0.25"),
    ])
    (decision,) = evaluate_purchase(compiled, basket)
    # 6.40 x 1 + 12.00 x 2 = 30.40 -> 30 (floor); gift card and deposit earn nothing.
    assert decision.points == 30
    assert decision.program_id == "bean-there"
    assert decision.reason["eligible_spend_minor"] == 1840
    assert decision.reason["excluded_items"] == 2
