"""The program language's membership parts: perks, tiers, clubs and affinity groups."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, PositiveInt, Tag, model_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Perk(_Strict):
    """A named benefit (free delivery, birthday gift) that tiers and clubs grant and that
    conditions can test with `perks:`."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]


class TierLevel(_Strict):
    """One rung of the ladder: reached when the window's qualifying credit reaches threshold
    (or, on a ladder of several measures, its `thresholds` as `any` or `all` combines them)."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    threshold: Annotated[DecimalIn, Field(ge=0)] | None = Field(
        default=None,
        description="spend in the program currency, or a number of visits, days, points or "
                    "items (a ladder of one measure)")
    thresholds: dict[Slug, Annotated[DecimalIn, Field(ge=0)]] | None = Field(
        default=None, exclude_if=unused,
        description="a ladder of several measures: a threshold per measure name")
    multiplier: PositiveDecimal | None = Field(
        default=None, description="multiplies points_per_spend rules while the tier is held")
    perks: list[Slug] = []


class Selection(_Strict):
    """The purchase lines a quantity measure counts: these categories and/or SKUs."""

    categories: list[Label] = []
    skus: list[Label] = []

    @model_validator(mode="after")
    def _something(self) -> Selection:
        if not self.categories and not self.skus:
            raise LocatedValueError((), "a quantity measure needs the categories or skus of "
                                    "the lines whose quantity it sums")
        return self


class QuantityMeasure(_Strict):
    """Sums the quantity of the lines matching a selection (nights, flights, segments)."""

    quantity: Selection
    unit: Slug | None = Field(
        default=None, description="what is counted, as people read it (nights); the "
                                  "measure's name in a ladder of several")


def _measure_shape(value: object) -> str:
    """Which shape of a union a value is written in (or, serialising, is), so that a
    mistake is reported once, in that shape (tags starting with '~' are left out of
    problem locations)."""
    if isinstance(value, QuantityMeasure) or (isinstance(value, dict) and "quantity" in value):
        return "~quantity"
    if isinstance(value, dict | CombinedMeasure):  # (defined below; looked up when called)
        return "~combined"
    return "~name"


def _window_shape(value: object) -> str:
    return "~rolling" if isinstance(value, dict | RollingWindow) else "~name"


def _one_measure(value: object) -> str:
    return "~quantity" if isinstance(value, dict | QuantityMeasure) else "~name"


MeasureName = Literal["spend", "visits", "points", "days"]
Measure = Annotated[
    Annotated[MeasureName, Tag("~name")] | Annotated[QuantityMeasure, Tag("~quantity")],
    Discriminator(_one_measure)]


class CombinedMeasure(_Strict):
    """Several named measures: a level is reached when any (or all) of its thresholds are."""

    any: Annotated[dict[Slug, Measure], Field(min_length=2, max_length=4)] | None = None
    all: Annotated[dict[Slug, Measure], Field(min_length=2, max_length=4)] | None = None

    @model_validator(mode="after")
    def _one(self) -> CombinedMeasure:
        if (self.any is None) == (self.all is None):
            raise LocatedValueError((), "give either any: (one measure reaching its threshold "
                                    "qualifies) or all: (every measure must), with two or more "
                                    "named measures")
        kinds = [m for m in self.measures.values() if isinstance(m, str)]
        for kind in kinds:
            if kinds.count(kind) > 1:
                raise LocatedValueError((self.combine,), f"{kind} is measured twice; name "
                                        "each measure once")
        return self

    @property
    def combine(self) -> Literal["any", "all"]:
        """How the measures' thresholds combine."""
        return "any" if self.any is not None else "all"

    @property
    def measures(self) -> dict[str, Measure]:
        """The named measures, in the order written."""
        found = self.any if self.any is not None else self.all
        assert found is not None
        return found


class RollingWindow(_Strict):
    """The last N months up to the day, reviewed monthly (the 1st), quarterly (1 January,
    April, July, October) or yearly (1 January, or review_on)."""

    rolling_months: Annotated[int, Field(ge=1, le=120)]
    review: Literal["monthly", "quarterly", "yearly"] = Field(
        default="monthly", exclude_if=at_default("monthly"),
        description="the 1st of every month; 1 January, April, July and "
                                       "October; or once a year on review_on")
    review_on: Annotated[str, Field(pattern=r"^\d\d-\d\d$")] | None = Field(
        default=None, exclude_if=unused,
        description="yearly reviews: the day (MM-DD, default 01-01)")

    @model_validator(mode="after")
    def _review_day(self) -> RollingWindow:
        if self.review_on is None:
            return self
        if self.review != "yearly":
            raise LocatedValueError(("review_on",), f"review_on is the day of a yearly review; "
                                    f"a {self.review} review falls on the 1st (drop review_on "
                                    "or set review: yearly)")
        month, day = (int(part) for part in self.review_on.split("-"))
        if not 1 <= month <= 12 or not 1 <= day <= 28:
            raise LocatedValueError(("review_on",), f"review_on {self.review_on!r} is not a day "
                                    "every year has: give MM-DD with a day from 01 to 28")
        return self


