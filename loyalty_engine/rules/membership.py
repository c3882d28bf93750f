"""The program language's membership parts: perks, tiers, clubs and affinity groups."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from loyalty_engine.rules.values import DecimalIn, Label, LocatedValueError, PositiveDecimal, Slug


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Perk(_Strict):
    """A named benefit (free delivery, birthday gift) that tiers and clubs grant and that
    conditions can test with `perks:`."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)]


class TierLevel(_Strict):
    """One rung of the ladder: reached when the window's qualifying credit reaches threshold."""

    id: Slug
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    threshold: Annotated[DecimalIn, Field(ge=0)] = Field(
        description="spend in the program currency, or a number of visits or points")
    multiplier: PositiveDecimal | None = Field(
        default=None, description="multiplies points_per_spend rules while the tier is held")
    perks: list[Slug] = []


class RollingWindow(_Strict):
    """The last N months up to the day (a review on the 1st looks at the N months before)."""

    rolling_months: Annotated[int, Field(ge=1, le=120)]


class Tiers(_Strict):
    """A tier ladder: what qualifies, over which window, and how members go down."""

    measure: Literal["spend", "visits", "points"] = Field(
        description="eligible spend, purchases, or points earned (never the balance)")
    window: Literal["calendar_year", "anniversary"] | RollingWindow
    downgrade: Literal["qualified", "one_level", "hold_next_period"] = Field(
        description="at a review: drop to the qualified tier, at most one level, or keep a "
                    "tier through the period after the one it was reached in")
    refunds: Literal["immediate", "at_review"] = Field(
        default="at_review",
        description="whether a refund that takes credit below the tier downgrades at once")
    levels: Annotated[list[TierLevel], Field(min_length=1, max_length=20)]

    @model_validator(mode="after")
    def _ladder(self) -> Tiers:
        seen: set[str] = set()
        for index, level in enumerate(self.levels):
            if level.id in seen:
                raise LocatedValueError(("levels", index, "id"), f"tier id {level.id!r} is used "
                                        "twice; tier ids must be unique")
            seen.add(level.id)
            if self.measure != "spend" and level.threshold != int(level.threshold):
                raise LocatedValueError(("levels", index, "threshold"),
                                        f"a {self.measure} threshold is a whole number, not "
                                        f"{level.threshold}")
            if index and level.threshold <= self.levels[index - 1].threshold:
                previous = self.levels[index - 1]
                raise LocatedValueError(
                    ("levels", index, "threshold"),
                    f"thresholds must increase up the ladder: {level.id!r} needs "
                    f"{level.threshold}, not more than {previous.id!r} ({previous.threshold})")
        return self


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
        default=None, description="a first term for members new to the club (never for "
                                  "someone who was a member before), then the paid terms")
    intro_fee: Annotated[DecimalIn, Field(gt=0)] | None = Field(
        default=None, description="the first paid term's fee for a member new to the club")
    household: Household | None = Field(
        default=None, description="secondary members at this level (instead of the "
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
        default=None, description="fee clubs: secondary members who share a membership")
    upgrade_price: Literal["prorated", "full_difference"] = Field(
        default="prorated", description="an upgrade mid-term costs the difference in fees "
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

