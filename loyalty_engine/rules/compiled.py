"""Compiled programs: the validated definition turned into integer arithmetic, built once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from math import lcm
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, Self, TypeVar
from zoneinfo import ZoneInfo

from loyalty_engine.domain.decisions import Evaluation, IssueVoucher, ProgressDelta
from loyalty_engine.domain.money import currency_exponent, to_minor
from loyalty_engine.domain.periods import MEMBERSHIP_YEAR, add_months, day_in_period
from loyalty_engine.domain.purchases import LineItem
from loyalty_engine.rules.compiled_insights import ProgramInsights
from loyalty_engine.rules.compiled_membership import (
    CompiledClub,
    CompiledGroup,
    TierLadder,
    compile_club,
    compile_group,
    compile_tiers,
)
from loyalty_engine.rules.expressions import (
    SNAPSHOT_NAMES,
    TENURE,
    compile_expression,
    reads,
)
from loyalty_engine.rules.insights_schema import compile_insights
from loyalty_engine.rules.multipliers import MultiplierPlan, plan_of
from loyalty_engine.rules.schema import (
    Caps,
    Condition,
    ExpiryPolicy,
    FirstInCategoryRule,
    FixedBonusRule,
    NthVisitRule,
    PeriodicRebateRule,
    PointsPerSpendRule,
    ProgramDefinition,
    Rounding,
    SpendThresholdRule,
    StampCardRule,
    period_name,
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True, eq=False)
class CompiledCondition:
    """A rule's `when`, ready to test: sets for the shortcuts, a compiled CEL expression."""

    categories: frozenset[str]
    skus: frozenset[str]
    stores: frozenset[str]
    weekdays: frozenset[int]
    starts: date | None
    ends: date | None
    min_spend_minor: int | None
    tiers: frozenset[str]
    expression: Any
    expression_source: str | None
    store_prefixes: tuple[str, ...] = ()
    perks: frozenset[str] = frozenset()
    clubs: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    consents: frozenset[str] = frozenset()
    tenders: frozenset[str] = frozenset()  # the purchase's tender is one of these
    channels: frozenset[str] = frozenset()  # its channel is one of these
    segments: frozenset[str] = frozenset()  # the member's segment then is one of these
    # Its expression reads the member's RFM snapshot (member.segment, .rfm, .clv, .p_alive),
    # or member.tenure_days.
    snapshot_reads: bool = False
    tenure_reads: bool = False

    @property
    def reads_standing(self) -> bool:
        """Whether it tests the member's tier, perks, clubs, groups or consents."""
        return bool(self.tiers or self.perks or self.clubs or self.groups or self.consents)

    @property
    def reads_snapshot(self) -> bool:
        """Whether it tests the member's RFM snapshot (`segments:`, or an expression)."""
        return bool(self.segments) or self.snapshot_reads

    def covers(self, store_id: str) -> bool:
        """Whether the store is listed (exactly, or by a 'PREFIX*' entry)."""
        return store_id in self.stores or store_id.startswith(self.store_prefixes)

    @property
    def item_scoped(self) -> bool:
        """Whether the condition selects items (categories or SKUs)."""
        return bool(self.categories or self.skus)

    def selects(self, category: str, sku: str) -> bool:
        """An item counts when its category or its SKU is listed."""
        return category in self.categories or sku in self.skus


@dataclass(frozen=True, slots=True)
class Expiry:
    """When something earned at an instant lapses (None: never)."""

    # months_end_of_month: `count` months after earning, then to the end of that month.
    kind: Literal["never", "days", "months", "end_of_month", "end_of_year",
                  "months_end_of_month"]
    count: int = 0

    def at(self, earned_at: datetime, zone: ZoneInfo) -> datetime | None:
        """The instant from which something earned at earned_at has lapsed."""
        if self.kind == "never":
            return None
        if self.kind == "days":
            return earned_at + timedelta(days=self.count)
        local = earned_at.astimezone(zone)
        if self.kind == "months":
            day = add_months(local.date(), self.count)
            # astimezone: a local time the spring change skips becomes the real instant (at
            # the offset before the change), which compares equal to itself in UTC.
            return datetime.combine(day, local.timetz().replace(tzinfo=None),
                                    zone).astimezone(UTC).astimezone(zone)
        if self.kind == "end_of_month":
            first = add_months(local.date().replace(day=1), 1)
        elif self.kind == "months_end_of_month":
            # The month in which the N months run out ends at the next month's first local
            # midnight: earned 15 January, 6 months run out on 15 July, gone from 1 August.
            first = add_months(local.date().replace(day=1), self.count + 1)
        else:
            first = date(local.year + 1, 1, 1)
        return datetime.combine(first, time(0), zone).astimezone(UTC).astimezone(zone)

    def first_lapsed_day(self, earned_on: date) -> date | None:
        """For things kept by local date (stamps): the first day they no longer count."""
        if self.kind == "never":
            return None
        if self.kind == "days":
            return earned_on + timedelta(days=self.count)
        if self.kind == "months":
            return add_months(earned_on, self.count)
        if self.kind == "end_of_month":
            return add_months(earned_on.replace(day=1), 1)
        if self.kind == "months_end_of_month":
            return add_months(earned_on.replace(day=1), self.count + 1)
        return date(earned_on.year + 1, 1, 1)


