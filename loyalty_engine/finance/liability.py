"""What the points outstanding are worth: their value at the program's point value, the
part expected never to be redeemed (breakage) and the expected cost of the rest.

    outstanding      = spendable + pending points (negative spendable balances, points
                       owed after a refund, count against it: they are what the ledger sums)
    value            = outstanding x point value
    expected cost    = outstanding x expected redemption rate x point value
    expected breakage = outstanding - outstanding x expected redemption rate (points), and
                       its value

The expected redemption rate is that of the points outstanding (breakage.Projection
.outstanding_rate), not of all points ever issued: points already redeemed or expired are
no longer owed."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.finance.values import decimal_of, minor_per_point, round_half_up, value_minor


@dataclass(frozen=True, slots=True)
class Liability:
    """A program's points liability as of an instant."""

    program_id: str
    currency: str
    point_value: Decimal
    spendable: int
    pending: int
    redemption_rate: Fraction  # expected share of the outstanding points to be redeemed
    basis: str  # where the rate comes from
    unrecorded_expiry: int = 0  # expired by the instant, the expire step not yet run

    @property
    def outstanding(self) -> int:
        return self.spendable + self.pending

    @property
    def per_point(self) -> Fraction:
        return minor_per_point(self.point_value, self.currency)

    @property
    def value_minor(self) -> int:
        return value_minor(self.outstanding, self.per_point)

    @property
    def expected_redemptions(self) -> int:
        """Points of the outstanding expected to be redeemed, rounded half up."""
        return round_half_up(self.outstanding * self.redemption_rate)

    @property
    def expected_breakage(self) -> int:
        return self.outstanding - self.expected_redemptions

    @property
    def expected_cost_minor(self) -> int:
        """outstanding x expected redemption rate x value, rounded once, half up."""
        return round_half_up(self.outstanding * self.redemption_rate * self.per_point)

    @property
    def breakage_value_minor(self) -> int:
        return self.value_minor - self.expected_cost_minor

    def as_json(self) -> dict[str, Any]:
        exponent = currency_exponent(self.currency)
        return {
            "program_id": self.program_id, "currency": self.currency,
            "point_value": str(self.point_value),
            "spendable": self.spendable, "pending": self.pending,
            "outstanding": self.outstanding,
            "unrecorded_expiry": self.unrecorded_expiry,
            "value": format_minor(self.value_minor, exponent),
            "value_minor": self.value_minor,
            "expected_redemption_rate": str(decimal_of(self.redemption_rate, 6)),
            "redemption_basis": self.basis,
            "expected_redemptions": self.expected_redemptions,
            "expected_breakage": self.expected_breakage,
            "expected_cost": format_minor(self.expected_cost_minor, exponent),
            "expected_cost_minor": self.expected_cost_minor,
            "breakage_value": format_minor(self.breakage_value_minor, exponent),
            "breakage_value_minor": self.breakage_value_minor,
        }
