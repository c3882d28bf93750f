"""Values the program language's models share: ids, exact decimals, located errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, Field

from loyalty_engine.domain.money import MoneyError, parse_decimal

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Label = Annotated[str, Field(min_length=1, max_length=64)]


def _decimal_input(value: object) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a number such as 1 or 0.5")
    if isinstance(value, float):
        # The loader reads YAML numbers as exact Decimals; a float can only come from a
        # definition built in code, where its shortest repr is what was meant.
        value = repr(value)
    try:
        return parse_decimal(value, "value")
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


DecimalIn = Annotated[Decimal, BeforeValidator(_decimal_input)]
PositiveDecimal = Annotated[DecimalIn, Field(gt=0, le=Decimal(1_000_000))]


class LocatedValueError(ValueError):
    """A validation error that knows where below the validated field it belongs.

    `where` extends the field's location (e.g. (1, "id") below "rules"), so that the
    loader can point at the exact line of the offending YAML node.
    """

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
