"""The program language as pydantic models: what a file under rules/ may say."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from loyalty_engine.domain.events import Channel, Tender
from loyalty_engine.domain.money import (
    CurrencyCode,
    MoneyError,
    currency_exponent,
    to_minor,
)
from loyalty_engine.rules.expressions import compile_expression
from loyalty_engine.rules.insights_schema import (
    AnalyticsIn,
    EconomicsIn,
    Segments,
    check_segment_map,
    check_segment_names,
    money_fields,
    segment_map,
)
from loyalty_engine.rules.membership import (
    Club,
    CombinedMeasure,
    Group,
    Perk,
    QuantityMeasure,
    Tiers,
)
from loyalty_engine.rules.multipliers import check_multipliers
from loyalty_engine.rules.schedules import JOBS, check_cron
from loyalty_engine.rules.values import (
    DecimalIn,
    Label,
    LocatedValueError,
    PositiveDecimal,
    Slug,
    at_default,
    checking_new_file,
    shortest_months,
    unused,
)

__all__ = ["DecimalIn", "Label", "LocatedValueError", "PositiveDecimal", "Slug"]

Rounding = Literal["floor", "ceiling", "half_up", "half_even"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Exclusions(_Strict):
    """Items that never earn and never count as qualifying spend."""

    categories: list[Label] = []
    skus: list[Label] = []


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Period = Literal["day", "week", "month", "quarter", "year"]
Money = DecimalIn  # an amount in the program's currency; precision checked per program


def _expression_shorthand(value: object) -> object:
    # `when: "purchase.total > 5000"` is short for `when: {expression: ...}`.
    return {"expression": value} if isinstance(value, str) else value


class Condition(_Strict):
    """When a rule or multiplier applies. Every key given must hold (they are ANDed).

    categories/skus: for spend-based rules they select the items that count; for the
    others the purchase must contain at least one such item.
    """

    categories: list[Label] = []
    skus: list[Label] = []
    stores: list[Annotated[str, Field(min_length=1, max_length=65,
                                      pattern=r"^[^*\x00-\x1f\x7f]+\*?$")]] = Field(
        default=[], description="store ids; 'AMS-*' is a prefix")
    days: list[Weekday] = []
    starts: date | None = Field(default=None, description="first local date (inclusive)")
    ends: date | None = Field(default=None, description="last local date (inclusive)")
    min_spend: Money | None = Field(default=None, ge=0)
    tiers: list[Label] = Field(default=[], description="the member holds one of these tiers")
    perks: list[Label] = Field(default=[], description="the member holds one of these perks "
                               "(through a tier or an active club)")
    clubs: list[Label] = Field(default=[], description="the member is an active member of one "
                               "of these clubs")
    groups: list[Label] = Field(default=[], description="the member belongs to one of these "
                                "affinity groups")
    consents: list[Label] = Field(default=[], description="the member has given every one of "
                                  "these consents (e.g. marketing)")
    # Keys added after programs were stored leave the dump (so the content hash of a file
    # that does not use them) as it was when left out.
    tenders: list[Tender] = Field(default=[], exclude_if=unused, description="the purchase "
                                  "was paid with one of these (card, app, cash, gift_card, "
                                  "points)")
    channels: list[Channel] = Field(default=[], exclude_if=unused, description="the "
                                    "purchase was made in one of these channels (store, "
                                    "web, app)")
    segments: list[Slug] = Field(default=[], exclude_if=unused, description="the member's "
                                 "RFM segment (of the snapshot in force at the purchase) is "
                                 "one of these")
    expression: str | None = Field(
        default=None, min_length=1, max_length=2000,
        description="a CEL expression over the declared context; must be a bool",
    )

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_expression(value)  # raises ValueError with CEL's own position
        return value

    @model_validator(mode="after")
    def _window_in_order(self) -> Condition:
        if self.starts is not None and self.ends is not None and self.ends < self.starts:
            raise LocatedValueError(("ends",), f"ends ({self.ends}) is before starts "
                                    f"({self.starts}); the rule could never apply")
        return self


When = Annotated[Condition, BeforeValidator(_expression_shorthand)]


class Caps(_Strict):
    """Most points a rule (or the whole program) may award one member per calendar period."""

    per_day: PositiveInt | None = None
    per_week: PositiveInt | None = None
    per_month: PositiveInt | None = None
    per_year: PositiveInt | None = None
    # From the member's enrolment in the program (a year from each anniversary).
    per_membership_year: PositiveInt | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Caps:
        # A longer period's cap above what the shorter caps allow in it can never be met.
        # Weeks are ISO weeks, so a month touches up to 6 of them and a year up to 54.
        most_in = {("per_day", "per_week"): 7, ("per_day", "per_month"): 31,
                   ("per_day", "per_year"): 366, ("per_week", "per_month"): 6,
                   ("per_week", "per_year"): 54, ("per_month", "per_year"): 12,
                   # A membership year touches up to 54 ISO weeks, 13 months and 2 years.
                   ("per_day", "per_membership_year"): 366,
                   ("per_week", "per_membership_year"): 54,
                   ("per_month", "per_membership_year"): 13,
                   ("per_year", "per_membership_year"): 2}
        names = ("per_day", "per_week", "per_month", "per_year", "per_membership_year")
        for index, name in enumerate(names):
            value = getattr(self, name)
            if value is None:
                continue
            for shorter in names[:index]:
                bound = getattr(self, shorter)
                if bound is None:
                    continue
                most = bound * most_in[(shorter, name)]
                if value > most:
                    raise LocatedValueError(
                        (name,), f"{name} {value} can never be met: {shorter} {bound} "
                                 f"allows at most {most} in a {name[4:]}")
        return self


class ExpiryPolicy(_Strict):
    """When earned points (or stamps) lapse: never (the default), N days or months after
    earning, or at the end of the month or year of earning (program time); N months after
    earning and then at the end of that month (`then: end_of_month`); and, for points,
    the whole balance after `inactive_months` without earning or redeeming."""

    after_days: Annotated[int, Field(ge=1, le=36500)] | None = None
    after_months: Annotated[int, Field(ge=1, le=1200)] | None = None
    end_of: Literal["month", "year"] | None = None
    then: Literal["end_of_month"] | None = Field(default=None, exclude_if=unused)
    inactive_months: int | None = Field(default=None, exclude_if=unused)

    @model_validator(mode="before")
    @classmethod
    def _never(cls, value: object) -> object:
        return {} if value == "never" else value

    @model_validator(mode="after")
    def _one_way(self) -> ExpiryPolicy:
        given = [k for k in ("after_days", "after_months", "end_of") if getattr(self, k)]
        if len(given) > 1:
            raise LocatedValueError((given[1],), f"give one of after_days, after_months and "
                                    f"end_of (or 'never'), not {' and '.join(given)}")
        return self

    @field_validator("inactive_months")
    @classmethod
    def _whole_months(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 1200:
            raise ValueError(f"inactive_months {value} must be 1 to 1200: the months without "
                             "earning or redeeming after which the whole balance lapses (for "
                             "no inactivity expiry, leave it out)")
        return value

    @model_validator(mode="after")
    def _then_after_months(self) -> ExpiryPolicy:
        if self.then is not None and self.after_months is None:
            raise LocatedValueError(("then",), "then: end_of_month rounds after_months up to "
                                    "the end of the month: give after_months too (e.g. "
                                    "{after_months: 6, then: end_of_month}), or use "
                                    "end_of: month")
        return self

    @model_validator(mode="after")
    def _inactivity_can_act(self) -> ExpiryPolicy:
        # Every lot is earned at or before the member's last activity, so a per-lot expiry
        # no later than the inactivity deadline has taken everything before it comes.
        months = self.inactive_months
        if months is None:
            return self
        first = None
        if self.after_months is not None and months >= self.after_months:
            first = f"after_months {self.after_months}"
        elif self.after_days is not None and months * 28 >= self.after_days:
            first = f"after_days {self.after_days}"
        elif self.end_of == "month" or (self.end_of == "year" and months >= 12):
            first = f"end_of: {self.end_of}"
        if first is not None:
            raise LocatedValueError(
                ("inactive_months",),
                f"inactive_months {months} can never expire anything: with {first} every "
                f"point has lapsed before {months} months without activity can pass; give "
                f"a shorter inactive_months or drop one of the two")
        return self


class Multiplier(_Strict):
    """Multiplies a points_per_spend rule's points while its condition holds."""

    id: Slug
    when: When
    factor: PositiveDecimal
    group: Slug | None = Field(
        default=None, exclude_if=unused, description="a group of multipliers combined as "
        "the rule's multiplier_groups says (max: only the largest counts)")
    excludes: list[Slug] = Field(
        default=[], exclude_if=unused, description="ids of the rule's multipliers that do "
                                                    "not apply where this one does")


