"""The program language's keys for measuring members: `economics:` (margins, the value of a
point, the discount rate), `analytics:` (RFM scoring, lapse, CLV, the loyalty matrix) and
`segments:` (the segment map over R, F and M scores); and their compiled form
(rules/compiled_insights.ProgramInsights).

A segment map must put each of the 125 score cells in exactly one segment: a box that
takes a cell an earlier segment holds is refused where it is written, and the cells no
box takes are named at the `segments:` key, as boxes that could be pasted into the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from loyalty_engine.analytics.segments import DEFAULT_SEGMENTS, SCORES, ScoreRange, SegmentMap
from loyalty_engine.rules.compiled_insights import (
    ClvSettings,
    Economics,
    LapseRule,
    MatrixThresholds,
    ProgramInsights,
    RfmSettings,
)
from loyalty_engine.rules.expressions import compile_expression, segment_constants
from loyalty_engine.rules.values import DecimalIn, Label, LocatedValueError

_ECONOMICS = Economics()
_LAPSE = LapseRule()
_CLV = ClvSettings()
_MATRIX = MatrixThresholds()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _percent(what: str, above_zero: bool = False) -> Callable[[Decimal], Decimal]:
    def check(value: Decimal) -> Decimal:
        if value > 100:
            raise ValueError(f"{what} {value} % is above 100 %: it is a percentage, 0 to 100")
        if value < 0 or (above_zero and value == 0):
            low = "above 0" if above_zero else "0"
            raise ValueError(f"{what} {value} % is out of range: it is a percentage, {low} "
                             "to 100")
        return value
    return check


def _as_percent(share: Fraction) -> Decimal:
    return Decimal(share.numerator * 100) / Decimal(share.denominator)


MarginPercent = Annotated[DecimalIn, AfterValidator(_percent("gross margin"))]


def _margin_shorthand(value: object) -> object:
    # `margin: 40` is short for `margin: {default: 40}`: both mean (and hash) the same.
    return value if isinstance(value, Mapping) else {"default": value}


class Margins(_Strict):
    """Gross margin as a percentage of spend: one for every category, or a default and
    some categories of their own."""

    default: MarginPercent
    categories: dict[Label, MarginPercent] = {}


POINT_VALUE_PLACES = 6  # a point is often worth a fraction of a cent (0.005 EUR)


def _point_value(value: Decimal) -> Decimal:
    """A point value kept exact, to at most POINT_VALUE_PLACES decimal places (not bound to
    the currency's minor unit)."""
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > POINT_VALUE_PLACES:
        raise ValueError(f"point_value {value:f} has more than {POINT_VALUE_PLACES} decimal "
                         "places")
    return value


class EconomicsIn(_Strict):
    """What spend and points are worth to the program (`economics:`)."""

    margin: Annotated[Margins, BeforeValidator(_margin_shorthand)] = Field(
        default_factory=lambda: Margins(default=_as_percent(_ECONOMICS.margin)),
        description="gross margin in percent (0-100), or {default: N, categories: {cat: N}}")
    point_value: Annotated[DecimalIn, Field(gt=0), AfterValidator(_point_value)] | None = Field(
        default=None, description="what one point costs the program, in its currency (up to "
        f"{POINT_VALUE_PLACES} decimal places: often a fraction of the minor unit); absent: "
        f"{_ECONOMICS.point_value}")
    discount_rate: Annotated[DecimalIn, AfterValidator(_percent("discount_rate"))] = Field(
        default=_as_percent(_ECONOMICS.annual_discount_rate),
        description="annual discount rate in percent, for lifetime values")


def _ascending(what: str) -> Callable[[list[Any]], list[Any]]:
    def check(cuts: list[Any]) -> list[Any]:
        for index in range(1, len(cuts)):
            if cuts[index] <= cuts[index - 1]:
                raise LocatedValueError(
                    (index,), f"{what} cut points must rise: {cuts[index]} is not above "
                    f"{cuts[index - 1]} (four cut points make five scores)")
        return cuts
    return check


_FOUR = Field(min_length=4, max_length=4)
RecencyCuts = Annotated[list[Annotated[int, Field(ge=0, le=36500)]], _FOUR,
                        AfterValidator(_ascending("recency_days"))]
FrequencyCuts = Annotated[list[Annotated[int, Field(ge=1, le=10_000_000)]], _FOUR,
                          AfterValidator(_ascending("frequency"))]
MonetaryCuts = Annotated[list[Annotated[DecimalIn, Field(ge=0)]], _FOUR,
                         AfterValidator(_ascending("monetary"))]


class RfmBoundaries(_Strict):
    """Fixed cut points instead of quintiles, each four ascending values: recency in days
    (at or below the first cut scores 5), frequency in purchases and monetary value in the
    program's currency (at or below the first cut scores 1)."""

    recency_days: RecencyCuts | None = None
    frequency: FrequencyCuts | None = None
    monetary: MonetaryCuts | None = None


class RfmIn(_Strict):
    """How R, F and M are scored."""

    boundaries: RfmBoundaries = RfmBoundaries()
    window_months: Annotated[int, Field(ge=1, le=1200)] | None = Field(
        default=None, description="only purchases of the last N months count; absent: all")


class LapseIn(_Strict):
    """When a member counts as lapsed (`analytics: lapse:`)."""

    p_alive_below: Annotated[DecimalIn, Field(gt=0, lt=1)] = Decimal(str(_LAPSE.p_alive_below))
    gap_multiple: Annotated[DecimalIn, Field(gt=1, le=1000)] = Decimal(str(_LAPSE.gap_multiple))
    default_gap_days: Annotated[int, Field(ge=1, le=3650)] = _LAPSE.default_gap_days
    min_repeat_members: Annotated[int, Field(ge=1, le=10_000_000)] = _LAPSE.min_repeat_members


class ClvIn(_Strict):
    """Lifetime value (`analytics: clv:`)."""

    horizon_weeks: Annotated[int, Field(ge=1, le=1040)] = _CLV.horizon_weeks
    min_repeat_members: Annotated[int, Field(ge=1, le=10_000_000)] = _CLV.min_repeat_members


class LoyaltyMatrixIn(_Strict):
    """Behavioural x attitudinal loyalty thresholds (`analytics: loyalty_matrix:`)."""

    f_at_least: Annotated[int, Field(ge=1, le=5)] = _MATRIX.f_at_least
    wallet_share_at_least: Annotated[
        DecimalIn, AfterValidator(_percent("wallet_share_at_least", above_zero=True))
    ] | None = None
    nps_at_least: Annotated[int, Field(ge=0, le=10)] = _MATRIX.nps_at_least
    commitment_at_least: Annotated[int, Field(ge=1, le=7)] = _MATRIX.commitment_at_least


class AnalyticsIn(_Strict):
    """How the analytics measure the program's members (`analytics:`)."""

    rfm: RfmIn = RfmIn()
    lapse: LapseIn = LapseIn()
    clv: ClvIn = ClvIn()
    loyalty_matrix: LoyaltyMatrixIn = LoyaltyMatrixIn()


# --- segments --------------------------------------------------------------------------------

def _score(value: int) -> int:
    if not SCORES.start <= value < SCORES.stop:
        raise ValueError(f"score {value} is out of range: R, F and M scores are 1 to 5")
    return value


Score = Annotated[int, AfterValidator(_score)]


def _span_shorthand(value: object) -> object:
    # `r: 5` is short for `r: [5, 5]` (its score checked once, as written).
    if isinstance(value, int) and not isinstance(value, bool):
        return [_score(value)] * 2
    return value


Span = Annotated[tuple[Score, Score], BeforeValidator(_span_shorthand)]
ANY: tuple[int, int] = (1, 5)


class SegmentBox(_Strict):
    """Inclusive score ranges [low, high]; a score left out is any score (1-5)."""

    r: Span = ANY
    f: Span = ANY
    m: Span = ANY

    @model_validator(mode="after")
    def _low_first(self) -> SegmentBox:
        for name in ("r", "f", "m"):
            low, high = getattr(self, name)
            if low > high:
                raise LocatedValueError((name,), f"{name} [{low}, {high}] holds no score: the "
                                        f"lower score comes first ([{high}, {low}])")
        return self

    def scores(self) -> ScoreRange:
        """The box as the analytics read it."""
        return ScoreRange(r=self.r, f=self.f, m=self.m)


SEGMENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
Segments = dict[str, Annotated[list[SegmentBox], Field(min_length=1)]]


def check_segment_names(segments: Segments) -> None:
    """Names as ids are written (a rule's `segments:` and member.segment compare them)."""
    for name in segments:
        if not SEGMENT_NAME.fullmatch(name):
            raise LocatedValueError((name,), f"segment name {name!r} is not an id: lower-case "
                                    "letters, digits, '_', '.' and '-', starting with a letter "
                                    "or digit, at most 64 (e.g. at_risk)")


def check_segment_map(segments: SegmentMap) -> None:
    """Each of the 125 cells in exactly one segment: a box taking a cell an earlier segment
    holds is refused at that box (segment, box index); cells in no segment are named at the
    map. Boxes of one segment may overlap each other."""
    owner: dict[tuple[int, int, int], str] = {}
    for name, boxes in segments.segments:
        mine: set[tuple[int, int, int]] = set()
        for index, box in enumerate(boxes):
            cells = list(box.cells())
            taken = [c for c in cells if c in owner]
            if taken:
                other = owner[taken[0]]
                clash = [c for c in taken if owner[c] == other]
                r, f, m = clash[0]
                raise LocatedValueError(
                    (name, index), f"this box of segment {name!r} overlaps segment {other!r} "
                    f"in {len(clash)} cell{'s' if len(clash) != 1 else ''} (e.g. r {r}, f {f}, "
                    f"m {m}): each cell must be in exactly one segment; narrow one of them")
            mine.update(cells)
        for cell in mine:
            owner[cell] = name
    every = {(r, f, m) for r in SCORES for f in SCORES for m in SCORES}
    missing = every - owner.keys()
    if missing:
        gaps = cover(missing)
        shown = ", ".join(describe_box(b) for b in gaps[:6])
        if len(gaps) > 6:
            shown += f" and {len(gaps) - 6} more box(es)"
        raise LocatedValueError((), f"{len(missing)} of the 125 score cells are in no segment: "
                                f"{shown}; each cell must be in exactly one segment")


def cover(cells: set[tuple[int, int, int]]) -> list[ScoreRange]:
    """Cells as few boxes, greedily: from the lowest cell, as far along m, then f, then r as
    every cell stays in the set."""
    left = set(cells)
    found: list[ScoreRange] = []
    for r, f, m in sorted(cells):
        if (r, f, m) not in left:
            continue
        m_high = m
        while (r, f, m_high + 1) in left:
            m_high += 1
        f_high = f
        while all((r, f_high + 1, x) in left for x in range(m, m_high + 1)):
            f_high += 1
        r_high = r
        while all((r_high + 1, y, x) in left for y in range(f, f_high + 1)
                  for x in range(m, m_high + 1)):
            r_high += 1
        box = ScoreRange((r, r_high), (f, f_high), (m, m_high))
        left -= set(box.cells())
        found.append(box)
    return found


def describe_box(box: ScoreRange) -> str:
    """A box as the file writes it: `{r: [1, 2], f: 3}` (scores at 1-5 left out)."""
    parts = [f"{name}: {low}" if low == high else f"{name}: [{low}, {high}]"
             for name, (low, high) in (("r", box.r), ("f", box.f), ("m", box.m))
             if (low, high) != ANY]
    return "{" + ", ".join(parts) + "}" if parts else "every cell"


def segment_map(segments: Segments | None) -> SegmentMap:
    """The program's map (the shipped default when the file declares none)."""
    if segments is None:
        return DEFAULT_SEGMENTS
    return SegmentMap(tuple((name, tuple(box.scores() for box in boxes))
                            for name, boxes in segments.items()))


def segment_warnings(rules: Sequence[Any], names: Sequence[str], default: bool
                     ) -> list[tuple[tuple[str | int, ...], str]]:
    """Expressions (of a definition's rules and multipliers) comparing member.segment with
    a name that is no segment of the program's map: they never match. member.segment was
    the `segment` attribute before segments existed, so this is most likely a rule written
    for the attribute (compiled at the file's language level: call it inside it)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    whose = "the default map" if default else "the program's map"
    for index, rule in enumerate(rules):
        conditions: list[tuple[tuple[str | int, ...], Any]] = [
            (("rules", index, "when", "expression"), rule.when)]
        conditions += [(("rules", index, "multipliers", m_index, "when", "expression"),
                        multiplier.when)
                       for m_index, multiplier in enumerate(getattr(rule, "multipliers", ()))]
        for where, when in conditions:
            if when is None or when.expression is None:
                continue
            for name, _ in segment_constants(compile_expression(when.expression)):
                if name in names or name == "":
                    continue
                found.append((where, (
                    f"member.segment is the member's RFM segment (of the snapshot in force "
                    f"at the purchase) and {name!r} is no segment of {whose} "
                    f"({', '.join(names)}), so this comparison never matches; for the "
                    f"member's `segment` attribute write has(member.attributes.segment) && "
                    f"member.attributes.segment == {name!r}")))
    return found


# --- compiled ------------------------------------------------------------------------------

def _share(percent: Decimal) -> Fraction:
    return Fraction(percent) / 100


def compile_insights(economics: EconomicsIn, analytics: AnalyticsIn,
                     segments: Segments | None, minor: Callable[[Decimal], int]
                     ) -> ProgramInsights:
    """The settings every analytics part reads (rules/compiled_insights)."""
    cuts = analytics.rfm.boundaries
    lapse, clv, matrix = analytics.lapse, analytics.clv, analytics.loyalty_matrix
    return ProgramInsights(
        economics=Economics(
            margin=_share(economics.margin.default),
            category_margins={c: _share(p) for c, p in economics.margin.categories.items()},
            point_value=(_ECONOMICS.point_value if economics.point_value is None
                         else economics.point_value),
            annual_discount_rate=_share(economics.discount_rate)),
        rfm=RfmSettings(
            recency_days=_four(cuts.recency_days),
            frequency=_four(cuts.frequency),
            monetary_minor=_four(None if cuts.monetary is None
                                 else [minor(v) for v in cuts.monetary]),
            window_months=analytics.rfm.window_months),
        segments=segment_map(segments),
        lapse=LapseRule(p_alive_below=float(lapse.p_alive_below),
                        gap_multiple=float(lapse.gap_multiple),
                        default_gap_days=lapse.default_gap_days,
                        min_repeat_members=lapse.min_repeat_members),
        clv=ClvSettings(horizon_weeks=clv.horizon_weeks,
                        min_repeat_members=clv.min_repeat_members),
        matrix=MatrixThresholds(
            f_at_least=matrix.f_at_least,
            wallet_share_at_least=(None if matrix.wallet_share_at_least is None
                                   else _share(matrix.wallet_share_at_least)),
            nps_at_least=matrix.nps_at_least,
            commitment_at_least=matrix.commitment_at_least),
    )


def _four(values: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    if values is None:
        return None
    a, b, c, d = values
    return a, b, c, d


def money_fields(section: EconomicsIn | AnalyticsIn
                 ) -> list[tuple[tuple[str | int, ...], Decimal]]:
    """The amounts in the program's currency a section writes, with where they are below
    it (their precision is checked by the program, which knows the currency); the point
    value is not one of them: it may be finer than the currency's minor unit."""
    if isinstance(section, EconomicsIn):
        return []  # point_value may be a fraction of the minor unit (_point_value checks it)
    return [(("rfm", "boundaries", "monetary", index), value)
            for index, value in enumerate(section.rfm.boundaries.monetary or ())]
