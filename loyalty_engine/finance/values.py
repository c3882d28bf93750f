"""The money value of points: a program's point value (major units of its currency per
point) turned into exact minor units, rounded half up only where a figure is shown."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.domain.money import currency_exponent


class ReportError(LoyaltyError):
    """A report that cannot be produced as asked (a point value not above zero, a period in
    the future, a window that ends before it begins)."""


def check_point_value(point_value: Decimal, program_id: str = "") -> Decimal:
    """The point value, refused unless above zero (a point worth nothing or less makes
    every money figure of the program meaningless)."""
    if not point_value.is_finite() or point_value <= 0:
        where = f" of program {program_id!r}" if program_id else ""
        raise ReportError(f"the point value{where} is {point_value}; it must be above zero "
                          "(economics: point_value, money per point)")
    return point_value


def minor_per_point(point_value: Decimal, currency: str) -> Fraction:
    """Minor units of the currency one point is worth, exactly (0.01 EUR: 1 cent)."""
    return Fraction(point_value) * Fraction(10) ** currency_exponent(currency)


def round_half_up(value: Fraction) -> int:
    """The nearest integer, halves away from zero."""
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if 2 * rest >= magnitude.denominator:
        whole += 1
    return sign * whole


def value_minor(points: int | Fraction, per_point: Fraction) -> int:
    """The money value of points in minor units, rounded half up."""
    return round_half_up(Fraction(points) * per_point)


def share(part: int | Fraction, whole: int | Fraction) -> Fraction | None:
    """part / whole exactly; None when whole is zero."""
    return None if whole == 0 else Fraction(part) / Fraction(whole)


def decimal_of(value: Fraction | None, places: int = 4) -> Decimal | None:
    """A fraction as a Decimal of `places` places, rounded half up (for showing)."""
    if value is None:
        return None
    return Decimal(round_half_up(value * 10 ** places)).scaleb(-places)