def measure_kind(measure: Measure) -> str:
    """spend, visits, points, days or quantity."""
    return measure if isinstance(measure, str) else "quantity"


class Tiers(_Strict):
    """A tier ladder: what qualifies, over which window, and how members go down."""

    measure: Annotated[
        Annotated[MeasureName, Tag("~name")] | Annotated[QuantityMeasure, Tag("~quantity")]
        | Annotated[CombinedMeasure, Tag("~combined")], Discriminator(_measure_shape)] = Field(
        description="eligible spend, purchases, distinct days, points earned (never the "
                    "balance), a quantity of items, or several of them with any:/all:")
    window: Annotated[
        Annotated[Literal["calendar_year", "anniversary"], Tag("~name")]
        | Annotated[RollingWindow, Tag("~rolling")], Discriminator(_window_shape)]
    downgrade: Literal["qualified", "one_level", "hold_next_period"] = Field(
        description="at a review: drop to the qualified tier, at most one level, or keep a "
                    "tier through the period after the one it was reached in")
    refunds: Literal["immediate", "at_review"] = Field(
        default="at_review",
        description="whether a refund that takes credit below the tier downgrades at once")
    levels: Annotated[list[TierLevel], Field(min_length=1, max_length=20)]

    @property
    def measures(self) -> dict[str, Measure]:
        """Every measure by name (a single measure is named after its kind)."""
        if isinstance(self.measure, CombinedMeasure):
            return self.measure.measures
        return {measure_kind(self.measure): self.measure}

    def level_thresholds(self, level: TierLevel) -> dict[str, Decimal]:
        """A level's threshold per measure name."""
        if isinstance(self.measure, CombinedMeasure):
            return dict(level.thresholds or {})
        assert level.threshold is not None
        return {measure_kind(self.measure): level.threshold}

    @model_validator(mode="after")
    def _ladder(self) -> Tiers:
        seen: set[str] = set()
        for index, level in enumerate(self.levels):
            if level.id in seen:
                raise LocatedValueError(("levels", index, "id"), f"tier id {level.id!r} is used "
                                        "twice; tier ids must be unique")
            seen.add(level.id)
            self._shape(index, level)
            if index:
                self._increases(index, level, self.levels[index - 1])
        return self

    def _where(self, index: int, name: str) -> tuple[str | int, ...]:
        if isinstance(self.measure, CombinedMeasure):
            return ("levels", index, "thresholds", name)
        return ("levels", index, "threshold")

    def _shape(self, index: int, level: TierLevel) -> None:
        """A threshold (one measure) or a threshold per measure, whole but for spend."""
        names = list(self.measures)
        wanted = "{" + ", ".join(f"{n}: ..." for n in names) + "}"
        if isinstance(self.measure, CombinedMeasure):
            if level.threshold is not None:
                raise LocatedValueError(
                    ("levels", index, "threshold"), "a ladder of several measures gives each "
                    f"level thresholds: {wanted}, not one threshold")
            if level.thresholds is None:
                raise LocatedValueError(("levels", index), f"tier {level.id!r} needs "
                                        f"thresholds: {wanted} (one per measure)")
            for name in level.thresholds:
                if name not in names:
                    raise LocatedValueError(
                        ("levels", index, "thresholds", name),
                        f"unknown measure {name!r} (measures: {', '.join(names)})")
            missing = [n for n in names if n not in level.thresholds]
            if missing:
                raise LocatedValueError(
                    ("levels", index, "thresholds"), f"tier {level.id!r} has no threshold for "
                    f"{', '.join(missing)}; with {self.measure.combine}: every level needs "
                    f"one per measure ({wanted})")
        elif level.thresholds is not None:
            raise LocatedValueError(
                ("levels", index, "thresholds"), "thresholds: is for a ladder of several "
                "measures (measure: {any: ...} or {all: ...}); give one threshold:")
        elif level.threshold is None:
            raise LocatedValueError(("levels", index), f"tier {level.id!r} needs a threshold")
        for name, value in self.level_thresholds(level).items():
            kind = measure_kind(self.measures[name])
            if kind != "spend" and value != int(value):
                shown = kind if kind == name else f"{kind} ({name})"
                raise LocatedValueError(self._where(index, name), f"a {shown} threshold is a "
                                        f"whole number, not {value}")

    def _increases(self, index: int, level: TierLevel, previous: TierLevel) -> None:
        """One measure: each threshold above the one below. Several: none lower than the
        level below's, and at least one higher (else the two levels are the same)."""
        values, before = self.level_thresholds(level), self.level_thresholds(previous)
        if not isinstance(self.measure, CombinedMeasure):
            [(name, value)] = values.items()
            if value <= before[name]:
                raise LocatedValueError(
                    ("levels", index, "threshold"),
                    f"thresholds must increase up the ladder: {level.id!r} needs "
                    f"{value}, not more than {previous.id!r} ({before[name]})")
            return
        for name in self.measures:
            if values[name] < before[name]:
                raise LocatedValueError(
                    self._where(index, name), f"thresholds must not decrease up the ladder: "
                    f"{level.id!r} needs {values[name]} {name}, less than {previous.id!r} "
                    f"({before[name]})")
        if all(values[n] == before[n] for n in self.measures):
            raise LocatedValueError(
                ("levels", index, "thresholds"), f"{level.id!r} needs the same as "
                f"{previous.id!r}: raise at least one of its thresholds (each may stay level, "
                "one must increase)")