Combine = Literal["max", "multiply"]


class _Rule(_Strict):
    id: Slug
    description: str | None = None
    when: When | None = None
    priority: int = Field(default=0, ge=-1000, le=1000,
                          description="higher first: earlier rules use caps first")
    group: Slug | None = Field(
        default=None, description="of the rules of one group that earn, only the best stands",
    )
    caps: Caps | None = None


class PointsPerSpendRule(_Rule):
    """Points for every whole currency unit of eligible spend."""

    kind: Literal["points_per_spend"]
    points_per_unit: PositiveDecimal = Field(
        description="points per one unit of the currency (1 EUR), before multipliers"
    )
    rounding: Rounding = "floor"
    minimum_purchase: DecimalIn = Field(
        default=Decimal(0),
        ge=0,
        description="eligible spend (after exclusions) below which the rule earns nothing",
    )
    category_multipliers: dict[Label, PositiveDecimal] = {}
    multipliers: list[Multiplier] = []
    multiplier_groups: dict[Slug, Combine] = Field(
        default={}, exclude_if=unused, description="how the multipliers of each group "
        "combine: max (only the largest that applies counts) or multiply (the default)")
    max_factor: PositiveDecimal | None = Field(
        default=None, exclude_if=unused, description="the most the multipliers should "
        "multiply to together; validation warns about multipliers that can go beyond it")

    @model_validator(mode="after")
    def _multipliers_consistent(self) -> PointsPerSpendRule:
        check_multipliers(self.multipliers, self.multiplier_groups)
        return self


