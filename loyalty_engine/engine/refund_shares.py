"""How much of each effect of a purchase a refund reverses (pure).

An effect (the points of a rule, a counter's change) is reversed in proportion to the
refunded share of the spend it was earned on: the purchase's lines that its program does
not exclude and that its rule counts (a stamp card on coffee counts the coffee lines),
weighted by a points_per_spend rule's category multipliers (returning beans that earned
double takes back double). Multipliers that apply to some items only are not weighted.
A refund that lists its items refunds exactly those; one without items refunds every line
pro rata to its amount. Shares are cumulative and rounded half up, so refunds in parts add
up to the whole, and a purchase refunded in full reverses every effect exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

from loyalty_engine.rules.compiled import CompiledProgram


class Line(NamedTuple):
    """A purchase line as refunds see it."""

    sku: str
    category: str
    amount_minor: int
    quantity_milli: int = 1000


@dataclass(frozen=True, slots=True)
class Refunded:
    """One refund of the purchase: its amount and, if it listed them, (sku, amount) items."""

    amount_minor: int
    items: tuple[tuple[str, int], ...] | None


class RefundShares:
    """The shares of one refund, given the refunds of the same purchase before it."""

    def __init__(self, lines: Sequence[Line], total_minor: int, earlier: Sequence[Refunded],
                 this: Refunded) -> None:
        self.lines = lines
        self.total = total_minor
        self.earlier = earlier
        self.this = this
        self.full = sum(r.amount_minor for r in earlier) + this.amount_minor >= total_minor
        self._scopes: dict[tuple[str, str | None], tuple[int, Fraction, Fraction]] = {}

    def back_selected(self, value: int, program: CompiledProgram, key: str,
                      selects: Callable[[str, str], bool]) -> int:
        """What this refund reverses of an effect counted on the program's lines that a
        selection takes (a tier's quantity of nights): refunded lines' share by amount, so
        a line refunded whole gives back exactly its quantity."""
        base, before, after = self._scope(program, key, selects)
        if base == 0:
            return 0
        return _rounded(value, after, base) - _rounded(value, before, base)

    def back(self, value: int, program: CompiledProgram, rule_id: str | None) -> int:
        """What this refund reverses of an effect `value` earned under program's rule
        (None, or an unknown rule: the program's eligible lines)."""
        base, before, after = self._scope(program, rule_id)
        if base == 0:
            return 0
        return _rounded(value, after, base) - _rounded(value, before, base)

    def _scope(self, program: CompiledProgram, rule_id: str | None,
               selects: Callable[[str, str], bool] | None = None
               ) -> tuple[int, Fraction, Fraction]:
        key = (program.program_id, rule_id)
        found = self._scopes.get(key)
        if found is not None:
            return found
        rule = None if rule_id is None or selects is not None else program.rule(rule_id)
        when = None if rule is None else rule.when
        # Each SKU in scope with its weight, as the rule's kind weighs it (a points_per_spend
        # rule's category multiplier: beans earning double take back double), 1 without one.
        weights: dict[str, int] = {}
        for line in self.lines:
            if (line.category in program.excluded_categories
                    or line.sku in program.excluded_skus
                    or (when is not None and when.item_scoped
                        and not when.selects(line.category, line.sku))
                    or (selects is not None and not selects(line.category, line.sku))

                    or (rule is not None
                        and not rule.counts_line(line.amount_minor, line.quantity_milli))):
                continue
            weights[line.sku] = 1 if rule is None else rule.refund_weight(line.category)
        base = sum(line.amount_minor * weights[line.sku] for line in self.lines
                   if line.sku in weights)
        before = sum((self._refunded(r, weights, base) for r in self.earlier), Fraction(0))
        after = before + self._refunded(self.this, weights, base)
        if self.full:
            after = Fraction(base)
        found = (base, min(before, Fraction(base)), min(after, Fraction(base)))
        self._scopes[key] = found
        return found

    def _refunded(self, refund: Refunded, weights: dict[str, int], base: int) -> Fraction:
        if refund.items is None:
            return Fraction(refund.amount_minor * base, self.total) if self.total else Fraction(0)
        return Fraction(sum(amount * weights[sku] for sku, amount in refund.items
                            if sku in weights))


def _rounded(value: int, part: Fraction, whole: int) -> int:
    """round_half_up(value x part / whole), for value of either sign."""
    sign = -1 if value < 0 else 1
    return sign * int((2 * abs(value) * part + whole) // (2 * whole))