class Trial(_Strict):
    """A first term for members new to the club: shorter than a term, free or discounted."""

    months: Annotated[int, Field(ge=1, le=120)]
    fee: Annotated[DecimalIn, Field(ge=0)] = Field(
        default=Decimal(0), description="what the trial costs; 0 (the default) is free")


class Household(_Strict):
    """Secondary members who share a membership: one fee, their own cards (member ids)."""

    max_members: Annotated[int, Field(ge=1, le=20)] = Field(
        description="how many secondary members one membership may have, besides the "
                    "primary who pays")


class ClubLevel(_Strict):
    """A paid level of a fee club: its yearly (per term) fee and its benefits."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    fee: Annotated[DecimalIn, Field(gt=0)]
    fee_sku: Label | None = Field(
        default=None, description="a till line with this SKU pays the fee (and never earns)")
    points_price: PositiveInt | None = Field(
        default=None, description="points that pay the fee instead of money; absent: cannot")
    multiplier: PositiveDecimal | None = None
    perks: list[Slug] = []
    trial: Trial | None = Field(
        default=None, exclude_if=unused,
        description="a first term for members new to the club (never for "
                                  "someone who was a member before), then the paid terms")
    intro_fee: Annotated[DecimalIn, Field(gt=0)] | None = Field(
        default=None, exclude_if=unused,
        description="the first paid term's fee for a member new to the club")
    household: Household | None = Field(
        default=None, exclude_if=unused,
        description="secondary members at this level (instead of the "
                                  "club's household)")

    @model_validator(mode="after")
    def _prices(self) -> ClubLevel:
        if self.intro_fee is not None and self.intro_fee > self.fee:
            raise LocatedValueError(("intro_fee",), f"the introductory fee {self.intro_fee} "
                                    f"is above the level's fee {self.fee}; an introductory "
                                    "price is a discount on the fee")
        if self.trial is not None and self.trial.fee > (self.intro_fee or self.fee):
            raise LocatedValueError(("trial", "fee"), f"the trial fee {self.trial.fee} is "
                                    f"above the first paid term's fee "
                                    f"{self.intro_fee or self.fee}; a trial is a discount")
        return self


class Waiver(_Strict):
    """The fee is waived when the member's eligible spend in the 12 months before the term
    reached this amount."""

    min_spend_last_year: Annotated[DecimalIn, Field(gt=0)]


class Club(_Strict):
    """A club: open to every purchaser, limited to an affinity group, or paid."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Literal["open", "affinity", "fee"]
    join: Literal["first_purchase", "explicit"] | None = Field(
        default=None, description="open clubs: enrol on the first purchase (the default) or "
                                  "only when asked; other clubs are joined explicitly")
    group: Slug | None = Field(default=None, description="affinity clubs: the group")
    multiplier: PositiveDecimal | None = None
    perks: list[Slug] = []
    levels: list[ClubLevel] = []
    term_months: Annotated[int, Field(ge=1, le=120)] = 12
    auto_renew: bool = True
    renewal_notice_days: Annotated[int, Field(ge=0, le=365)] = 30
    grace_days: Annotated[int, Field(ge=0, le=365)] = 0
    cooling_off_days: Annotated[int, Field(ge=0, le=365)] = 14
    waiver: Waiver | None = None
    household: Household | None = Field(
        default=None, exclude_if=unused,
        description="fee clubs: secondary members who share a membership")
    upgrade_price: Literal["prorated", "full_difference"] = Field(
        default="prorated", exclude_if=at_default("prorated"),
        description="an upgrade mid-term costs the difference in fees "
        "for the time left of the term (prorated) or the whole difference")

    @model_validator(mode="after")
    def _shape(self) -> Club:
        if self.kind == "affinity" and self.group is None:
            raise LocatedValueError(("group",), "an affinity club needs the group it is "
                                    "limited to")
        if self.kind != "affinity" and self.group is not None:
            raise LocatedValueError(("group",), f"only affinity clubs have a group, not a "
                                    f"{self.kind} club")
        if self.kind == "fee":
            if not self.levels:
                raise LocatedValueError(("levels",), "a fee club needs at least one level "
                                        "with its fee")
            if self.multiplier is not None or self.perks:
                raise LocatedValueError(("levels",), "a fee club's benefits belong to its "
                                        "levels (multiplier and perks per level)")
            seen: set[str] = set()
            for index, level in enumerate(self.levels):
                if level.id in seen:
                    raise LocatedValueError(("levels", index, "id"), f"level id {level.id!r} "
                                            "is used twice")
                seen.add(level.id)
                if index and level.fee <= self.levels[index - 1].fee:
                    raise LocatedValueError(("levels", index, "fee"), "levels go up in fee: "
                                            f"{level.id!r} must cost more than "
                                            f"{self.levels[index - 1].id!r}")
        elif self.levels:
            raise LocatedValueError(("levels",), f"only fee clubs have paid levels, not a "
                                    f"{self.kind} club")
        if self.household is not None and self.kind != "fee":
            raise LocatedValueError(("household",), f"only fee clubs have households (one "
                                    f"membership, paid once, shared); each member joins "
                                    f"an {self.kind} club on their own: remove household")
        if "upgrade_price" in self.model_fields_set and len(self.levels) < 2:
            raise LocatedValueError(("upgrade_price",), "upgrade_price needs a club with two "
                                    "or more paid levels to upgrade between; this one has "
                                    f"{len(self.levels)}: remove upgrade_price")
        for index, level in enumerate(self.levels):
            if level.trial is not None and level.trial.months > self.term_months:
                raise LocatedValueError(
                    ("levels", index, "trial", "months"),
                    f"a trial of {level.trial.months} months is longer than the club's "
                    f"term (term_months: {self.term_months}); shorten the trial or "
                    "lengthen term_months")
        if self.join == "first_purchase" and self.kind != "open":
            raise LocatedValueError(("join",), f"a {self.kind} club cannot be joined by a "
                                    "purchase alone; only open clubs enrol on first purchase")
        return self

    @model_validator(mode="after")
    def _periods_within_the_term(self) -> Club:
        # A notice, grace or cooling-off period longer than the term it belongs to: the
        # notice would come before the term starts, grace would outlast the next term.
        if self.kind != "fee" or not checking_new_file():
            return self
        term = shortest_months(self.term_months)
        for name in ("renewal_notice_days", "grace_days", "cooling_off_days"):
            days = getattr(self, name)
            if days > term:
                raise LocatedValueError(
                    (name,), f"{name} {days} is longer than the club's term of "
                             f"{self.term_months} month{'s' if self.term_months > 1 else ''} "
                             f"(at least {term} days); give at most {term}, or a longer "
                             "term_months")
        return self


