"""Compiled tiers, clubs and groups: ladders with their window arithmetic, in local dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Literal

from loyalty_engine.domain.periods import add_months
from loyalty_engine.rules.membership import (
    Club,
    CombinedMeasure,
    Group,
    Household,
    Tiers,
    measure_kind,
)

# The counters tier credit (and a waiver's spend) are kept in, by local date (YYYY-MM-DD).
# A days counter holds the day's purchases with eligible spend (a day counts while above
# 0); a quantity measure's counter, named after the measure, its lines' quantity_milli.
CREDIT_COUNTERS = {"spend": "*:spend", "visits": "*:visits", "points": "*:points",
                   "days": "*:days"}
SPEND_COUNTER = "*:spend"
QUANTITY_COUNTER = "*:quantity:"  # + the measure's name

Credit = tuple[int, ...]  # a member's credit per measure of a ladder, in its order


@dataclass(frozen=True, slots=True)
class TierMeasure:
    """One thing a ladder counts: its name, kind, counter and (quantity) line selection."""

    name: str
    kind: Literal["spend", "visits", "points", "days", "quantity"]
    counter: str
    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    unit: str = ""  # what a quantity is shown as (nights); the name otherwise

    def selects(self, category: str, sku: str) -> bool:
        """Whether a quantity measure counts a line."""
        return category in self.categories or sku in self.skus

    @property
    def scale(self) -> int:
        """Stored units per shown unit: quantities are kept in thousandths."""
        return 1000 if self.kind == "quantity" else 1


@dataclass(frozen=True, slots=True)
class TierStep:
    """One rung of a compiled ladder; rank 0 is the lowest."""

    tier_id: str
    name: str
    rank: int
    threshold: int  # minor units for spend; visits or points otherwise
    multiplier: Fraction | None
    perks: frozenset[str]
    # Per measure of the ladder, in its order (threshold is the first); quantities in
    # thousandths.
    thresholds: tuple[int, ...] = ()

    @property
    def needs(self) -> tuple[int, ...]:
        """The threshold per measure (a step built without thresholds: its one threshold)."""
        return self.thresholds or (self.threshold,)


@dataclass(frozen=True, slots=True)
class Window:
    """A qualification window: local dates from start (inclusive) to end (exclusive)."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        """Whether a local date falls in the window."""
        return self.start <= day < self.end


@dataclass(frozen=True, slots=True)
class TierLadder:
    """A program's tiers: what qualifies, over which window, and the downgrade policy."""

    measure: str  # spend | visits | points | days | quantity, or "any:a,b" / "all:a,b"
    window: Literal["calendar_year", "anniversary", "rolling"]
    months: int  # the window's length (12 except for rolling windows)
    downgrade: Literal["qualified", "one_level", "hold_next_period"]
    refunds: Literal["immediate", "at_review"]
    steps: tuple[TierStep, ...]
    measures: tuple[TierMeasure, ...] = ()
    combine: Literal["any", "all"] = "any"  # several measures: one or every threshold
    review: Literal["monthly", "quarterly", "yearly"] = "monthly"  # rolling windows
    review_on: tuple[int, int] = (1, 1)  # a yearly review's (month, day)

    @property
    def counter(self) -> str:
        """The progress counter the (first measure's) qualifying credit is kept in."""
        return self.measures[0].counter

    @property
    def counters(self) -> tuple[str, ...]:
        """Every measure's counter, in the ladder's order."""
        return tuple(m.counter for m in self.measures)

    def reaches(self, step: TierStep, credit: Credit | int) -> bool:
        """Whether credit (per measure) reaches a rung: any or all of its thresholds."""
        got = self._credit(credit)
        hits = [have >= need for have, need in zip(got, step.needs, strict=True)]
        return any(hits) if self.combine == "any" else all(hits)

    def lacking(self, step: TierStep, credit: Credit | int) -> dict[str, int]:
        """What each measure lacks to reach a rung (0 where reached), in stored units."""
        got = self._credit(credit)
        return {m.name: max(0, need - have)
                for m, have, need in zip(self.measures, got, step.needs, strict=True)}

    def _credit(self, credit: Credit | int) -> Credit:
        """A credit per measure; a plain number is that much of every measure."""
        return (credit,) * len(self.measures) if isinstance(credit, int) else credit

    def step(self, tier_id: str) -> TierStep | None:
        """The rung with this id (None for '' or a tier the ladder no longer has)."""
        return next((s for s in self.steps if s.tier_id == tier_id), None)

    def rank(self, tier_id: str) -> int:
        """A tier's place on the ladder; -1 for no tier (or one the ladder dropped)."""
        found = self.step(tier_id)
        return -1 if found is None else found.rank

    def qualified(self, credit: Credit | int) -> str:
        """The highest tier whose threshold the credit reaches ('' if none)."""
        best = ""
        for step in self.steps:
            if self.reaches(step, credit):
                best = step.tier_id
        return best

    def higher(self, first: str, second: str) -> str:
        """Whichever of two tiers ranks higher."""
        return first if self.rank(first) >= self.rank(second) else second

    def one_below(self, tier_id: str) -> str:
        """The tier one level down ('' below the lowest)."""
        rank = self.rank(tier_id)
        return self.steps[rank - 1].tier_id if rank > 0 else ""

    def current_window(self, day: date, enrolled_on: date) -> Window:
        """The window a purchase on `day` counts in (and upgrades are judged on)."""
        if self.window == "calendar_year":
            return Window(date(day.year, 1, 1), date(day.year + 1, 1, 1))
        if self.window == "anniversary":
            start = self._anniversary_on_or_before(day, enrolled_on)
            return Window(start, self._anniversary(enrolled_on, start, 1))
        # The N months up to and including the day: what a review the next morning judges.
        tomorrow = day + timedelta(days=1)
        return Window(add_months(tomorrow, -self.months), tomorrow)

    def review_window(self, review_day: date, enrolled_on: date) -> Window:
        """The window a review on review_day judges: the one that ends that day."""
        if self.window == "calendar_year":
            return Window(date(review_day.year - 1, 1, 1), review_day)
        if self.window == "anniversary":
            return Window(self._anniversary(enrolled_on, review_day, -1), review_day)
        return Window(add_months(review_day, -self.months), review_day)

    def reviews_between(self, after: date, through: date, enrolled_on: date) -> list[date]:
        """Review days d with after < d <= through, in order."""
        days: list[date] = []
        day = self.next_review(after, enrolled_on)
        while day <= through:
            days.append(day)
            day = self.next_review(day, enrolled_on)
        return days

    def next_review(self, after: date, enrolled_on: date) -> date:
        """The first review day strictly after `after`: 1 January, the member's
        anniversary, or the 1st of the month for rolling windows."""
        if self.window == "calendar_year":
            return date(after.year + 1, 1, 1)
        if self.window == "anniversary":
            start = self._anniversary_on_or_before(after, enrolled_on)
            return self._anniversary(enrolled_on, start, 1)
        last = self.review_on_or_before(after)
        if self.review == "monthly":
            return add_months(last, 1)
        if self.review == "quarterly":
            return add_months(last, 3)
        return date(last.year + 1, *self.review_on)

    def review_on_or_before(self, day: date) -> date:
        """A calendar or rolling ladder's latest review day on or before a day: 1 January;
        the 1st of the month (monthly), of January, April, July or October (quarterly), or
        the review_on day of the year (yearly)."""
        if self.window == "calendar_year":
            return date(day.year, 1, 1)
        if self.review == "monthly":
            return day.replace(day=1)
        if self.review == "quarterly":
            return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
        this_year = date(day.year, *self.review_on)
        return this_year if this_year <= day else date(day.year - 1, *self.review_on)

    def held_until(self, reached_on: date, enrolled_on: date) -> date:
        """hold_next_period: a tier reached on a date holds until the end of the period
        after the one it was reached in (status earned in 2026 holds through 2027)."""
        if self.window == "calendar_year":
            return date(reached_on.year + 2, 1, 1)
        if self.window == "anniversary":
            start = self._anniversary_on_or_before(reached_on, enrolled_on)
            return self._anniversary(enrolled_on, start, 2)
        return add_months(reached_on.replace(day=1), self.months + 1)

    @staticmethod
    def _anniversary(enrolled_on: date, near: date, years: int) -> date:
        """The anniversary `years` after (or before) the one on `near` (which is one)."""
        elapsed = (near.year - enrolled_on.year) + years
        return add_months(enrolled_on, 12 * elapsed)

    @staticmethod
    def _anniversary_on_or_before(day: date, enrolled_on: date) -> date:
        if day < enrolled_on:
            return enrolled_on
        candidate = add_months(enrolled_on, 12 * (day.year - enrolled_on.year))
        if candidate > day:
            candidate = add_months(enrolled_on, 12 * (day.year - enrolled_on.year - 1))
        return candidate


