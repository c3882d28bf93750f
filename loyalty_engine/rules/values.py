"""Values the program language's models share: ids, exact decimals, located errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated

from pydantic import BeforeValidator, Field

from loyalty_engine.domain.money import MoneyError, parse_decimal
from loyalty_engine.domain.periods import add_months

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


# Set while programs already stored are compiled again (rules.expressions.stored_programs):
# they were accepted by the validation of their day, and the checks added since (slips a
# program manager makes) must not refuse one and with it every purchase.
STORED: ContextVar[bool] = ContextVar("stored_programs", default=False)


def checking_new_file() -> bool:
    """Whether the file being validated is new (not a stored version compiled again)."""
    return not STORED.get()


@lru_cache(maxsize=256)
def shortest_months(months: int) -> int:
    """The fewest days `months` months after a date can be (from 31 January one month is
    28 days): over a whole 400-year cycle of start dates the leap years repeat, so over
    four years of starts from a leap year's first day every case is seen."""
    start = date(2000, 1, 1)
    return min((add_months(day, months) - day).days
               for day in (start + timedelta(days=n) for n in range(4 * 366)))


# Inside with_every_key(), dumps keep the later keys at their default too: a diff compares
# what two versions mean (review: monthly -> quarterly), a hash only what was written.
_EVERY_KEY: ContextVar[bool] = ContextVar("every_key", default=False)


def unused(value: object) -> bool:
    """`exclude_if` of a key added after programs were first stored, whose default is None
    or empty: left out of the dump (and so of the content hash) while unused, so that an
    unchanged file keeps the hash of the version stored before the key existed and
    applying it again is no new version."""
    return not _EVERY_KEY.get() and (value is None or value == [] or value == {})


def at_default(default: object) -> Callable[[object], bool]:
    """`exclude_if` of such a key with another default: left out while at it."""
    return lambda value: not _EVERY_KEY.get() and value == default


@contextmanager
def with_every_key() -> Iterator[None]:
    """Dumps made inside keep every key, the later ones at their default too."""
    token = _EVERY_KEY.set(True)
    try:
        yield
    finally:
        _EVERY_KEY.reset(token)
