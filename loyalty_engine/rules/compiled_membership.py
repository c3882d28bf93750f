"""Compiled tiers, clubs and groups: ladders with their window arithmetic, in local dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Literal

from loyalty_engine.domain.periods import add_months
from loyalty_engine.rules.membership import Club, Group, Household, Tiers

# The counters tier credit (and a waiver's spend) are kept in, by local date (YYYY-MM-DD).
CREDIT_COUNTERS = {"spend": "*:spend", "visits": "*:visits", "points": "*:points"}
SPEND_COUNTER = "*:spend"


@dataclass(frozen=True, slots=True)
class TierStep:
    """One rung of a compiled ladder; rank 0 is the lowest."""

    tier_id: str
    name: str
    rank: int
    threshold: int  # minor units for spend; visits or points otherwise
    multiplier: Fraction | None
    perks: frozenset[str]


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

    measure: Literal["spend", "visits", "points"]
    window: Literal["calendar_year", "anniversary", "rolling"]
    months: int  # the window's length (12 except for rolling windows)
    downgrade: Literal["qualified", "one_level", "hold_next_period"]
    refunds: Literal["immediate", "at_review"]
    steps: tuple[TierStep, ...]

    @property
    def counter(self) -> str:
        """The progress counter the qualifying credit is kept in."""
        return CREDIT_COUNTERS[self.measure]

    def step(self, tier_id: str) -> TierStep | None:
        """The rung with this id (None for '' or a tier the ladder no longer has)."""
        return next((s for s in self.steps if s.tier_id == tier_id), None)

    def rank(self, tier_id: str) -> int:
        """A tier's place on the ladder; -1 for no tier (or one the ladder dropped)."""
        found = self.step(tier_id)
        return -1 if found is None else found.rank

    def qualified(self, credit: int) -> str:
        """The highest tier whose threshold the credit reaches ('' if none)."""
        best = ""
        for step in self.steps:
            if credit >= step.threshold:
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
        return add_months(after.replace(day=1), 1)

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
    """The ladder with thresholds in minor units (spend) or counts."""
    steps = tuple(
        TierStep(level.id, level.name or level.id, rank,
                 minor(level.threshold) if tiers.measure == "spend" else int(level.threshold),
                 None if level.multiplier is None else Fraction(level.multiplier),
                 frozenset(level.perks))
        for rank, level in enumerate(tiers.levels))
    if isinstance(tiers.window, str):
        return TierLadder(tiers.measure, tiers.window, 12, tiers.downgrade, tiers.refunds, steps)
    return TierLadder(tiers.measure, "rolling", tiers.window.rolling_months, tiers.downgrade,
                      tiers.refunds, steps)


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