class FixedBonusRule(_Rule):
    """A fixed number of points for every purchase the condition accepts."""

    kind: Literal["fixed_bonus"]
    points: PositiveInt


class ClubYear(_Strict):
    """A fee club's membership year: the member's paid term, renewed term by term."""

    membership_year: Slug = Field(description="the fee club whose term the period follows")


def _period_branch(value: object) -> str:
    # A mapping is a club's year; anything else is a period's name: one problem, not one
    # per alternative.
    return "period-club" if isinstance(value, dict | ClubYear) else "period-name"


# The periods of a visit or threshold rule, and of a rebate: calendar ones by name, and
# the periods that follow the member: membership_year (from the enrolment in the
# program) or {membership_year: CLUB} (a fee club's term).
VisitPeriod = Annotated[
    Annotated[Literal["day", "week", "month", "quarter", "year", "membership_year"],
              Tag("period-name")] | Annotated[ClubYear, Tag("period-club")],
    Discriminator(_period_branch)]
RebatePeriod = Annotated[
    Annotated[Literal["month", "quarter", "year", "membership_year"], Tag("period-name")]
    | Annotated[ClubYear, Tag("period-club")],
    Discriminator(_period_branch)]


def period_name(period: str | ClubYear) -> str:
    """A rule's period as the compiled program keeps it: 'month', 'membership_year', or
    'membership_year:CLUB'."""
    if isinstance(period, ClubYear):
        return f"membership_year:{period.membership_year}"
    return period


Award = Literal["on_purchase", "at_period_end"]
_AWARD: Award = Field(
    default="on_purchase",
    description="on_purchase: at the purchase that reaches it; at_period_end: by the "
                "scheduler once the period has ended, to every member who reached it")


class NthVisitRule(_Rule):
    """Points on the Nth qualifying visit (purchase) in a calendar period, once per period."""

    kind: Literal["nth_visit"]
    visit: Annotated[int, Field(ge=1, le=1000)]
    period: VisitPeriod
    points: PositiveInt
    award: Award = _AWARD
    count: Literal["purchases", "distinct_days"] = Field(
        default="purchases", exclude_if=at_default("purchases"),
        description="purchases: every purchase is a visit; "
        "distinct_days: the purchases of one local day are one visit")

    @model_validator(mode="after")
    def _days_counted_at_purchase(self) -> NthVisitRule:
        if self.count == "distinct_days" and self.award == "at_period_end":
            raise LocatedValueError(("count",), "visits counted as distinct days are awarded "
                                    "at the purchase that reaches them: drop award: "
                                    "at_period_end, or count: purchases")
        return self


class SpendThresholdRule(_Rule):
    """Points once per period, when the period's eligible spend reaches the threshold."""

    kind: Literal["spend_threshold"]
    threshold: Annotated[Money, Field(gt=0)]
    period: VisitPeriod
    points: PositiveInt
    award: Award = _AWARD


