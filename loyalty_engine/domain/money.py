"""Currencies and money: decimal strings at the edges, integer minor units inside."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated

from iso4217 import Currency
from pydantic import AfterValidator


class MoneyError(ValueError):
    """An amount or currency that cannot be accepted; the message says why, and `field`
    names the offending field by its path (items[0].unit_price) when one is to blame."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@lru_cache(maxsize=512)
def currency_exponent(code: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (EUR: 2, JPY: 0, BHD: 3)."""
    if not isinstance(code, str) or len(code) != 3 or not code.isalpha() or not code.isupper():
        raise MoneyError(f"{code!r} is not an ISO 4217 currency code (three capital letters)")
    try:
        exponent = Currency(code).exponent
    except ValueError:
        raise MoneyError(f"{code} is not an ISO 4217 currency code") from None
    if exponent is None:
        # Funds and precious metals (XAU, XDR, ...) have no minor unit: not money a till takes.
        raise MoneyError(f"{code} has no minor unit and cannot be used for purchases")
    return int(exponent)


def _known_currency(value: str) -> str:
    try:
        currency_exponent(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None
    return value


# An ISO 4217 code with a minor unit, as a pydantic field type (events and program files).
CurrencyCode = Annotated[str, AfterValidator(_known_currency)]


# Exponents beyond these make no amount a till sends, and arithmetic on them overflows the
# decimal context or rounds silently to zero: refused before anything computes with them.
MAX_DECIMALS = 18
MAX_DIGITS = 24


def _plausible(result: Decimal, what: str, value: object) -> Decimal:
    exponent = result.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
        raise MoneyError(f"{what} {value!s} has more than {MAX_DECIMALS} decimals")
    if result and result.adjusted() >= MAX_DIGITS:
        raise MoneyError(f"{what} {value!s} is larger than any amount this engine accepts")
    return result


def parse_decimal(value: object, what: str) -> Decimal:
    """A Decimal from a decimal string or an integer; floats are refused (they lose cents),
    and so are absurd exponents (1e-999999999, 9e999999999)."""
    if isinstance(value, str):
        try:
            if "_" in value:  # Decimal() would read "1_000" as 1000; a till never means that
                raise InvalidOperation
            result = Decimal(value)
        except InvalidOperation:
            raise MoneyError(f"{what} {value!r} is not a decimal number") from None
        if not result.is_finite():
            raise MoneyError(f"{what} {value!r} is not a finite number")
        return _plausible(result, what, value)
    if isinstance(value, (bool, float)):
        raise MoneyError(f"{what} must be a decimal string such as \"12.50\", not a JSON number")
    if isinstance(value, int):
        return _plausible(Decimal(value), what, value)
    if isinstance(value, Decimal):
        result = value
    else:
        raise MoneyError(f"{what} must be a decimal string such as \"12.50\"")
    if not result.is_finite():
        raise MoneyError(f"{what} {value!r} is not a finite number")
    return _plausible(result, what, value)


# The largest amount accepted, in minor units: far above any basket, far below the 64-bit
# columns' limit, so sums of many amounts cannot overflow either.
MAX_MINOR = 10**15


def to_minor(amount: Decimal, exponent: int, what: str, currency: str) -> int:
    """Exact integer minor units of amount; more decimals than the currency has is an error."""
    if amount < 0:
        raise MoneyError(f"{what} must not be negative (got {amount})", what)
    if amount.scaleb(exponent) > MAX_MINOR:
        raise MoneyError(f"{what} {amount} is larger than any amount this engine accepts",
                         what)
    scaled = amount.scaleb(exponent)
    minor = int(scaled)
    if minor != scaled:
        raise MoneyError(
            f"{what} {amount} has more decimals than {currency} allows ({exponent})", what
        )
    return minor


def format_minor(minor: int, exponent: int) -> str:
    """Minor units back to a plain decimal string (1250, 2 -> "12.50")."""
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}"


def format_money(minor: int, currency: str) -> str:
    """An amount for people: major units with the currency (6000, "EUR" -> "60.00 EUR")."""
    return f"{format_minor(minor, currency_exponent(currency))} {currency}"