@dataclass(frozen=True, slots=True)
class ClubStep:
    """A paid level of a fee club (rank 0 is the cheapest)."""

    level_id: str
    name: str
    rank: int
    fee_minor: int
    fee_sku: str | None
    points_price: int | None
    multiplier: Fraction | None
    perks: frozenset[str]
    intro_fee_minor: int | None = None  # the first paid term's fee for a new member
    trial_months: int | None = None  # a new member's first term, when the level has one
    trial_fee_minor: int = 0
    household_max: int = 0  # secondary members a membership at this level may have

    def first_fee(self) -> int:
        """What a member new to the club pays for their first paid term."""
        return self.fee_minor if self.intro_fee_minor is None else self.intro_fee_minor


@dataclass(frozen=True, slots=True)
class CompiledClub:
    """A club with its benefits and, for fee clubs, levels and membership terms."""

    club_id: str
    name: str
    kind: Literal["open", "affinity", "fee"]
    joins_on_purchase: bool
    group: str | None
    multiplier: Fraction | None
    perks: frozenset[str]
    levels: tuple[ClubStep, ...]
    term_months: int
    auto_renew: bool
    renewal_notice_days: int
    grace_days: int
    cooling_off_days: int
    waiver_minor: int | None
    upgrade_price: Literal["prorated", "full_difference"] = "prorated"

    @property
    def has_households(self) -> bool:
        """Whether some level takes household members."""
        return any(level.household_max for level in self.levels)

    def level(self, level_id: str) -> ClubStep | None:
        """The paid level with this id."""
        return next((lv for lv in self.levels if lv.level_id == level_id), None)

    def benefits(self, level_id: str) -> tuple[Fraction | None, frozenset[str]]:
        """The multiplier and perks a member of this club (at a level) enjoys."""
        found = self.level(level_id)
        if found is not None:
            return found.multiplier, found.perks
        return self.multiplier, self.perks


