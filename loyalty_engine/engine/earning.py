"""Earning: which points a purchase earns under a compiled program, and why."""

from __future__ import annotations

from typing import Any

from loyalty_engine.domain.decisions import EarnPoints
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.rules.compiled import CompiledProgram, PointsPerSpend
from loyalty_engine.rules.schema import Rounding


def evaluate_purchase(program: CompiledProgram, purchase: Purchase) -> list[EarnPoints]:
    """The points a purchase earns under program; rules that earn nothing produce no decision."""
    eligible = [
        item
        for item in purchase.items
        if item.category not in program.excluded_categories
        and item.sku not in program.excluded_skus
    ]
    eligible_minor = sum(item.amount_minor for item in eligible)
    decisions = []
    for rule in program.rules:
        decision = _points_per_spend(program, rule, eligible, eligible_minor, purchase)
        if decision is not None:
            decisions.append(decision)
    return decisions


def _points_per_spend(
    program: CompiledProgram,
    rule: PointsPerSpend,
    eligible: list[Any],
    eligible_minor: int,
    purchase: Purchase,
) -> EarnPoints | None:
    if eligible_minor == 0 or eligible_minor < rule.minimum_minor:
        return None
    weights = rule.category_weights
    numerator = 0
    multiplied: dict[str, int] = {}
    for item in eligible:
        weight = weights.get(item.category)
        if weight is None:
            numerator += item.amount_minor * rule.default_weight
        else:
            numerator += item.amount_minor * weight
            multiplied[item.category] = multiplied.get(item.category, 0) + item.amount_minor
    points = round_points(numerator, rule.denominator, rule.rounding)
    if points <= 0:
        return None
    reason: dict[str, Any] = {
        "eligible_spend_minor": eligible_minor,
        "excluded_items": len(purchase.items) - len(eligible),
        "points_per_unit": str(rule.points_per_unit),
        "rounding": rule.rounding,
    }
    if multiplied:
        reason["multipliers"] = {
            category: {"spend_minor": spend, "multiplier": str(rule.category_multipliers[category])}
            for category, spend in sorted(multiplied.items())
        }
    return EarnPoints(program.program_id, rule.rule_id, points, reason)


def round_points(numerator: int, denominator: int, rounding: Rounding) -> int:
    """numerator / denominator rounded to a whole number of points (both non-negative)."""
    quotient, remainder = divmod(numerator, denominator)
    if remainder == 0 or rounding == "floor":
        return quotient
    if rounding == "ceiling":
        return quotient + 1
    twice = 2 * remainder
    if twice > denominator:
        return quotient + 1
    if twice < denominator:
        return quotient
    if rounding == "half_up":
        return quotient + 1
    return quotient + (quotient % 2)  # half_even: to the even neighbour
