"""The liability's arithmetic, by hand, and the guard on the point value."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from loyalty_engine.finance.liability import Liability
from loyalty_engine.finance.values import (
    ReportError,
    check_point_value,
    minor_per_point,
    round_half_up,
)


def test_liability_by_hand() -> None:
    # 1,200 spendable and 300 pending points at 0.005 EUR (half a cent) each, 3/4 of them
    # expected to be redeemed: value 1,500 x 0.5 = 750 cents; expected cost 1,500 x 3/4 x
    # 0.5 = 562.5 -> 563 cents; breakage 375 points worth 750 - 563 = 187 cents.
    found = Liability("shop", "EUR", Decimal("0.005"), 1200, 300, Fraction(3, 4), "given")
    assert found.outstanding == 1500
    assert found.value_minor == 750
    assert found.expected_redemptions == 1125
    assert found.expected_breakage == 375
    assert found.expected_cost_minor == 563
    assert found.breakage_value_minor == 187
    shown = found.as_json()
    assert (shown["value"], shown["expected_cost"], shown["breakage_value"]) == (
        "7.50", "5.63", "1.87")
    assert shown["expected_redemption_rate"] == "0.750000"


def test_point_value_in_minor_units_by_currency() -> None:
    assert minor_per_point(Decimal("0.01"), "EUR") == 1
    assert minor_per_point(Decimal("0.5"), "JPY") == Fraction(1, 2)  # no minor unit
    assert minor_per_point(Decimal("0.001"), "KWD") == 1  # three decimals


@pytest.mark.parametrize("value", ["0", "-0.01", "0.000", "NaN"])
def test_a_point_value_not_above_zero_is_refused(value: str) -> None:
    with pytest.raises(ReportError, match="must be above zero"):
        check_point_value(Decimal(value), "shop")


def test_rounding_half_up_both_ways() -> None:
    assert [round_half_up(Fraction(n, 2)) for n in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]