class StampCardRule(_Rule):
    """Stamps from matching items or visits; every card_size stamps issue the reward.

    Stamps beyond a completed card carry over to the next one.
    """

    kind: Literal["stamp_card"]
    stamp_per: Literal["item", "visit"]
    card_size: Annotated[int, Field(ge=2, le=1000)]
    reward: Slug
    stamps_expire: ExpiryPolicy = Field(default_factory=lambda: ExpiryPolicy())
    min_item_price: Annotated[Money, Field(gt=0)] | None = Field(
        default=None, exclude_if=unused,
        description="only items whose unit price (amount / quantity) is at "
        "least this earn stamps (a free drink earns none); per visit: the visit counts "
        "when some counted item reaches it")
    count: Literal["purchases", "distinct_days"] = Field(
        default="purchases", exclude_if=at_default("purchases"),
        description="stamp_per visit: purchases (each earns a stamp) or "
        "distinct_days (one stamp per local day)")

    @model_validator(mode="after")
    def _days_are_visits(self) -> StampCardRule:
        if self.count == "distinct_days" and self.stamp_per != "visit":
            raise LocatedValueError(("count",), "count: distinct_days counts visits; use it "
                                    "with stamp_per: visit (per item, every item earns)")
        return self

    @field_validator("stamps_expire")
    @classmethod
    def _stamps_not_by_inactivity(cls, value: ExpiryPolicy) -> ExpiryPolicy:
        if value.inactive_months is not None:
            raise LocatedValueError(("inactive_months",), "inactive_months applies to a "
                                    "points balance (points.expiry), not to stamps: give "
                                    "stamps_expire a per-stamp expiry or move it")
        return value


class FirstInCategoryRule(_Rule):
    """Points for a member's first purchase in a category (cross-selling)."""

    kind: Literal["first_in_category"]
    category: Label
    points: PositiveInt


class PeriodicRebateRule(_Rule):
    """percent of each period's eligible spend, capped, issued as a voucher after the
    period ends (by the scheduler); until then the spend accrues."""

    kind: Literal["periodic_rebate"]
    percent: Annotated[DecimalIn, Field(gt=0, le=100)]
    period: RebatePeriod
    cap: Annotated[Money, Field(gt=0)] | None = None
    valid_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        default=90, description="how long the rebate voucher stays valid after the period")


Rule = Annotated[
    PointsPerSpendRule | FixedBonusRule | NthVisitRule | SpendThresholdRule | StampCardRule
    | FirstInCategoryRule | PeriodicRebateRule,
    Field(discriminator="kind"),
]
POINT_RULES = ("points_per_spend", "fixed_bonus", "nth_visit", "spend_threshold",
               "first_in_category")


class PointsPolicy(_Strict):
    """How points behave once earned."""

    pending_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=0, description="days new points stay pending (not spendable) after the purchase",
    )
    expiry: ExpiryPolicy = Field(default_factory=lambda: ExpiryPolicy())
    refund_shortfall: Literal["negative_balance", "debt"] = Field(
        default="negative_balance",
        description="a refund takes back points already spent: the balance goes negative, "
                    "or the balance stops at zero and the rest is a debt repaid from new points",
    )

    @model_validator(mode="after")
    def _expiry_after_pending(self) -> PointsPolicy:
        # Points that lapse before they could be spent: some or all never become usable.
        pending, expiry = self.pending_days, self.expiry
        if not pending or not checking_new_file():
            return self
        if expiry.after_days is not None and expiry.after_days <= pending:
            raise LocatedValueError(
                ("expiry", "after_days"), f"points would expire after {expiry.after_days} "
                f"days, before their pending_days ({pending}) end, so they could never be "
                f"spent; give after_days above {pending}, or fewer pending_days")
        if expiry.after_months is not None and shortest_months(expiry.after_months) <= pending:
            raise LocatedValueError(
                ("expiry", "after_months"), f"after_months {expiry.after_months} can be as "
                f"little as {shortest_months(expiry.after_months)} days, not more than "
                f"pending_days ({pending}): points would expire before they could be spent; "
                "give more months, or fewer pending_days")
        if expiry.end_of is not None:
            raise LocatedValueError(
                ("expiry", "end_of"), f"points earned near the end of the {expiry.end_of} "
                f"expire before their pending_days ({pending}) end, so they could never be "
                "spent; use after_months (or after_days) with pending_days, or pending_days: 0")
        return self


class RedemptionPolicy(_Strict):
    """How redemptions are accepted."""

    backdate_hours: Annotated[int, Field(ge=1, le=720)] = Field(
        default=24,
        description="how long before it is recorded a redemption may be dated: the time an "
                    "offline till may take to send it; older ones are refused",
    )


