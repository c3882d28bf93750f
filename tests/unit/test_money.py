"""Money at the edges: currency codes, decimal parsing, minor units and formatting."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_engine.domain.money import (
    MoneyError,
    currency_exponent,
    format_minor,
    parse_decimal,
    to_minor,
)


@pytest.mark.parametrize(
    ("code", "exponent"),
    [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3)],
)
def test_currency_exponent_of_known_currencies(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_unknown_currency_code_is_refused() -> None:
    with pytest.raises(MoneyError, match=r"ZZZ is not an ISO 4217 currency code"):
        currency_exponent("ZZZ")


@pytest.mark.parametrize("code", ["eur", "Eur", "EU", "EURO", "E1R", "", " EUR"])
def test_malformed_currency_code_asks_for_three_capital_letters(code: str) -> None:
    with pytest.raises(MoneyError, match="three capital letters"):
        currency_exponent(code)


def test_non_string_currency_code_is_refused() -> None:
    with pytest.raises(MoneyError, match="three capital letters"):
        currency_exponent(978)


@pytest.mark.parametrize("code", ["XAU", "XAG", "XDR", "XXX"])
def test_currency_without_minor_unit_is_refused(code: str) -> None:
    with pytest.raises(MoneyError, match=f"{code} has no minor unit"):
        currency_exponent(code)


# --- parse_decimal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.50", Decimal("12.50")),
        ("12.5", Decimal("12.5")),
        ("1.25e1", Decimal("12.5")),
        ("0", Decimal(0)),
        (12, Decimal(12)),
        (0, Decimal(0)),
        (Decimal("3.20"), Decimal("3.20")),
    ],
)
def test_parse_decimal_accepts_strings_integers_and_decimals(
    value: object, expected: Decimal
) -> None:
    result = parse_decimal(value, "amount")
    assert result == expected
    assert isinstance(result, Decimal)


def test_parse_decimal_keeps_the_written_precision() -> None:
    # "12.50" must not be turned into a binary float on the way in.
    assert str(parse_decimal("12.50", "amount")) == "12.50"
    assert str(parse_decimal("0.10", "amount")) == "0.10"


@pytest.mark.parametrize("value", [12.5, 0.1, 1.0, float("nan")])
def test_parse_decimal_refuses_floats(value: float) -> None:
    with pytest.raises(MoneyError, match=r'amount must be a decimal string such as "12.50"'):
        parse_decimal(value, "amount")


@pytest.mark.parametrize("value", [True, False])
def test_parse_decimal_refuses_booleans(value: bool) -> None:
    # bool is an int subclass: True must not silently become 1.
    with pytest.raises(MoneyError, match="decimal string"):
        parse_decimal(value, "total")


@pytest.mark.parametrize("value", ["abc", "", "12,50", "1.2.3", "€12", "1_000"])
def test_parse_decimal_refuses_text_that_is_not_a_number(value: str) -> None:
    with pytest.raises(MoneyError, match="is not a decimal number"):
        parse_decimal(value, "amount")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "sNaN", Decimal("NaN")])
def test_parse_decimal_refuses_non_finite_numbers(value: object) -> None:
    with pytest.raises(MoneyError, match="not a finite number"):
        parse_decimal(value, "amount")


@pytest.mark.parametrize("value", [None, [1], {"amount": 1}])
def test_parse_decimal_refuses_other_types(value: object) -> None:
    with pytest.raises(MoneyError, match="decimal string"):
        parse_decimal(value, "amount")


def test_parse_decimal_names_the_field_in_its_message() -> None:
    with pytest.raises(MoneyError, match=r"^unit_price "):
        parse_decimal("lots", "unit_price")


# --- to_minor --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "exponent", "expected"),
    [
        ("12.50", 2, 1250),
        ("12.5", 2, 1250),
        ("12.500", 2, 1250),
        ("12", 2, 1200),
        ("0.01", 2, 1),
        ("0", 2, 0),
        ("740", 0, 740),
        ("740.0", 0, 740),
        ("1.234", 3, 1234),
        ("1E+2", 2, 10000),
    ],
)
def test_to_minor_converts_exactly(amount: str, exponent: int, expected: int) -> None:
    result = to_minor(Decimal(amount), exponent, "total", "EUR")
    assert result == expected
    assert isinstance(result, int)


@pytest.mark.parametrize(
    ("amount", "exponent", "currency"),
    [("12.345", 2, "EUR"), ("0.001", 2, "EUR"), ("7.5", 0, "JPY"), ("1.2345", 3, "BHD")],
)
def test_to_minor_refuses_more_decimals_than_the_currency_has(
    amount: str, exponent: int, currency: str
) -> None:
    with pytest.raises(
        MoneyError, match=rf"total {amount} has more decimals than {currency} allows \({exponent}\)"
    ):
        to_minor(Decimal(amount), exponent, "total", currency)


@pytest.mark.parametrize("amount", ["-0.01", "-12.50", "-1"])
def test_to_minor_refuses_negative_amounts(amount: str) -> None:
    with pytest.raises(MoneyError, match=rf"total must not be negative \(got {amount}\)"):
        to_minor(Decimal(amount), 2, "total", "EUR")


# --- format_minor ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (1250, 2, "12.50"),
        (5, 2, "0.05"),
        (0, 2, "0.00"),
        (100, 2, "1.00"),
        (1250, 0, "1250"),
        (0, 0, "0"),
        (1234, 3, "1.234"),
        (7, 3, "0.007"),
        (-5, 2, "-0.05"),
        (-1250, 2, "-12.50"),
    ],
)
def test_format_minor(minor: int, exponent: int, text: str) -> None:
    assert format_minor(minor, exponent) == text


@given(minor=st.integers(min_value=0, max_value=10**15), exponent=st.sampled_from([0, 2, 3]))
def test_format_minor_round_trips_through_to_minor(minor: int, exponent: int) -> None:
    text = format_minor(minor, exponent)
    assert to_minor(parse_decimal(text, "amount"), exponent, "amount", "XYZ") == minor