Minor = Callable[[Decimal], int]  # an amount in the program's currency -> minor units
Progress = dict[tuple[str, str], int]  # (counter, period) -> value, for one member & program
Earned = tuple[int, dict[str, Any]]  # points before groups and caps, and their reason


class Earning(Protocol):
    """What a rule kind sees of the purchase being evaluated (engine.earning provides it):
    its local day, the member's counters, and the evaluation the purchase is building."""

    @property
    def day(self) -> date: ...

    @property
    def progress(self) -> Progress: ...

    @property
    def result(self) -> Evaluation: ...

    @property
    def excluded_items(self) -> int: ...

    def advance(self, counter: str, period: str, delta: int) -> int:
        """Add delta to a counter (journaled on the evaluation); the new value."""
        ...

    def period_key(self, period: str) -> str | None:
        """The key of the period (calendar, or the member's membership year) holding the
        purchase; None when the member has no such period then (not in the club)."""
        ...

    def boosts(self, rule: PointsPerSpend) -> list[tuple[str, CompiledCondition, Fraction]]:
        """The rule's multipliers whose conditions hold, then the member's benefits."""
        ...


class PeriodEndAward(NamedTuple):
    """What the period-end bonus job pays for a rule: members whose counter for an ended
    period reached need get points; detail names the counted value in the job's record."""

    counter: str
    need: int
    detail: str
    period: str
    points: int