class Reward(_Strict):
    """A voucher the program can issue: from a stamp card, a rebate, or bought with points."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["fixed_amount", "percentage", "free_item"]
    amount: Annotated[Money, Field(gt=0)] | None = None
    percent: Annotated[DecimalIn, Field(gt=0, le=100)] | None = None
    sku: Label | None = None
    category: Label | None = None
    valid_days: Annotated[int, Field(ge=1, le=3650)] = 90
    cost_points: PositiveInt | None = Field(
        default=None, description="points a member pays to get this voucher; absent: not for sale",
    )

    @model_validator(mode="after")
    def _value_given(self) -> Reward:
        needs = {"fixed_amount": ("amount",), "percentage": ("percent",),
                 "free_item": ("sku", "category")}[self.kind]
        if not any(getattr(self, field) is not None for field in needs):
            raise LocatedValueError((), f"a {self.kind} reward needs "
                                    f"{' or '.join(repr(f) for f in needs)}")
        return self


Cron = Annotated[str, Field(min_length=1, max_length=120,
                            description="five-field cron in program time, e.g. '0 3 1 * *'")]


class Schedule(_Strict):
    """When the scheduler runs each job for this program (program time); absent: the
    defaults of loyalty_engine/rules/schedules.py."""

    activate: Cron | None = None
    expire: Cron | None = None
    period_bonuses: Cron | None = None
    rebates: Cron | None = None
    review_tiers: Cron | None = None
    clubs: Cron | None = None
    notices: Cron | None = None
    # Added after programs were stored: absent, it leaves their content hash as it was.
    rfm_snapshot: Cron | None = Field(default=None, exclude_if=unused)
    notice_days: Annotated[int, Field(ge=1, le=366)] = Field(
        default=30, description="how far ahead advance notices look")

    @field_validator("activate", "expire", "period_bonuses", "rebates", "review_tiers",
                     "clubs", "notices", "rfm_snapshot")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            check_cron(value)
        return value

    def crons(self) -> dict[str, str]:
        """The cron of every job, overrides over defaults."""
        return {name: getattr(self, name) or spec.default_cron for name, spec in JOBS.items()}


class ProgramDefinition(_Strict):
    """One loyalty program: the root of a file under rules/."""

    program: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    language: Literal[1, 2] | None = Field(default=None, exclude_if=unused, description=(
        "what amounts without a unit in their name mean in expressions (purchase.total, "
        "purchase.eligible_spend, an item's amount): 1 minor units (cents), 2 the currency "
        "(euros); absent: the file may not use them (stored versions without it: 1)"))
    currency: CurrencyCode
    timezone: str
    enrolment: Literal["open", "explicit"] = Field(description=(
        "open: every purchasing member is enrolled; explicit: only members enrolled first "
        "(POST /v1/members, loyalty members enrol --program) earn"))
    stores: list[Annotated[str, Field(min_length=1, max_length=65,
                                      pattern=r"^[^*\x00-\x1f\x7f]+\*?$")]] = Field(
        default=[], description="store ids whose purchases the program sees; 'AMS-*' is a "
                                "prefix; absent: every store")
    exclude: Exclusions = Exclusions()
    points: PointsPolicy = Field(default_factory=lambda: PointsPolicy())
    redemptions: RedemptionPolicy = Field(default_factory=lambda: RedemptionPolicy())
    caps: Caps | None = Field(default=None, description="caps over all point rules together")
    rewards: list[Reward] = []
    perks: list[Perk] = []
    tiers: Tiers | None = None
    groups: list[Group] = []
    clubs: list[Club] = []
    schedule: Schedule = Field(default_factory=lambda: Schedule())
    # Measuring members (added after programs were stored: at their defaults they leave
    # the dump, and so the content hash, as it was). Before `rules`, whose conditions
    # name the map's segments.
    economics: EconomicsIn = Field(default_factory=lambda: EconomicsIn(),
                                   exclude_if=at_default(EconomicsIn()))
    analytics: AnalyticsIn = Field(default_factory=lambda: AnalyticsIn(),
                                   exclude_if=at_default(AnalyticsIn()))
    segments: Segments | None = Field(
        default=None, exclude_if=unused, description="the segment map: name -> boxes of "
        "R, F and M scores; absent: the shipped default (analytics/segments.py)")
    rules: Annotated[list[Rule], Field(min_length=1)]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone such as 'Europe/Amsterdam'"
            ) from None
        return value

    @field_validator("economics", "analytics")
    @classmethod
    def _insight_money(cls, value: EconomicsIn | AnalyticsIn, info: ValidationInfo
                       ) -> EconomicsIn | AnalyticsIn:
        for where, amount in money_fields(value):
            _check_money(info, amount, where)
        return value

    @field_validator("segments")
    @classmethod
    def _whole_map(cls, value: Segments | None) -> Segments | None:
        if value is not None:
            check_segment_names(value)
            check_segment_map(segment_map(value))
        return value

    @field_validator("rewards")
    @classmethod
    def _unique_rewards(cls, rewards: list[Reward], info: ValidationInfo) -> list[Reward]:
        _unique_ids(rewards, "reward")
        for index, reward in enumerate(rewards):
            if reward.amount is not None:
                _check_money(info, reward.amount, (index, "amount"))
        return rewards

    @field_validator("perks", "groups")
    @classmethod
    def _unique_named(cls, items: list[Perk] | list[Group], info: ValidationInfo
                      ) -> list[Perk] | list[Group]:
        _unique_ids(items, "perk" if info.field_name == "perks" else "group")
        return items

    @field_validator("tiers")
    @classmethod
    def _tier_perks(cls, tiers: Tiers | None, info: ValidationInfo) -> Tiers | None:
        if tiers is None:
            return None
        perks = _defined(info, "perks")
        for index, level in enumerate(tiers.levels):
            _known(level.perks, perks, "perk", ("levels", index, "perks"))
            for name, value in tiers.level_thresholds(level).items():
                if tiers.measures[name] == "spend":
                    where: tuple[str | int, ...] = (
                        ("levels", index, "threshold") if level.threshold is not None
                        else ("levels", index, "thresholds", name))
                    _check_money(info, value, where)
        _check_tier_selections(tiers, info)
        return tiers

    @field_validator("clubs")
    @classmethod
    def _consistent_clubs(cls, clubs: list[Club], info: ValidationInfo) -> list[Club]:
        _unique_ids(clubs, "club")
        perks = _defined(info, "perks")
        groups = _defined(info, "groups")
        skus: set[str] = set()
        for index, club in enumerate(clubs):
            _known(club.perks, perks, "perk", (index, "perks"))
            if club.group is not None:
                _known([club.group], groups, "group", (index, "group"), single=True)
            for l_index, level in enumerate(club.levels):
                _known(level.perks, perks, "perk", (index, "levels", l_index, "perks"))
                _check_money(info, level.fee, (index, "levels", l_index, "fee"))
                if level.intro_fee is not None:
                    _check_money(info, level.intro_fee,
                                 (index, "levels", l_index, "intro_fee"))
                if level.trial is not None:
                    _check_money(info, level.trial.fee,
                                 (index, "levels", l_index, "trial", "fee"))
                if level.fee_sku is not None:
                    if level.fee_sku in skus:
                        raise LocatedValueError((index, "levels", l_index, "fee_sku"),
                                                f"fee SKU {level.fee_sku!r} pays two fees; "
                                                "give each level its own")
                    skus.add(level.fee_sku)
            if club.waiver is not None:
                _check_money(info, club.waiver.min_spend_last_year,
                             (index, "waiver", "min_spend_last_year"))
        return clubs

    @field_validator("rules")
    @classmethod
    def _consistent_rules(cls, rules: list[Rule], info: ValidationInfo) -> list[Rule]:
        _unique_ids(rules, "rule")
        exclude: Exclusions = info.data.get("exclude", Exclusions())
        rewards = {r.id for r in info.data.get("rewards", [])}
        groups: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            for field, value in _money_fields(rule):
                _check_money(info, value, (index, *field))
            at_period_end = getattr(rule, "award", "on_purchase") == "at_period_end"
            if at_period_end and rule.group is not None:
                raise LocatedValueError(
                    (index, "group"), "a rule awarded at period end cannot stack in a best-of "
                    "group (groups compare what purchases earn)")
            if at_period_end and rule.caps is not None:
                raise LocatedValueError(
                    (index, "caps"), "a rule awarded at period end pays once per period and "
                    "member; caps limit what purchases earn, so they would never apply")
            if rule.group is not None:
                if rule.kind not in POINT_RULES:
                    raise LocatedValueError(
                        (index, "group"), f"a {rule.kind} rule cannot stack in a best-of group "
                        f"(groups compare points; it does not award points at purchase)")
                groups.setdefault(rule.group, []).append(index)
            _check_club_year(rule, info, index)
            if isinstance(rule, StampCardRule) and rule.reward not in rewards:
                known = ", ".join(sorted(rewards)) or "none are defined"
                raise LocatedValueError((index, "reward"), f"unknown reward {rule.reward!r} "
                                        f"(rewards: {known})")
            if isinstance(rule, FirstInCategoryRule) and rule.category in exclude.categories:
                raise LocatedValueError((index, "category"), f"category {rule.category!r} is "
                                        "excluded from the program, so this rule could never "
                                        "be met")
            if rule.when is not None:
                _check_reachable(rule.when, exclude, (index, "when"))
                _check_references(rule.when, info, (index, "when"))
            if isinstance(rule, PointsPerSpendRule):
                for m_index, multiplier in enumerate(rule.multipliers):
                    where = (index, "multipliers", m_index, "when")
                    _check_reachable(multiplier.when, exclude, where)
                    _check_references(multiplier.when, info, where)
            if rule.caps is not None and isinstance(
                rule, FixedBonusRule | NthVisitRule | SpendThresholdRule | FirstInCategoryRule
            ):
                smallest = min(c for c in (rule.caps.per_day, rule.caps.per_week,
                                           rule.caps.per_month, rule.caps.per_year,
                                           rule.caps.per_membership_year) if c)
                if smallest < rule.points:
                    raise LocatedValueError(
                        (index, "caps"), f"a cap of {smallest} is below the rule's "
                                         f"{rule.points} points, so it could never be awarded "
                                         "in full")
        program_caps: Caps | None = info.data.get("caps")
        if program_caps is not None and checking_new_file():
            _check_program_caps(rules, program_caps)
        for group, members in groups.items():
            if len(members) == 1:
                raise LocatedValueError((members[0], "group"), f"group {group!r} has only this "
                                        "rule; best-of needs two or more rules to compare")
        return rules


def _check_club_year(rule: Rule, info: ValidationInfo, index: int) -> None:
    """{membership_year: CLUB} must name a fee club of the program: only a fee club has
    terms that renew."""
    period = getattr(rule, "period", None)
    if not isinstance(period, ClubYear):
        return
    if "clubs" not in info.data:
        return  # the clubs section failed validation itself: reported there
    clubs = {c.id: c for c in info.data["clubs"]}
    where = (index, "period", "membership_year")
    found = clubs.get(period.membership_year)
    if found is None:
        fee = ", ".join(sorted(c.id for c in clubs.values() if c.kind == "fee"))
        raise LocatedValueError(where, f"unknown club {period.membership_year!r} (fee clubs: "
                                       f"{fee or 'none are defined'}); name a fee club, or "
                                       "write 'period: membership_year' for a year from the "
                                       "enrolment")
    if found.kind != "fee":
        raise LocatedValueError(where, f"club {found.id!r} is {found.kind}: only a fee club has "
                                       "terms to follow; write 'period: membership_year' for "
                                       "a year from the enrolment")


def _check_program_caps(rules: list[Rule], caps: Caps) -> None:
    """A program-wide cap below a rule's fixed award: the award could never be given whole."""
    limits = [(name, value) for name in ("per_day", "per_week", "per_month", "per_year")
              if (value := getattr(caps, name)) is not None]
    if not limits:
        return
    name, smallest = min(limits, key=lambda limit: limit[1])
    for index, rule in enumerate(rules):
        fixed = isinstance(rule, FixedBonusRule | NthVisitRule | SpendThresholdRule)
        if not fixed or getattr(rule, "award", "on_purchase") != "on_purchase":
            continue  # (awards at period end are not capped)
        points: int = getattr(rule, "points")  # noqa: B009  (the three kinds all have it)
        if points > smallest:
            raise LocatedValueError(
                (index, "points"), f"{points} points is more than the program's caps."
                f"{name} of {smallest}, so this award could never be given whole; raise "
                f"caps.{name} to at least {points}, or award at most {smallest}")


