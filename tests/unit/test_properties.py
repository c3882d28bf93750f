"""Property-based tests: earning over random baskets and programs, checked against exact maths."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine import evaluate_purchase
from loyalty_engine.rules import CompiledProgram

from .builders import EXPONENTS, Line, event_dict, program, purchase

# No deadline: the first examples pay for loading programs (cached afterwards).
PROPERTY = settings(deadline=None, max_examples=100)

CATEGORIES = ["coffee", "pastry", "coffee-beans", "merch", "gift-cards", "tobacco"]
SKUS = ["FLAT-WHITE", "LATTE", "CROISSANT", "BEANS-250", "MUG", "GIFT-25", "DEPOSIT-BOTTLE"]
RATES = ["0.01", "0.1", "0.25", "0.5", "1", "1.5", "2", "3", "10", "0.3333", "7.77"]
MULTIPLIERS = ["0.5", "1.25", "1.5", "2", "3", "0.1"]
ROUNDINGS = ["floor", "ceiling", "half_up", "half_even"]


@dataclass(frozen=True)
class Item:
    sku: str
    category: str
    quantity_milli: int
    unit_price_minor: int


@dataclass(frozen=True)
class Spec:
    """A single-rule program, kept as plain values so the test can compute the answer itself."""

    points_per_unit: str = "1"
    rounding: str = "floor"
    minimum_minor: int = 0
    multipliers: dict[str, str] = field(default_factory=dict)
    exclude_categories: tuple[str, ...] = ()
    exclude_skus: tuple[str, ...] = ()

    def compile(self, currency: str) -> CompiledProgram:
        return program(
            points_per_unit=self.points_per_unit,
            rounding=self.rounding,
            minimum_purchase=decimal_text(self.minimum_minor, EXPONENTS[currency]),
            multipliers=self.multipliers,
            exclude_categories=self.exclude_categories,
            exclude_skus=self.exclude_skus,
            currency=currency,
        )


def decimal_text(minor: int, exponent: int) -> str:
    return str(Decimal(minor).scaleb(-exponent))


def lines_of(items: list[Item], currency: str) -> list[Line]:
    exponent = EXPONENTS[currency]
    return [
        (i.sku, i.category, decimal_text(i.quantity_milli, 3),
         decimal_text(i.unit_price_minor, exponent))
        for i in items
    ]


def to_purchase(items: list[Item], currency: str) -> Purchase:
    return purchase(lines_of(items, currency), currency=currency)


def earned(spec: Spec, items: list[Item], currency: str) -> int:
    decisions = evaluate_purchase(spec.compile(currency), to_purchase(items, currency))
    assert len(decisions) <= 1
    return decisions[0].points if decisions else 0


def line_amount(item: Item) -> int:
    """quantity x unit price in minor units, rounded half-up (exact integer arithmetic)."""
    return (2 * item.quantity_milli * item.unit_price_minor + 1000) // 2000


def exact_rounded(value: Fraction, rounding: str) -> int:
    if rounding == "floor":
        return math.floor(value)
    if rounding == "ceiling":
        return math.ceil(value)
    if rounding == "half_up":
        return math.floor(value + Fraction(1, 2))
    return round(value)  # Fraction rounds half to even


def expected_points(spec: Spec, items: list[Item], currency: str) -> int:
    eligible = [
        i for i in items
        if i.category not in spec.exclude_categories and i.sku not in spec.exclude_skus
    ]
    spend = sum(line_amount(i) for i in eligible)
    if spend == 0 or spend < spec.minimum_minor:
        return 0
    exact = sum(
        (
            Fraction(line_amount(i)) * Fraction(spec.points_per_unit)
            * Fraction(spec.multipliers.get(i.category, "1"))
            for i in eligible
        ),
        Fraction(0),
    ) / 10 ** EXPONENTS[currency]
    return exact_rounded(exact, spec.rounding)


currencies = st.sampled_from(sorted(EXPONENTS))
quantities = st.one_of(
    st.integers(min_value=1, max_value=5).map(lambda n: n * 1000),
    st.integers(min_value=1, max_value=20_000),
)
prices = st.one_of(
    st.integers(min_value=0, max_value=50_000),
    # Round prices (multiples of 0.50 / 50 yen / 0.050 BHD) make exact rounding ties common.
    st.integers(min_value=0, max_value=200).map(lambda n: n * 50),
)
items_strategy = st.builds(
    Item,
    sku=st.sampled_from(SKUS),
    category=st.sampled_from(CATEGORIES),
    quantity_milli=quantities,
    unit_price_minor=prices,
)
baskets = st.lists(items_strategy, min_size=1, max_size=8)


@st.composite
def specs(draw: st.DrawFn, *, rounding: str | None = None, minimum: bool = True) -> Spec:
    return Spec(
        points_per_unit=draw(st.sampled_from(RATES)),
        rounding=rounding or draw(st.sampled_from(ROUNDINGS)),
        minimum_minor=(
            draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=20_000)))
            if minimum else 0
        ),
        multipliers=draw(st.dictionaries(st.sampled_from(CATEGORIES),
                                         st.sampled_from(MULTIPLIERS), max_size=3)),
        exclude_categories=tuple(draw(st.lists(st.sampled_from(CATEGORIES), max_size=2,
                                               unique=True))),
        exclude_skus=tuple(draw(st.lists(st.sampled_from(SKUS), max_size=2, unique=True))),
    )


@PROPERTY
@given(spec=specs(), items=baskets, currency=currencies)
def test_points_equal_the_exact_rational_computation_rounded(
    spec: Spec, items: list[Item], currency: str
) -> None:
    assert earned(spec, items, currency) == expected_points(spec, items, currency)


tie_items = st.builds(
    Item,
    sku=st.sampled_from(SKUS),
    category=st.sampled_from(CATEGORIES),
    quantity_milli=st.integers(min_value=1, max_value=4).map(lambda n: n * 1000),
    unit_price_minor=st.integers(min_value=1, max_value=100).map(lambda n: n * 25),
)


@PROPERTY
@given(
    rate=st.sampled_from(["1", "0.5", "2.5", "0.1", "1.5"]),
    rounding=st.sampled_from(ROUNDINGS),
    items=st.lists(tie_items, min_size=1, max_size=4),
)
def test_exact_ties_follow_the_rounding_mode(rate: str, rounding: str, items: list[Item]) -> None:
    # Whole quantities of prices in quarter euros: many totals land exactly on .5 points.
    spec = Spec(points_per_unit=rate, rounding=rounding)
    assert earned(spec, items, "EUR") == expected_points(spec, items, "EUR")


@PROPERTY
@given(spec=specs(), items=baskets, currency=currencies)
def test_decisions_never_carry_zero_or_negative_points(
    spec: Spec, items: list[Item], currency: str
) -> None:
    decisions = evaluate_purchase(spec.compile(currency), to_purchase(items, currency))
    assert all(d.points > 0 for d in decisions)


@PROPERTY
@given(spec=specs(rounding="floor"), items=baskets, currency=currencies)
def test_rounding_modes_are_ordered_and_at_most_one_apart(
    spec: Spec, items: list[Item], currency: str
) -> None:
    results = {
        mode: earned(
            Spec(spec.points_per_unit, mode, spec.minimum_minor, spec.multipliers,
                 spec.exclude_categories, spec.exclude_skus),
            items, currency,
        )
        for mode in ROUNDINGS
    }
    assert results["floor"] <= results["half_up"] <= results["ceiling"]
    assert results["floor"] <= results["half_even"] <= results["half_up"]
    assert results["ceiling"] - results["floor"] <= 1


@PROPERTY
@given(spec=specs(rounding="floor", minimum=False), items=baskets, extra=items_strategy,
       currency=currencies)
def test_adding_an_item_never_lowers_points(
    spec: Spec, items: list[Item], extra: Item, currency: str
) -> None:
    assert earned(spec, [*items, extra], currency) >= earned(spec, items, currency)


@PROPERTY
@given(spec=specs(), items=baskets, currency=currencies, data=st.data())
def test_adding_an_item_never_lowers_points_in_any_mode_with_a_minimum(
    spec: Spec, items: list[Item], currency: str, data: st.DataObject
) -> None:
    extra = data.draw(items_strategy)
    assert earned(spec, [*items, extra], currency) >= earned(spec, items, currency)


@PROPERTY
@given(spec=specs(), items=baskets, currency=currencies, data=st.data())
def test_excluded_items_never_change_the_result(
    spec: Spec, items: list[Item], currency: str, data: st.DataObject
) -> None:
    excluded_category = data.draw(st.sampled_from(CATEGORIES), label="excluded category")
    excluded_sku = data.draw(st.sampled_from(SKUS), label="excluded sku")
    eligible_spend = sum(
        line_amount(i) for i in items
        if i.category != excluded_category and i.sku != excluded_sku
    )
    # A minimum right at the edge of the eligible spend: excluded items must not tip it.
    minimum = data.draw(st.sampled_from(
        [spec.minimum_minor, eligible_spend, eligible_spend + 1, 2 * eligible_spend + 1]
    ), label="minimum")
    spec = Spec(spec.points_per_unit, spec.rounding, minimum, spec.multipliers,
                (excluded_category,), (excluded_sku,))
    extras = data.draw(st.lists(
        st.one_of(
            st.builds(Item, sku=st.sampled_from(SKUS), category=st.just(excluded_category),
                      quantity_milli=quantities,
                      unit_price_minor=prices),
            st.builds(Item, sku=st.just(excluded_sku), category=st.sampled_from(CATEGORIES),
                      quantity_milli=quantities,
                      unit_price_minor=prices),
        ),
        min_size=1, max_size=4,
    ), label="excluded items")
    position = data.draw(st.integers(min_value=0, max_value=len(items)), label="position")
    mixed = [*items[:position], *extras, *items[position:]]

    compiled = spec.compile(currency)
    before = evaluate_purchase(compiled, to_purchase(items, currency))
    after = evaluate_purchase(compiled, to_purchase(mixed, currency))
    assert [d.points for d in after] == [d.points for d in before]
    for b, a in zip(before, after, strict=True):
        assert a.reason["eligible_spend_minor"] == b.reason["eligible_spend_minor"]
        assert a.reason["excluded_items"] == b.reason["excluded_items"] + len(extras)


@PROPERTY
@given(items=baskets, currency=currencies)
def test_purchase_amounts_are_exact_minor_units(items: list[Item], currency: str) -> None:
    result = to_purchase(items, currency)
    assert [i.amount_minor for i in result.items] == [line_amount(i) for i in items]
    assert [i.unit_price_minor for i in result.items] == [i.unit_price_minor for i in items]
    assert [i.quantity_milli for i in result.items] == [i.quantity_milli for i in items]
    assert result.total_minor == sum(line_amount(i) for i in items)


def pad(text: str) -> str:
    """The same decimal written with one more trailing zero."""
    return text + "0" if "." in text else text + ".0"


def body_hash(body: dict[str, Any]) -> str:
    return PurchaseEvent.model_validate(body).to_purchase().body_hash


@PROPERTY
@given(items=baskets, currency=currencies)
def test_body_hash_ignores_trailing_zeros(items: list[Item], currency: str) -> None:
    lines = lines_of(items, currency)
    plain = event_dict(lines, currency=currency)
    padded = event_dict(
        [(sku, category, pad(qty), pad(price)) for sku, category, qty, price in lines],
        currency=currency,
        total=pad(plain["total"]),
    )
    assert body_hash(padded) == body_hash(plain)
