"""The program language as pydantic models: what a file under rules/ may say."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from loyalty_engine.domain.money import (
    CurrencyCode,
    MoneyError,
    currency_exponent,
    parse_decimal,
    to_minor,
)

Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Rounding = Literal["floor", "ceiling", "half_up", "half_even"]


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exclusions(_Strict):
    """Items that never earn and never count as qualifying spend."""

    categories: list[Label] = []
    skus: list[Label] = []


class PointsPerSpendRule(_Strict):
    """Points for every whole currency unit of eligible spend."""

    id: Slug
    kind: Literal["points_per_spend"]
    description: str | None = None
    points_per_unit: PositiveDecimal = Field(
        description="points per one unit of the currency (1 EUR), before multipliers"
    )
    rounding: Rounding = "floor"
    minimum_purchase: DecimalIn = Field(
        default=Decimal(0),
        ge=0,
        description="eligible spend (after exclusions) below which the rule earns nothing",
    )
    category_multipliers: dict[Label, PositiveDecimal] = {}


class ProgramDefinition(_Strict):
    """One loyalty program: the root of a file under rules/."""

    program: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: CurrencyCode
    timezone: str
    enrolment: Literal["open"]
    exclude: Exclusions = Exclusions()
    rules: Annotated[list[PointsPerSpendRule], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone such as 'Europe/Amsterdam'"
            ) from None
        return value

    @field_validator("rules")
    @classmethod
    def _consistent_rules(
        cls, rules: list[PointsPerSpendRule], info: ValidationInfo
    ) -> list[PointsPerSpendRule]:
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.id in seen:
                raise LocatedValueError((index, "id"), f"rule id {rule.id!r} is used twice; "
                                        "rule ids must be unique within a program")
            seen.add(rule.id)
        currency = info.data.get("currency")
        if currency is None:  # already reported as a currency error
            return rules
        exponent = currency_exponent(currency)
        for index, rule in enumerate(rules):
            try:
                to_minor(rule.minimum_purchase, exponent, "amount", currency)
            except MoneyError as exc:
                raise LocatedValueError((index, "minimum_purchase"), str(exc)) from None
        return rules