@dataclass(frozen=True, slots=True)
class RuleBase(ABC):
    """What every compiled rule has: identity, condition, order, stacking and caps; and
    what each kind does, which the engine and the jobs call without asking the kind."""

    rule_id: str
    when: CompiledCondition | None
    priority: int
    group: str | None
    caps: tuple[tuple[str, int], ...]  # (day|week|month|year, most points)

    # Earns from the purchase alone: needs none of the member's counters.
    stateless: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_definition(cls, rule: Any, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        """The kind compiled from its schema model (rule), given the fields every rule has
        (base) and the program currency's minor units and exponent."""

    @abstractmethod
    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        """The points the rule would award the purchase (before groups and caps) with their
        reason, advancing its counters; None when it awards nothing now. items are the
        eligible lines it looks at, spend their amount."""

    def decided(self, ctx: Earning) -> None:
        """After it earned, whether its points stood, lost their group or were capped."""
        return None  # most kinds have nothing to decide then

    def refund_weight(self, category: str) -> int:
        """The weight of a line of this category in the share a refund takes back."""
        return 1

    def counts_line(self, amount_minor: int, quantity_milli: int) -> bool:
        """Whether a line the condition selects counts for the rule at all (a stamp card's
        minimum item price): a refund of a line that did not count takes nothing back."""
        return True

    @property
    def conditions(self) -> tuple[CompiledCondition, ...]:
        """Every condition the rule tests (its `when`, and a multiplier's)."""
        return () if self.when is None else (self.when,)

    @property
    def jobs(self) -> frozenset[str]:
        """The scheduler jobs that have something to do for this rule."""
        return frozenset()

    @property
    def period_end_award(self) -> PeriodEndAward | None:
        """What the period-end bonus job pays for it (None: it pays at purchase)."""
        return None


@dataclass(frozen=True, slots=True)
class PointsPerSpend(RuleBase):
    """points = round(sum(line amount x weight(category)) x multipliers / denominator).

    Weights are integers over a common denominator so that evaluation is exact integer
    arithmetic: weight = points_per_unit x multiplier x denominator / 10**exponent.
    """

    kind: Literal["points_per_spend"]
    points_per_unit: Decimal
    rounding: Rounding
    minimum_minor: int
    default_weight: int
    category_weights: dict[str, int]
    category_multipliers: dict[str, Decimal]
    denominator: int
    multipliers: tuple[tuple[str, CompiledCondition, Fraction], ...]
    # Exclusions and best-of groups among the multipliers (plain: they all multiply).
    plan: MultiplierPlan = field(default_factory=MultiplierPlan)

    stateless: ClassVar[bool] = True

    @classmethod
    def from_definition(cls, rule: PointsPerSpendRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        unit = Fraction(rule.points_per_unit) / 10**exponent
        factors = {cat: unit * Fraction(m) for cat, m in rule.category_multipliers.items()}
        denominator = lcm(unit.denominator, *(f.denominator for f in factors.values()))
        return cls(
            **base,
            kind=rule.kind,
            points_per_unit=rule.points_per_unit,
            rounding=rule.rounding,
            minimum_minor=minor(rule.minimum_purchase),
            default_weight=int(unit * denominator),
            category_weights={c: int(f * denominator) for c, f in factors.items()},
            category_multipliers=dict(rule.category_multipliers),
            denominator=denominator,
            multipliers=tuple((m.id, _condition(m.when, minor), Fraction(m.factor))
                              for m in rule.multipliers),
            plan=plan_of(rule.multipliers, rule.multiplier_groups),
        )

    @property
    def conditions(self) -> tuple[CompiledCondition, ...]:
        return ((() if self.when is None else (self.when,))
                + tuple(c for _, c, _ in self.multipliers))

    def refund_weight(self, category: str) -> int:
        # Returning beans that earned double takes back double.
        return self.category_weights.get(category, self.default_weight)

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        if spend == 0 or spend < self.minimum_minor:
            return None
        factors = ctx.boosts(self)
        if factors and not self.plan.plain:
            return self._earn_planned(ctx, items, spend, factors)
        weights = self.category_weights
        multiplied: dict[str, int] = {}
        boosted: dict[str, str] = {}
        # Integer sums per combined factor (usually one), so that exact rational arithmetic
        # happens once per purchase rather than once per line.
        by_factor: dict[Fraction, int] = {}
        whole = factors and not any(c.item_scoped for _, c, _ in factors)
        common = Fraction(1)
        if whole:
            for name, _, value in factors:
                common *= value
                boosted[name] = _ratio(value)
        numerator = 0
        for item in items:
            weight = weights.get(item.category)
            if weight is None:
                weight = self.default_weight
            else:
                multiplied[item.category] = multiplied.get(item.category, 0) + item.amount_minor
            if not factors or whole:
                numerator += item.amount_minor * weight
                continue
            factor = Fraction(1)
            for name, condition, value in factors:
                if not condition.item_scoped or condition.selects(item.category, item.sku):
                    factor *= value
                    boosted[name] = _ratio(value)
            by_factor[factor] = by_factor.get(factor, 0) + item.amount_minor * weight
        if whole and common != 1:
            by_factor[common] = numerator
            numerator = 0
        if by_factor:
            exact = sum((f * n for f, n in by_factor.items()), Fraction(numerator))
            points = round_points(exact.numerator, exact.denominator * self.denominator,
                                  self.rounding)
        else:
            points = round_points(numerator, self.denominator, self.rounding)
        if points <= 0:
            return None
        return points, self._reason(ctx, spend, multiplied, boosted)

    def _earn_planned(self, ctx: Earning, items: Sequence[LineItem], spend: int,
                      factors: list[tuple[str, CompiledCondition, Fraction]]) -> Earned | None:
        """earn, for multipliers with exclusions or best-of groups: line by line, the
        multipliers that hold on the line combine as the plan says (a multiplier that
        selects items holds on those lines only)."""
        weights = self.category_weights
        multiplied: dict[str, int] = {}
        boosted: dict[str, str] = {}
        set_aside: dict[str, str] = {}
        by_factor: dict[Fraction, int] = {}
        lines: dict[tuple[str, ...], Fraction] = {}  # the names holding -> combined factor
        for item in items:
            weight = weights.get(item.category)
            if weight is None:
                weight = self.default_weight
            else:
                multiplied[item.category] = multiplied.get(item.category, 0) + item.amount_minor
            holding = [(name, value) for name, condition, value in factors
                       if not condition.item_scoped or condition.selects(item.category, item.sku)]
            key = tuple(name for name, _ in holding)
            factor = lines.get(key)
            if factor is None:
                combined = self.plan.combine(holding)
                factor = lines[key] = combined.factor
                boosted.update((name, _ratio(value)) for name, value in combined.counted.items())
                set_aside.update(combined.set_aside)
            by_factor[factor] = by_factor.get(factor, 0) + item.amount_minor * weight
        exact = sum((f * n for f, n in by_factor.items()), Fraction(0))
        points = round_points(exact.numerator, exact.denominator * self.denominator,
                              self.rounding)
        if points <= 0:
            return None
        return points, self._reason(ctx, spend, multiplied, boosted, set_aside)

    def _reason(self, ctx: Earning, spend: int, multiplied: dict[str, int],
                boosted: dict[str, str], set_aside: dict[str, str] | None = None
                ) -> dict[str, Any]:
        """The ledger entry's reason: the spend, the category multipliers per category, the
        boosts and benefits that counted and (with exclusions or best-of groups) those that
        held but counted on no line, and why: "why 340 points?"."""
        reason: dict[str, Any] = {
            "eligible_spend_minor": spend,
            "excluded_items": ctx.excluded_items,
            "points_per_unit": str(self.points_per_unit),
            "rounding": self.rounding,
        }
        if multiplied:
            reason["multipliers"] = {
                category: {"spend_minor": s,
                           "multiplier": str(self.category_multipliers[category])}
                for category, s in sorted(multiplied.items())
            }
        benefits = {k: v for k, v in boosted.items() if k.startswith(("tier:", "club:"))}
        boosts = {k: v for k, v in boosted.items() if k not in benefits}
        if boosts:
            reason["boosts"] = dict(sorted(boosts.items()))
        if benefits:
            reason["benefits"] = dict(sorted(benefits.items()))
        aside = {k: v for k, v in (set_aside or {}).items() if k not in boosted}
        if aside:
            reason["set_aside"] = dict(sorted(aside.items()))
        return reason


@dataclass(frozen=True, slots=True)
class FixedBonus(RuleBase):
    kind: Literal["fixed_bonus"]
    points: int

    stateless: ClassVar[bool] = True

    @classmethod
    def from_definition(cls, rule: FixedBonusRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, points=rule.points)

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        return self.points, {}


@dataclass(frozen=True, slots=True)
class _OncePerPeriod(RuleBase):
    """A visit or threshold bonus: decided once per period, at purchase or at its end."""

    period: str
    points: int
    at_period_end: bool  # awarded by the scheduler, not by the purchase

    def decided(self, ctx: Earning) -> None:
        # Whether it stood, lost its group or was capped away: otherwise the next purchase
        # of the period would earn it.
        period = ctx.period_key(self.period)
        if period is not None:
            ctx.advance(f"{self.rule_id}:awarded", period, 1)

    @property
    def jobs(self) -> frozenset[str]:
        return frozenset({"period_bonuses"}) if self.at_period_end else frozenset()

    def _awarded(self, ctx: Earning, period: str) -> bool:
        return ctx.progress.get((f"{self.rule_id}:awarded", period), 0) > 0


@dataclass(frozen=True, slots=True)
class NthVisit(_OncePerPeriod):
    kind: Literal["nth_visit"]
    visit: int
    distinct_days: bool = False  # the purchases of one local day are one visit

    @classmethod
    def from_definition(cls, rule: NthVisitRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, visit=rule.visit, period=period_name(rule.period),
                   points=rule.points, at_period_end=rule.award == "at_period_end",
                   distinct_days=rule.count == "distinct_days")

    @property
    def day_counter(self) -> str:
        """Purchases per local day (count: distinct_days). A count (its name ends in
        ':visits'): a refund takes a purchase back from its day only when in full, so a day
        stays a visit while one of its purchases stands."""
        return f"{self.rule_id}:days:visits"

    def _visit_days(self, ctx: Earning, period: str) -> int:
        counter = self.day_counter
        return sum(1 for (name, day), value in ctx.progress.items()
                   if name == counter and value > 0
                   and day_in_period(self.period, period, date.fromisoformat(day)))

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        period = ctx.period_key(self.period)
        if period is None:
            return None  # no membership year of that club then: nothing to count in
        if self.distinct_days:
            ctx.advance(self.day_counter, ctx.day.isoformat(), 1)
            visits = self._visit_days(ctx, period)
        else:
            visits = ctx.advance(f"{self.rule_id}:visits", period, 1)
        if self.at_period_end:
            return None  # counted now, awarded by the scheduler once the period has ended
        # Once per period: after a refund of an earlier visit, the count can reach N again.
        if visits >= self.visit and not self._awarded(ctx, period):
            return self.points, {"visit": visits, "period": period}
        return None

    @property
    def period_end_award(self) -> PeriodEndAward | None:
        if not self.at_period_end:
            return None
        return PeriodEndAward(f"{self.rule_id}:visits", self.visit, "visits", self.period,
                              self.points)


@dataclass(frozen=True, slots=True)
class SpendThreshold(_OncePerPeriod):
    kind: Literal["spend_threshold"]
    threshold_minor: int

    @classmethod
    def from_definition(cls, rule: SpendThresholdRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, threshold_minor=minor(rule.threshold),
                   period=period_name(rule.period), points=rule.points,
                   at_period_end=rule.award == "at_period_end")

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        period = ctx.period_key(self.period)
        if period is None:
            return None  # no membership year of that club then: nothing to count in
        after = ctx.advance(f"{self.rule_id}:spend", period, spend)
        if self.at_period_end:
            return None  # counted now, awarded by the scheduler once the period has ended
        # Reached (not merely crossed): after a refund took the award back, the next
        # purchase of a period still above the threshold earns it again.
        if not self._awarded(ctx, period) and after >= self.threshold_minor and spend > 0:
            return self.points, {"period": period, "period_spend_minor": after,
                                 "threshold_minor": self.threshold_minor}
        return None

    @property
    def period_end_award(self) -> PeriodEndAward | None:
        if not self.at_period_end:
            return None
        return PeriodEndAward(f"{self.rule_id}:spend", self.threshold_minor, "spend_minor",
                              self.period, self.points)


@dataclass(frozen=True, slots=True)
class StampCard(RuleBase):
    kind: Literal["stamp_card"]
    stamp_per: Literal["item", "visit"]
    card_size: int
    reward_id: str
    stamps_expire: Expiry
    min_item_minor: int | None = None  # least unit price an item must have to count
    distinct_days: bool = False  # per visit: one stamp per local day

    @classmethod
    def from_definition(cls, rule: StampCardRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, stamp_per=rule.stamp_per,
                   card_size=rule.card_size, reward_id=rule.reward,
                   stamps_expire=_expiry(rule.stamps_expire),
                   min_item_minor=None if rule.min_item_price is None else minor(
                       rule.min_item_price),
                   distinct_days=rule.count == "distinct_days")

    def counts_line(self, amount_minor: int, quantity_milli: int) -> bool:
        # Unit price at least the minimum: amount / (quantity_milli / 1000) >= min, in
        # integers (a line of 2 x 2.00 is 4.00 for 2000 milli: 2.00 each).
        least = self.min_item_minor
        return least is None or (quantity_milli > 0
                                 and amount_minor * 1000 >= least * quantity_milli)

    @property
    def jobs(self) -> frozenset[str]:
        return frozenset({"expire"})  # lapsed stamps (and the vouchers it issues)

    @property
    def counter(self) -> str:
        """The counter its stamps are kept in, by local day ('debt': stamps owed)."""
        return f"{self.rule_id}:stamps"

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        """Add the purchase's stamps (dated by local day), repay a stamp debt first, and
        turn every full card of unexpired stamps into a voucher, oldest stamps first."""
        per_item = self.stamp_per == "item"
        if self.min_item_minor is not None:
            items = [i for i in items if self.counts_line(i.amount_minor, i.quantity_milli)]
            if not items:
                return None  # nothing reaches the price: no stamp, not even for the visit
        stamps = sum(i.quantity_milli for i in items) // 1000 if per_item else 1
        if stamps <= 0:
            return None
        if self.distinct_days and ctx.advance(f"{self.rule_id}:days:visits",
                                              ctx.day.isoformat(), 1) > 1:
            return None  # the day's visit has its stamp already (a count: see NthVisit)
        counter = self.counter
        debt = ctx.progress.get((counter, "debt"), 0)
        if debt < 0:
            repaid = min(stamps, -debt)
            ctx.advance(counter, "debt", repaid)
            stamps -= repaid
        if stamps <= 0:
            return None
        today = ctx.day
        ctx.advance(counter, today.isoformat(), stamps)
        if sum(v for (name, _), v in ctx.progress.items()
               if name == counter and v > 0) < self.card_size:
            return None  # not even counting lapsed stamps is there a full card
        for used in self.fill_cards(ctx.progress, today):
            ctx.result.consumed.extend(ProgressDelta(counter, period, -take)
                                       for period, take in used)
            ctx.result.vouchers.append(IssueVoucher(self.rule_id, self.reward_id, used))
        return None  # a card issues a voucher, not points

    def fill_cards(self, progress: Progress, today: date) -> list[tuple[tuple[str, int], ...]]:
        """Take every full card out of the member's unexpired stamps, oldest first, and
        return the (local day, stamps) each card used. A stamp debt must be repaid before a
        card fills. Purchases (at the stamp that fills a card) and refunds (re-issuing a
        voided card) share it."""
        counter = self.counter
        cards: list[tuple[tuple[str, int], ...]] = []
        while self.held(progress, today) >= self.card_size:
            need = self.card_size
            used: list[tuple[str, int]] = []
            for (name, period), value in sorted(progress.items()):
                if need == 0:
                    break
                if name != counter or period == "debt" or value <= 0 or not self._valid(
                    period, today
                ):
                    continue
                take = min(value, need)
                used.append((period, take))
                need -= take
            for period, take in used:
                progress[(counter, period)] -= take
            cards.append(tuple(used))
        return cards

    def held(self, progress: Progress, today: date) -> int:
        """Unexpired stamps on the member's card at a local date (a debt shows negative)."""
        counter = self.counter
        held = 0
        for (name, period), value in progress.items():
            if name != counter:
                continue
            if period == "debt" or (value > 0 and self._valid(period, today)):
                held += value
        return held

    def _valid(self, period: str, today: date) -> bool:
        lapses = _first_lapsed_day(self.stamps_expire, period)
        return lapses is None or today < lapses


@lru_cache(maxsize=65536)
def _first_lapsed_day(expiry: Expiry, period: str) -> date | None:
    return expiry.first_lapsed_day(date.fromisoformat(period))


@dataclass(frozen=True, slots=True)
class FirstInCategory(RuleBase):
    kind: Literal["first_in_category"]
    category: str
    points: int

    @classmethod
    def from_definition(cls, rule: FirstInCategoryRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, category=rule.category, points=rule.points)

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        if not any(i.category == self.category for i in items):
            return None
        if ctx.progress.get((f"{self.rule_id}:seen", "all"), 0) > 0:
            return None
        ctx.advance(f"{self.rule_id}:seen", "all", 1)
        return self.points, {"category": self.category}


@dataclass(frozen=True, slots=True)
class PeriodicRebate(RuleBase):
    kind: Literal["periodic_rebate"]
    percent: Fraction
    period: str
    cap_minor: int | None
    valid_days: int = 90

    @classmethod
    def from_definition(cls, rule: PeriodicRebateRule, base: dict[str, Any], minor: Minor,
                        exponent: int) -> Self:
        return cls(**base, kind=rule.kind, percent=Fraction(rule.percent) / 100,
                   period=period_name(rule.period),
                   cap_minor=None if rule.cap is None else minor(rule.cap),
                   valid_days=rule.valid_days)

    @property
    def jobs(self) -> frozenset[str]:
        return frozenset({"rebates", "expire"})  # issued at period end, then they lapse

    def earn(self, ctx: Earning, items: Sequence[LineItem], spend: int) -> Earned | None:
        period = ctx.period_key(self.period) if spend > 0 else None
        if period is not None:  # accrued now, issued as a voucher once the period has ended
            ctx.advance(f"{self.rule_id}:spend", period, spend)
        return None

    def rebate(self, spend_minor: int) -> int:
        """The voucher's value for a period's spend: percent, half up to a minor unit,
        capped."""
        exact = self.percent * spend_minor
        amount = round_points(exact.numerator, exact.denominator, "half_up")
        return amount if self.cap_minor is None else min(amount, self.cap_minor)


CompiledRule = (PointsPerSpend | FixedBonus | NthVisit | SpendThreshold | StampCard
                | FirstInCategory | PeriodicRebate)
R = TypeVar("R", bound=RuleBase)
# Each kind of the language by its `kind:`, compiled by its own class.
KINDS: dict[str, Callable[[Any, dict[str, Any], Minor, int], CompiledRule]] = {
    "points_per_spend": PointsPerSpend.from_definition,
    "fixed_bonus": FixedBonus.from_definition,
    "nth_visit": NthVisit.from_definition,
    "spend_threshold": SpendThreshold.from_definition,
    "stamp_card": StampCard.from_definition,
    "first_in_category": FirstInCategory.from_definition,
    "periodic_rebate": PeriodicRebate.from_definition,
}


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


def _ratio(value: Fraction) -> str:
    """A multiplier as people wrote it: 1.25, not 5/4."""
    if value.denominator == 1:
        return str(value.numerator)
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return format(exact.normalize(), "f")


@dataclass(frozen=True, slots=True)
class CompiledReward:
    """A voucher template: what it is worth and how long it stays valid."""

    reward_id: str
    name: str
    kind: Literal["fixed_amount", "percentage", "free_item"]
    amount_minor: int | None
    percent: Decimal | None
    sku: str | None
    category: str | None
    valid_days: int
    cost_points: int | None


@dataclass(frozen=True, slots=True)
class CompiledProgram:
    """Everything the engine needs to evaluate events under one program version."""

    program_id: str
    name: str
    currency: str
    exponent: int
    timezone: ZoneInfo
    enrolment: Literal["open", "explicit"]
    excluded_categories: frozenset[str]
    excluded_skus: frozenset[str]
    rules: tuple[CompiledRule, ...]  # in evaluation order: priority, then file order
    pending_days: int
    expiry: Expiry
    refund_shortfall: Literal["negative_balance", "debt"]
    caps: tuple[tuple[str, int], ...]
    rewards: dict[str, CompiledReward]
    stateful: bool  # some rule needs the member's progress (visits, stamps, caps, ...)
    uses_member: bool  # some condition reads member attributes
    store_ids: frozenset[str] = frozenset()
    store_prefixes: tuple[str, ...] = ()
    tiers: TierLadder | None = None
    clubs: dict[str, CompiledClub] = field(default_factory=dict)
    groups: dict[str, CompiledGroup] = field(default_factory=dict)
    perks: dict[str, str] = field(default_factory=dict)  # id -> name
    fee_skus: dict[str, tuple[str, str]] = field(default_factory=dict)  # sku -> (club, level)
    tracks_spend: bool = False  # keep eligible spend by local date (tier or fee waiver)
    reads_consents: bool = False  # some condition tests consents
    can_fail: bool = False  # some condition is a CEL expression (which may fail at runtime)
    has_benefits: bool = False  # a tier or club multiplies points
    schedule: dict[str, str] = field(default_factory=dict)  # job -> cron (program time)
    notice_days: int = 30
    # How far before its recording a redemption may be dated (offline tills).
    redemption_backdate: timedelta = timedelta(hours=24)
    # Some rule or cap keeps a period from the enrolment (members' enrolment dates are
    # loaded with each batch, as for an anniversary tier window).
    membership_years: bool = False
    # The whole balance lapses this long after the member's last earning from a purchase
    # or redemption (kind "months"; "never": no inactivity expiry).
    inactivity: Expiry = Expiry("never")
    # The file's language level: what purchase.total and an item's amount mean (1 minor
    # units, 2 the currency) in its expressions' context.
    cel_language: int = 1
    # How the analytics measure its members (economics:, analytics:, segments:).
    insights: ProgramInsights = field(default_factory=ProgramInsights)
    # Some condition reads the members' RFM snapshots (loaded with each batch only then),
    # or their tenure (their enrolment dates, loaded as for tiers).
    reads_insights: bool = False
    reads_tenure: bool = False

    @property
    def has_standing(self) -> bool:
        """Whether members have a tier, clubs or groups here (loaded with each batch)."""
        return self.tiers is not None or bool(self.clubs) or bool(self.groups)

    def covers(self, store_id: str) -> bool:
        """Whether the program sees purchases of this store."""
        if not self.store_ids and not self.store_prefixes:
            return True
        return store_id in self.store_ids or store_id.startswith(self.store_prefixes)

    def rule(self, rule_id: str) -> CompiledRule | None:
        """The rule with this id, if the program has it."""
        return next((r for r in self.rules if r.rule_id == rule_id), None)

    def rules_of(self, kind: type[R]) -> tuple[R, ...]:
        """The rules of one kind, in evaluation order: what a job for that kind runs over."""
        return tuple(r for r in self.rules if isinstance(r, kind))

    @property
    def has_households(self) -> bool:
        """Whether some club of the program takes household members."""
        return any(club.has_households for club in self.clubs.values())

    @property
    def rule_jobs(self) -> frozenset[str]:
        """The scheduler jobs some rule has something to do for."""
        return frozenset().union(*(r.jobs for r in self.rules))


def compile_program(definition: ProgramDefinition) -> CompiledProgram:
    """Turn a validated definition into its compiled form."""
    exponent = currency_exponent(definition.currency)
    currency = definition.currency

    def minor(value: Decimal) -> int:
        return to_minor(value, exponent, "amount", currency)

    rules: list[CompiledRule] = []
    for rule in definition.rules:
        base: dict[str, Any] = {
            "rule_id": rule.id,
            "when": None if rule.when is None else _condition(rule.when, minor),
            "priority": rule.priority,
            "group": rule.group,
            "caps": _caps(rule.caps),
        }
        rules.append(KINDS[rule.kind](rule, base, minor, exponent))
    order = sorted(range(len(rules)), key=lambda i: (-rules[i].priority, i))
    ordered = tuple(rules[i] for i in order)
    program_caps = _caps(definition.caps)
    conditions = [c for r in ordered for c in r.conditions]
    tiers = None if definition.tiers is None else compile_tiers(definition.tiers, minor)
    clubs = {c.id: compile_club(c, minor) for c in definition.clubs}
    fee_skus = {level.fee_sku: (club.club_id, level.level_id) for club in clubs.values()
                for level in club.levels if level.fee_sku is not None}
    tracks_spend = (tiers is not None and any(m.kind == "spend" for m in tiers.measures)) or any(
        c.waiver_minor is not None for c in clubs.values())
    return CompiledProgram(
        program_id=definition.program,
        name=definition.name,
        currency=definition.currency,
        exponent=exponent,
        timezone=ZoneInfo(definition.timezone),
        enrolment=definition.enrolment,
        excluded_categories=frozenset(definition.exclude.categories),
        # A club fee paid at the till is not spend that earns.
        excluded_skus=frozenset(definition.exclude.skus) | frozenset(fee_skus),
        rules=ordered,
        pending_days=definition.points.pending_days,
        expiry=_expiry(definition.points.expiry),
        refund_shortfall=definition.points.refund_shortfall,
        caps=program_caps,
        rewards={
            r.id: CompiledReward(r.id, r.name, r.kind,
                                 None if r.amount is None else minor(r.amount), r.percent,
                                 r.sku, r.category, r.valid_days, r.cost_points)
            for r in definition.rewards
        },
        stateful=bool(program_caps) or tiers is not None or tracks_spend or any(
            not r.stateless or r.caps for r in ordered),
        store_ids=frozenset(s for s in definition.stores if not s.endswith("*")),
        store_prefixes=tuple(s[:-1] for s in definition.stores if s.endswith("*")),
        # Attributes: read by expressions about the member, and by age-based groups.
        uses_member=any(c.expression_source is not None and "member" in c.expression_source
                        for c in conditions) or any(g.age is not None for g in definition.groups),
        reads_consents=any(c.consents or (c.expression_source is not None
                                          and "member.consents" in c.expression_source)
                           for c in conditions),
        can_fail=any(c.expression is not None for c in conditions),
        has_benefits=(tiers is not None and any(t.multiplier for t in tiers.steps)) or any(
            c.multiplier is not None or any(lv.multiplier for lv in c.levels)
            for c in clubs.values()),
        tiers=tiers,
        clubs=clubs,
        groups={g.id: compile_group(g) for g in definition.groups},
        perks={p.id: p.name for p in definition.perks},
        fee_skus=fee_skus,
        tracks_spend=tracks_spend,
        schedule=definition.schedule.crons(),
        notice_days=definition.schedule.notice_days,
        redemption_backdate=timedelta(hours=definition.redemptions.backdate_hours),
        membership_years=any(period == MEMBERSHIP_YEAR for period, _ in program_caps) or any(
            getattr(r, "period", "") == MEMBERSHIP_YEAR
            or any(p == MEMBERSHIP_YEAR for p, _ in r.caps) for r in ordered),
        inactivity=_inactivity(definition.points.expiry),
        cel_language=definition.language or 1,
        insights=compile_insights(definition.economics, definition.analytics,
                                  definition.segments, minor),
        reads_insights=any(c.reads_snapshot for c in conditions),
        reads_tenure=any(c.tenure_reads for c in conditions),
    )


def _condition(when: Condition, minor: Any) -> CompiledCondition:
    expression = None if when.expression is None else compile_expression(when.expression)
    read = frozenset() if expression is None else reads(expression)
    return CompiledCondition(
        categories=frozenset(when.categories),
        skus=frozenset(when.skus),
        stores=frozenset(s for s in when.stores if not s.endswith("*")),
        store_prefixes=tuple(s[:-1] for s in when.stores if s.endswith("*")),
        weekdays=frozenset(WEEKDAYS.index(d) for d in when.days),
        starts=when.starts,
        ends=when.ends,
        min_spend_minor=None if when.min_spend is None else minor(when.min_spend),
        tiers=frozenset(when.tiers),
        perks=frozenset(when.perks),
        clubs=frozenset(when.clubs),
        groups=frozenset(when.groups),
        consents=frozenset(when.consents),
        tenders=frozenset(when.tenders),
        channels=frozenset(when.channels),
        segments=frozenset(when.segments),
        expression=expression,
        expression_source=when.expression,
        snapshot_reads=bool(read & SNAPSHOT_NAMES),
        tenure_reads=TENURE in read,
    )


def _caps(caps: Caps | None) -> tuple[tuple[str, int], ...]:
    if caps is None:
        return ()
    pairs = (("day", caps.per_day), ("week", caps.per_week), ("month", caps.per_month),
             ("year", caps.per_year), (MEMBERSHIP_YEAR, caps.per_membership_year))
    return tuple((period, limit) for period, limit in pairs if limit is not None)


def _expiry(policy: ExpiryPolicy) -> Expiry:
    if policy.after_days:
        return Expiry("days", policy.after_days)
    if policy.after_months and policy.then == "end_of_month":
        return Expiry("months_end_of_month", policy.after_months)
    if policy.after_months:
        return Expiry("months", policy.after_months)
    if policy.end_of == "month":
        return Expiry("end_of_month")
    if policy.end_of == "year":
        return Expiry("end_of_year")
    return Expiry("never")


def _inactivity(policy: ExpiryPolicy) -> Expiry:
    """The inactivity deadline's rule: the same local time, inactive_months later."""
    if policy.inactive_months:
        return Expiry("months", policy.inactive_months)
    return Expiry("never")
