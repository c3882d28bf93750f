"""A member's figures in one program as of an instant: first and last purchase, how many
purchases on how many distinct days, the spend net of refunds, and what follows from them
(tenure, recency, mean gap between purchase days, average spend), plus the points earned
and redeemed. Pure: the store reads the raw figures (records/member_figures.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction

from loyalty_engine.finance.values import round_half_up


@dataclass(frozen=True, slots=True)
class MemberFigures:
    """One member's figures as of as_of_day (the as-of instant's day in the program's zone).

    Days are local purchase days in the program's time zone; spend_minor is the sum of the
    counted purchases' net amounts (the program's counted lines, net of refunds by the as-of
    instant); purchases refunded in full count nowhere. points_earned: points credited
    (purchase and bonus earnings, goodwill adjustments) less what refunds took back;
    points_redeemed: redemptions less their reversals."""

    member_id: str
    as_of_day: date
    first_at: datetime
    last_at: datetime
    first_day: date
    last_day: date
    purchases: int
    days: int
    spend_minor: int
    points_earned: int = 0
    points_redeemed: int = 0

    @property
    def tenure_days(self) -> int:
        """Days from the first purchase day to the as-of day (0 on the first day)."""
        return (self.as_of_day - self.first_day).days

    @property
    def recency_days(self) -> int:
        """Days from the last purchase day to the as-of day (0: bought that day)."""
        return (self.as_of_day - self.last_day).days

    @property
    def mean_gap_days(self) -> float | None:
        """The mean gap between distinct purchase days: (last day - first day) / (days - 1);
        None with a single purchase day."""
        if self.days < 2:
            return None
        return (self.last_day - self.first_day).days / (self.days - 1)

    @property
    def average_spend_minor(self) -> int:
        """Spend per purchase in minor units, rounded half up."""
        return half_up(self.spend_minor, self.purchases)

    def as_json(self) -> dict[str, object]:
        """The figures as the reports print them (days as ISO dates)."""
        return {
            "member_id": self.member_id,
            "first_purchase_at": self.first_at, "last_purchase_at": self.last_at,
            "first_purchase_day": self.first_day.isoformat(),
            "last_purchase_day": self.last_day.isoformat(),
            "purchases": self.purchases, "days": self.days,
            "spend_minor": self.spend_minor,
            "average_spend_minor": self.average_spend_minor,
            "tenure_days": self.tenure_days, "recency_days": self.recency_days,
            "mean_gap_days": (None if self.mean_gap_days is None
                              else round(self.mean_gap_days, 2)),
            "points_earned": self.points_earned, "points_redeemed": self.points_redeemed,
        }


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up (half away from zero), exactly; 0 when the
    denominator is 0."""
    return 0 if denominator == 0 else round_half_up(Fraction(numerator, denominator))