def _known(used: list[str], known: set[str] | None, what: str,
           where: tuple[str | int, ...], single: bool = False) -> None:
    """Every name used must be defined. known is None when the section defining them
    failed validation itself: that problem is reported there, not again here."""
    if known is None:
        return
    for index, name in enumerate(used):
        if name not in known:
            listed = ", ".join(sorted(known)) or "none are defined"
            raise LocatedValueError(where if single else (*where, index),
                                    f"unknown {what} {name!r} ({what}s: {listed})")


def _defined(info: ValidationInfo, section: str) -> set[str] | None:
    """Ids a list section defines; None if that section failed validation."""
    if section not in info.data:
        return None
    return {item.id for item in info.data[section]}


def _check_references(when: Condition, info: ValidationInfo,
                      where: tuple[str | int, ...]) -> None:
    """Tiers, perks, clubs and groups a condition names must be defined by the program."""
    if "tiers" in info.data:  # (a ladder that failed validation is reported there)
        tiers: Tiers | None = info.data["tiers"]
        if when.tiers and tiers is None:
            raise LocatedValueError((*where, "tiers"), "the program defines no tiers (add a "
                                    "tiers: ladder, or drop this condition)")
        if tiers is not None:
            _known(when.tiers, {t.id for t in tiers.levels}, "tier", (*where, "tiers"))
    _known(when.perks, _defined(info, "perks"), "perk", (*where, "perks"))
    _known(when.clubs, _defined(info, "clubs"), "club", (*where, "clubs"))
    _known(when.groups, _defined(info, "groups"), "group", (*where, "groups"))
    if when.segments and "segments" in info.data:  # (a map that failed is reported there)
        declared: Segments | None = info.data["segments"]
        names = segment_map(declared).names
        for index, name in enumerate(when.segments):
            if name not in names:
                whose = "the program's segments" if declared is not None else (
                    "the default map's segments (the file declares no segments:)")
                raise LocatedValueError((*where, "segments", index),
                                        f"unknown segment {name!r} ({whose}: "
                                        f"{', '.join(names)})")