@dataclass(frozen=True, slots=True)
class CompiledGroup:
    """An affinity group: eligible by age from an attribute, or by verification."""

    group_id: str
    name: str
    age_attribute: str | None
    at_least: int | None
    under: int | None
    verified: bool
    max_months: int
    reverify_days: int

    def eligible_by_age(self, attributes: dict[str, Any], on: date) -> bool:
        """Whether the member's date of birth puts them in the group on a local date."""
        if self.age_attribute is None:
            return False
        born = birth_date(attributes.get(self.age_attribute))
        if born is None:
            return False
        age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        if self.at_least is not None and age < self.at_least:
            return False
        return not (self.under is not None and age >= self.under)


def birth_date(value: object) -> date | None:
    """A date-of-birth attribute as a date (None if absent or not YYYY-MM-DD)."""
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def compile_tiers(tiers: Tiers, minor: Any) -> TierLadder:
    """The ladder with thresholds in minor units (spend), thousandths (quantities) or
    counts."""
    measures: list[TierMeasure] = []
    for name, measure in tiers.measures.items():
        if isinstance(measure, str):
            measures.append(TierMeasure(name, measure, CREDIT_COUNTERS[measure]))
        else:
            measures.append(TierMeasure(name, "quantity", QUANTITY_COUNTER + name,
                                        frozenset(measure.quantity.categories),
                                        frozenset(measure.quantity.skus),
                                        measure.unit or name))

    def stored(measure: TierMeasure, value: Any) -> int:
        if measure.kind == "spend":
            return int(minor(value))
        return int(value) * measure.scale

    steps = []
    for rank, level in enumerate(tiers.levels):
        given = tiers.level_thresholds(level)
        thresholds = tuple(stored(m, given[m.name]) for m in measures)
        steps.append(TierStep(level.id, level.name or level.id, rank, thresholds[0],
                              None if level.multiplier is None else Fraction(level.multiplier),
                              frozenset(level.perks), thresholds))
    if isinstance(tiers.measure, CombinedMeasure):
        label = f"{tiers.measure.combine}:{','.join(m.name for m in measures)}"
        combine = tiers.measure.combine
    else:
        label, combine = measure_kind(tiers.measure), "any"
    window = tiers.window
    if isinstance(window, str):
        return TierLadder(label, window, 12, tiers.downgrade, tiers.refunds, tuple(steps),
                          tuple(measures), combine)
    month, day = (1, 1) if window.review_on is None else (
        int(window.review_on[:2]), int(window.review_on[3:]))
    return TierLadder(label, "rolling", window.rolling_months, tiers.downgrade, tiers.refunds,
                      tuple(steps), tuple(measures), combine, window.review, (month, day))


def compile_club(club: Club, minor: Any) -> CompiledClub:
    """A club with fees in minor units."""
    return CompiledClub(
        club_id=club.id, name=club.name, kind=club.kind,
        joins_on_purchase=club.kind == "open" and club.join != "explicit",
        group=club.group,
        multiplier=None if club.multiplier is None else Fraction(club.multiplier),
        perks=frozenset(club.perks),
        levels=tuple(
            ClubStep(level.id, level.name or level.id, rank, minor(level.fee), level.fee_sku,
                     level.points_price,
                     None if level.multiplier is None else Fraction(level.multiplier),
                     frozenset(level.perks),
                     None if level.intro_fee is None else minor(level.intro_fee),
                     None if level.trial is None else level.trial.months,
                     0 if level.trial is None else minor(level.trial.fee),
                     _household_max(level.household or club.household))
            for rank, level in enumerate(club.levels)),
        term_months=club.term_months, auto_renew=club.auto_renew,
        renewal_notice_days=club.renewal_notice_days, grace_days=club.grace_days,
        cooling_off_days=club.cooling_off_days,
        waiver_minor=None if club.waiver is None else minor(club.waiver.min_spend_last_year),
        upgrade_price=club.upgrade_price,
    )


def _household_max(household: Household | None) -> int:
    return 0 if household is None else household.max_members


def compile_group(group: Group) -> CompiledGroup:
    """A group with its eligibility rules."""
    return CompiledGroup(
        group_id=group.id, name=group.name,
        age_attribute=None if group.age is None else group.age.attribute,
        at_least=None if group.age is None else group.age.at_least,
        under=None if group.age is None else group.age.under,
        verified=group.verified is not None,
        max_months=12 if group.verified is None else group.verified.max_months,
        reverify_days=30 if group.verified is None else group.verified.reverify_days,
    )
