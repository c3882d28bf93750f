"""Compiled programs: the validated definition turned into integer arithmetic, built once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Any, Literal
from zoneinfo import ZoneInfo

from loyalty_engine.domain.money import currency_exponent, to_minor
from loyalty_engine.domain.periods import add_months
from loyalty_engine.rules.compiled_membership import (
    CompiledClub,
    CompiledGroup,
    TierLadder,
    compile_club,
    compile_group,
    compile_tiers,
)
from loyalty_engine.rules.expressions import compile_expression
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

    @property
    def reads_standing(self) -> bool:
        """Whether it tests the member's tier, perks, clubs, groups or consents."""
        return bool(self.tiers or self.perks or self.clubs or self.groups or self.consents)


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

    kind: Literal["never", "days", "months", "end_of_month", "end_of_year"]
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
            return datetime.combine(day, local.timetz().replace(tzinfo=None), zone)
        if self.kind == "end_of_month":
            first = add_months(local.date().replace(day=1), 1)
        else:
            first = date(local.year + 1, 1, 1)
        return datetime.combine(first, time(0), zone)

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
        return date(earned_on.year + 1, 1, 1)


@dataclass(frozen=True, slots=True)
class RuleBase:
    """What every compiled rule has: identity, condition, order, stacking and caps."""

    rule_id: str
    when: CompiledCondition | None
    priority: int
    group: str | None
    caps: tuple[tuple[str, int], ...]  # (day|week|month|year, most points)


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


@dataclass(frozen=True, slots=True)
class FixedBonus(RuleBase):
    kind: Literal["fixed_bonus"]
    points: int


@dataclass(frozen=True, slots=True)
class NthVisit(RuleBase):
    kind: Literal["nth_visit"]
    visit: int
    period: str
    points: int
    at_period_end: bool = False  # awarded by the scheduler, not by the purchase


@dataclass(frozen=True, slots=True)
class SpendThreshold(RuleBase):
    kind: Literal["spend_threshold"]
    threshold_minor: int
    period: str
    points: int
    at_period_end: bool = False  # awarded by the scheduler, not by the purchase


@dataclass(frozen=True, slots=True)
class StampCard(RuleBase):
    kind: Literal["stamp_card"]
    stamp_per: Literal["item", "visit"]
    card_size: int
    reward_id: str
    stamps_expire: Expiry


@dataclass(frozen=True, slots=True)
class FirstInCategory(RuleBase):
    kind: Literal["first_in_category"]
    category: str
    points: int


@dataclass(frozen=True, slots=True)
class PeriodicRebate(RuleBase):
    kind: Literal["periodic_rebate"]
    percent: Fraction
    period: str
    cap_minor: int | None
    valid_days: int = 90


CompiledRule = (PointsPerSpend | FixedBonus | NthVisit | SpendThreshold | StampCard
                | FirstInCategory | PeriodicRebate)
STATELESS_KINDS = frozenset({"points_per_spend", "fixed_bonus"})


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
        if isinstance(rule, PointsPerSpendRule):
            rules.append(_points_per_spend(rule, base, exponent, minor))
        elif isinstance(rule, FixedBonusRule):
            rules.append(FixedBonus(**base, kind=rule.kind, points=rule.points))
        elif isinstance(rule, NthVisitRule):
            rules.append(NthVisit(**base, kind=rule.kind, visit=rule.visit, period=rule.period,
                                  points=rule.points,
                                  at_period_end=rule.award == "at_period_end"))
        elif isinstance(rule, SpendThresholdRule):
            rules.append(SpendThreshold(**base, kind=rule.kind,
                                        threshold_minor=minor(rule.threshold),
                                        period=rule.period, points=rule.points,
                                        at_period_end=rule.award == "at_period_end"))
        elif isinstance(rule, StampCardRule):
            rules.append(StampCard(**base, kind=rule.kind, stamp_per=rule.stamp_per,
                                   card_size=rule.card_size, reward_id=rule.reward,
                                   stamps_expire=_expiry(rule.stamps_expire)))
        elif isinstance(rule, FirstInCategoryRule):
            rules.append(FirstInCategory(**base, kind=rule.kind, category=rule.category,
                                         points=rule.points))
        elif isinstance(rule, PeriodicRebateRule):
            rules.append(PeriodicRebate(
                **base, kind=rule.kind, percent=Fraction(rule.percent) / 100,
                period=rule.period, cap_minor=None if rule.cap is None else minor(rule.cap),
                valid_days=rule.valid_days))
    order = sorted(range(len(rules)), key=lambda i: (-rules[i].priority, i))
    ordered = tuple(rules[i] for i in order)
    program_caps = _caps(definition.caps)
    conditions = [r.when for r in ordered if r.when is not None] + [
        c for r in ordered if isinstance(r, PointsPerSpend) for _, c, _ in r.multipliers]
    tiers = None if definition.tiers is None else compile_tiers(definition.tiers, minor)
    clubs = {c.id: compile_club(c, minor) for c in definition.clubs}
    fee_skus = {level.fee_sku: (club.club_id, level.level_id) for club in clubs.values()
                for level in club.levels if level.fee_sku is not None}
    tracks_spend = (tiers is not None and tiers.measure == "spend") or any(
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
            r.kind not in STATELESS_KINDS or r.caps for r in ordered),
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
    )


def _points_per_spend(rule: PointsPerSpendRule, base: dict[str, Any], exponent: int,
                      minor: Any) -> PointsPerSpend:
    unit = Fraction(rule.points_per_unit) / 10**exponent
    factors = {cat: unit * Fraction(m) for cat, m in rule.category_multipliers.items()}
    denominator = lcm(unit.denominator, *(f.denominator for f in factors.values()))
    return PointsPerSpend(
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
    )


def _condition(when: Condition, minor: Any) -> CompiledCondition:
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
        expression=None if when.expression is None else compile_expression(when.expression),
        expression_source=when.expression,
    )


def _caps(caps: Caps | None) -> tuple[tuple[str, int], ...]:
    if caps is None:
        return ()
    pairs = (("day", caps.per_day), ("week", caps.per_week), ("month", caps.per_month),
             ("year", caps.per_year))
    return tuple((period, limit) for period, limit in pairs if limit is not None)


def _expiry(policy: ExpiryPolicy) -> Expiry:
    if policy.after_days:
        return Expiry("days", policy.after_days)
    if policy.after_months:
        return Expiry("months", policy.after_months)
    if policy.end_of == "month":
        return Expiry("end_of_month")
    if policy.end_of == "year":
        return Expiry("end_of_year")
    return Expiry("never")
