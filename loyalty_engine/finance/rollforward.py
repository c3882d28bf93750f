"""The points roll-forward, per program and period, exactly from the ledger:

    opening + earned - redeemed + reversed - expired - refunded + adjusted + other = closing

Every movement is the sum of the ledger entries of its kinds dated in the period (signed as
the ledger signs them, so the identity is a sum of integers and holds exactly):

    earned    kind earn (a purchase's points, a period bonus)
    redeemed  kind redeem and fee (points spent on a reward, on points, on a club fee),
              shown positive
    reversed  kind unredeem and fee_refund (a redemption or a fee paid in points undone)
    expired   kind expire, shown positive
    refunded  kind refund and debt (points a refund took back, or a later earning repaid
              to a refund's debt), shown positive
    adjusted  kind adjust (an operator's credit or correction, signed)
    other     any other kind (none today; kept so that the identity never hides one)

The opening of a period is the closing of the one before (the sum of every entry dated
before it); the closing of the last period is what the balances show (spendable + pending,
as `loyalty db check` proves the ledger sums to)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loyalty_engine.finance.values import ReportError

# Ledger kind -> (movement, sign shown: +1 as signed in the ledger, -1 negated).
MOVEMENTS: dict[str, tuple[str, int]] = {
    "earn": ("earned", 1), "redeem": ("redeemed", -1), "fee": ("redeemed", -1),
    "unredeem": ("reversed", 1), "fee_refund": ("reversed", 1), "expire": ("expired", -1),
    "refund": ("refunded", -1), "debt": ("refunded", -1), "adjust": ("adjusted", 1),
}
# The movements in the order shown, with the sign each adds to the closing.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("earned", 1), ("redeemed", -1), ("reversed", 1), ("expired", -1), ("refunded", -1),
    ("adjusted", 1), ("other", 1))


@dataclass(slots=True)
class Period:
    """One period's roll-forward of a program's points."""

    key: str
    opening: int
    movements: dict[str, int] = field(default_factory=lambda: {c: 0 for c, _ in COLUMNS})

    @property
    def closing(self) -> int:
        return self.opening + sum(sign * self.movements[c] for c, sign in COLUMNS)

    def as_json(self) -> dict[str, Any]:
        return {"period": self.key, "opening": self.opening, **self.movements,
                "closing": self.closing}


def movement_of(kind: str) -> tuple[str, int]:
    """The roll-forward column a ledger kind belongs to, and the sign it is shown with."""
    return MOVEMENTS.get(kind, ("other", 1))


def roll_forward(opening: int, keys: Iterable[str],
                 sums: Mapping[tuple[str, str], int]) -> list[Period]:
    """Periods in order from `opening` (the sum of every entry before the first): sums maps
    (period key, ledger kind) -> the ledger's signed sum. Entries of a period not in keys
    are refused: the identity would not tie."""
    ordered = list(keys)
    known = set(ordered)
    stray = sorted({key for key, _ in sums} - known)
    if stray:
        raise ReportError(f"ledger entries fall in periods outside the report: {stray[0]}")
    by_period: dict[str, dict[str, int]] = {key: {} for key in ordered}
    for (key, kind), points in sums.items():
        by_period[key][kind] = by_period[key].get(kind, 0) + points
    periods: list[Period] = []
    running = opening
    for key in ordered:
        period = Period(key, running)
        for kind, points in by_period[key].items():
            column, sign = movement_of(kind)
            period.movements[column] += sign * points
        periods.append(period)
        running = period.closing
        # The identity, by construction: the closing is the opening plus the signed sum.
        assert running == period.opening + sum(by_period[key].values())
    return periods
