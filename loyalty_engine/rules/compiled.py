"""Compiled programs: the validated definition turned into integer arithmetic, built once."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Literal
from zoneinfo import ZoneInfo

from loyalty_engine.domain.money import currency_exponent, to_minor
from loyalty_engine.rules.schema import ProgramDefinition, Rounding


@dataclass(frozen=True, slots=True)
class PointsPerSpend:
    """points = round(sum(line amount x weight(category)) / denominator).

    Weights are integers over a common denominator so that evaluation is exact integer
    arithmetic: weight = points_per_unit x multiplier x denominator / 10**exponent.
    """

    rule_id: str
    kind: Literal["points_per_spend"]
    points_per_unit: Decimal
    rounding: Rounding
    minimum_minor: int
    default_weight: int
    category_weights: dict[str, int]
    category_multipliers: dict[str, Decimal]
    denominator: int


@dataclass(frozen=True, slots=True)
class CompiledProgram:
    """Everything the engine needs to evaluate events under one program version."""

    program_id: str
    name: str
    currency: str
    exponent: int
    timezone: ZoneInfo
    enrolment: Literal["open"]
    excluded_categories: frozenset[str]
    excluded_skus: frozenset[str]
    rules: tuple[PointsPerSpend, ...]


def compile_program(definition: ProgramDefinition) -> CompiledProgram:
    """Turn a validated definition into its compiled form."""
    exponent = currency_exponent(definition.currency)
    rules = []
    for rule in definition.rules:
        base = Fraction(rule.points_per_unit) / 10**exponent
        factors = {cat: base * Fraction(m) for cat, m in rule.category_multipliers.items()}
        denominator = lcm(base.denominator, *(f.denominator for f in factors.values()))
        rules.append(
            PointsPerSpend(
                rule_id=rule.id,
                kind=rule.kind,
                points_per_unit=rule.points_per_unit,
                rounding=rule.rounding,
                minimum_minor=to_minor(rule.minimum_purchase, exponent, "minimum_purchase",
                                       definition.currency),
                default_weight=int(base * denominator),
                category_weights={c: int(f * denominator) for c, f in factors.items()},
                category_multipliers=dict(rule.category_multipliers),
                denominator=denominator,
            )
        )
    return CompiledProgram(
        program_id=definition.program,
        name=definition.name,
        currency=definition.currency,
        exponent=exponent,
        timezone=ZoneInfo(definition.timezone),
        enrolment=definition.enrolment,
        excluded_categories=frozenset(definition.exclude.categories),
        excluded_skus=frozenset(definition.exclude.skus),
        rules=tuple(rules),
    )