def _unique_ids(items: Sequence[Reward | _Rule | Perk | Group | Club], what: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.id in seen:
            raise LocatedValueError((index, "id"), f"{what} id {item.id!r} is used twice; "
                                    f"{what} ids must be unique within a program")
        seen.add(item.id)


def _money_fields(rule: _Rule) -> list[tuple[tuple[str | int, ...], Decimal]]:
    found: list[tuple[tuple[str | int, ...], Decimal]] = []
    for name in ("minimum_purchase", "threshold", "cap", "min_item_price"):
        value = getattr(rule, name, None)
        if isinstance(value, Decimal):
            found.append(((name,), value))
    if rule.when is not None and rule.when.min_spend is not None:
        found.append((("when", "min_spend"), rule.when.min_spend))
    return found


def _check_money(info: ValidationInfo, value: Decimal, where: tuple[str | int, ...]) -> None:
    currency = info.data.get("currency")
    if currency is None:  # already reported as a currency error
        return
    exponent = currency_exponent(currency)
    try:
        to_minor(value, exponent, "amount", currency)
    except MoneyError as exc:
        raise LocatedValueError(where, str(exc)) from None
    written = value.as_tuple().exponent
    if isinstance(written, int) and -written > exponent and checking_new_file():
        # "350.00" for yen is exact, but says the program manager thinks in cents.
        whole = format(value.quantize(Decimal(1).scaleb(-exponent)), "f")
        places = f"{exponent} decimal{'s' if exponent != 1 else ''}" if exponent else (
            "no decimals")
        raise LocatedValueError(where, f"amount {value} is written with more decimals than "
                                f"{currency} has ({places}); write {whole}")


def _check_tier_selections(tiers: Tiers, info: ValidationInfo) -> None:
    """A quantity measure whose selection names only excluded items would never count."""
    exclude: Exclusions | None = info.data.get("exclude")
    if exclude is None:
        return
    combined = isinstance(tiers.measure, CombinedMeasure)
    for name, measure in tiers.measures.items():
        if not isinstance(measure, QuantityMeasure):
            continue
        where: tuple[str | int, ...] = (
            ("measure", tiers.measure.combine, name, "quantity")
            if isinstance(tiers.measure, CombinedMeasure) else ("measure", "quantity"))
        selection = measure.quantity
        if all(c in exclude.categories for c in selection.categories) and all(
                s in exclude.skus for s in selection.skus):
            key = "categories" if selection.categories else "skus"
            raise LocatedValueError(
                (*where, key), f"every {'category' if key == 'categories' else 'SKU'} the "
                f"{name if combined else 'quantity'} measure counts is excluded from the "
                "program, so it would never count: select items the program counts, or stop "
                "excluding them")


def _check_reachable(when: Condition, exclude: Exclusions,
                     where: tuple[str | int, ...]) -> None:
    """A condition that only selects excluded items can never be met."""
    if when.categories and all(c in exclude.categories for c in when.categories):
        raise LocatedValueError((*where, "categories"), "every category listed is excluded "
                                "from the program, so this could never be met")
    if when.skus and all(s in exclude.skus for s in when.skus):
        raise LocatedValueError((*where, "skus"), "every SKU listed is excluded from the "
                                "program, so this could never be met")