class AgeRule(_Strict):
    """Eligibility from a date-of-birth attribute: at least and/or under an age."""

    attribute: Label = "date_of_birth"
    at_least: Annotated[int, Field(ge=0, le=150)] | None = None
    under: Annotated[int, Field(ge=1, le=150)] | None = None

    @model_validator(mode="after")
    def _bounded(self) -> AgeRule:
        if self.at_least is None and self.under is None:
            raise LocatedValueError((), "an age rule needs at_least, under, or both; "
                                    "otherwise everyone would be eligible")
        if self.at_least is not None and self.under is not None and self.under <= self.at_least:
            raise LocatedValueError(("under",), f"nobody is at least {self.at_least} and "
                                    f"under {self.under}")
        return self


class VerificationRule(_Strict):
    """Eligibility from an operator's verification, valid until a date."""

    max_months: Annotated[int, Field(ge=1, le=120)] = Field(
        default=12, description="the longest a verification may be valid for")
    reverify_days: Annotated[int, Field(ge=0, le=365)] = Field(
        default=30, description="re-verification falls due this many days before it lapses")


class Group(_Strict):
    """An affinity group (students, seniors, a partner's employees)."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]
    age: AgeRule | None = None
    verified: VerificationRule | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Group:
        if self.age is None and self.verified is None:
            raise LocatedValueError((), f"group {self.id!r} has no way to become eligible: "
                                    "give an age rule (age:) or a verification (verified:)")
        return self

