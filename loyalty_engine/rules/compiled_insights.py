"""A program's settings for measuring its members, compiled: economics (margins, the value of
a point, the discount rate), RFM scoring, the segment map, lapse, CLV and the loyalty matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from loyalty_engine.analytics.segments import DEFAULT_SEGMENTS, SegmentMap


@dataclass(frozen=True, slots=True)
class Economics:
    """What a member's spend and points are worth to the program."""

    margin: Fraction = Fraction(30, 100)  # gross margin of spend without a category margin
    category_margins: dict[str, Fraction] = field(default_factory=dict)
    point_value: Decimal = Decimal("0.01")  # money (program currency, major units) per point
    annual_discount_rate: Fraction = Fraction(10, 100)

    def margin_of(self, category: str) -> Fraction:
        """The gross margin of spend in a category."""
        return self.category_margins.get(category, self.margin)


@dataclass(frozen=True, slots=True)
class RfmSettings:
    """How R, F and M are scored: quintiles over the program's purchasing members, or
    fixed boundaries (four ascending cut points each; a value at or below the first cut
    scores 1 for F and M, 5 for recency in days)."""

    recency_days: tuple[int, int, int, int] | None = None
    frequency: tuple[int, int, int, int] | None = None
    monetary_minor: tuple[int, int, int, int] | None = None
    window_months: int | None = None  # only purchases this recent count (None: all)


@dataclass(frozen=True, slots=True)
class LapseRule:
    """When a member of a non-contractual program counts as lapsed: P(alive) below a
    threshold when the model can be fitted (enough repeat customers), else a gap since the
    last purchase over a multiple of the member's own mean gap (or over default_gap_days
    for a member with one purchase day)."""

    p_alive_below: float = 0.3
    gap_multiple: float = 3.0
    default_gap_days: int = 90
    min_repeat_members: int = 30  # fewer repeat customers than this: the gap rule


@dataclass(frozen=True, slots=True)
class ClvSettings:
    """CLV over a horizon; the model's time unit is a week."""

    horizon_weeks: int = 52
    min_repeat_members: int = 30  # fewer: the simple retention-based CLV


@dataclass(frozen=True, slots=True)
class MatrixThresholds:
    """Behavioural x attitudinal loyalty: behaviourally loyal at an F score (or a share of
    wallet, when given) at or above the threshold; attitudinally loyal at the latest NPS
    answer (0-10) or commitment score (1-7) at or above its threshold."""

    f_at_least: int = 4
    wallet_share_at_least: Fraction | None = None
    nps_at_least: int = 9
    commitment_at_least: int = 5


@dataclass(frozen=True, slots=True)
class ProgramInsights:
    """Everything the analytics read from a program file, defaults where it says nothing."""

    economics: Economics = field(default_factory=Economics)
    rfm: RfmSettings = field(default_factory=RfmSettings)
    segments: SegmentMap = DEFAULT_SEGMENTS
    lapse: LapseRule = field(default_factory=LapseRule)
    clv: ClvSettings = field(default_factory=ClvSettings)
    matrix: MatrixThresholds = field(default_factory=MatrixThresholds)
