"""The membership parts of the program language: perks, tiers, groups and clubs.

First, bad programs are refused where the mistake is (file:line:col), in plain words. Then
the pure engine: benefit multipliers, conditions on perks, clubs, groups and consents,
upgrades at once, fee SKUs, and planning (club joins, fee lines). No database.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest

from loyalty_engine.domain.decisions import (
    Evaluation,
    MemberView,
    ProgressDelta,
    Standing,
    TierChange,
)
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.engine.earning import Progress, evaluate
from loyalty_engine.engine.planning import (
    FeeLine,
    PlanRejection,
    ProgressBook,
    PurchasePlan,
    plan_purchase,
)
from loyalty_engine.rules import CompiledProgram, Problem, ProgramFileError, load_program_text
from loyalty_engine.rules.expressions import CONTEXT

from .builders import Line, purchase

# --- a program using every membership part --------------------------------------------------

HEAD = """\
program: shop
name: Corner Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude:
  skus: [DEPOSIT-BOTTLE]
"""

PERKS = """\
perks:
  - id: free-delivery
    name: Free delivery
  - id: lounge
    name: Lounge access
  - id: tasting
    name: Wine tasting
"""

TIERS = """\
tiers:
  measure: spend
  window: calendar_year
  downgrade: qualified
  refunds: at_review
  levels:
    - id: bronze
      threshold: 0
    - id: silver
      threshold: 100
      multiplier: 1.25
      perks: [free-delivery]
    - id: gold
      threshold: 500
      multiplier: 1.5
      perks: [free-delivery, lounge]
"""

GROUPS = """\
groups:
  - id: students
    name: Students
    verified: {max_months: 12, reverify_days: 30}
  - id: seniors
    name: Seniors
    age: {attribute: date_of_birth, at_least: 65}
"""

CLUBS = """\
clubs:
  - id: coffee-club
    name: Coffee club
    kind: open
    join: first_purchase
  - id: student-club
    name: Student club
    kind: affinity
    group: students
    multiplier: 1.1
  - id: wine-club
    name: Wine club
    kind: fee
    levels:
      - id: classic
        fee: 25
        fee_sku: WINE-CLASSIC
        multiplier: 2
      - id: grand
        fee: 60
        fee_sku: WINE-GRAND
        points_price: 6000
        multiplier: 3
        perks: [tasting]
    term_months: 12
    auto_renew: true
    renewal_notice_days: 30
    grace_days: 7
    cooling_off_days: 14
    waiver: {min_spend_last_year: 1000}
"""

PER_EURO = """\
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""

GOOD = HEAD + PERKS + TIERS + GROUPS + CLUBS + PER_EURO


def edit(text: str, old: str, new: str) -> str:
    """text with old (which must occur exactly once) replaced by new."""
    assert text.count(old) == 1, (old, text.count(old))
    return text.replace(old, new)


def with_rule(rule: str, text: str = GOOD) -> str:
    """text with one more rule (YAML, indented as a list item under rules:)."""
    return text + textwrap.indent(textwrap.dedent(rule), "  ")


def bonus(when: str, rule_id: str = "bonus", points: int = 5) -> str:
    return f"- id: {rule_id}\n  kind: fixed_bonus\n  points: {points}\n  when: {when}\n"


def only_problem(text: str) -> Problem:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "shop.yaml")
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


@dataclass(frozen=True)
class Bad:
    """A program that must be refused, at the column of `col` (or of `at`) on the
    occurrence-th line holding `at`, with exactly `message`."""

    text: str
    at: str
    message: str
    col: str | None = None
    occurrence: int = 1


def expected_position(case: Bad) -> tuple[int, int]:
    lines = case.text.splitlines()
    hits = [n for n, line in enumerate(lines, start=1) if case.at in line]
    assert len(hits) >= case.occurrence, f"{case.at!r} is on lines {hits}"
    line = lines[hits[case.occurrence - 1] - 1]
    needle = case.col or case.at
    assert needle in line, (needle, line)
    return hits[case.occurrence - 1], line.index(needle) + 1


NO_TIERS = HEAD + PERKS + GROUPS + CLUBS + PER_EURO
# Without the affinity club nothing names a group, so a mistake in groups: is the only
# problem (see test_a_mistake_in_one_section_is_reported_once for the cascade otherwise).
STUDENT_CLUB = """\
  - id: student-club
    name: Student club
    kind: affinity
    group: students
    multiplier: 1.1
"""
NO_AFFINITY = edit(GOOD, STUDENT_CLUB, "")
GYM = "  - id: gym\n    name: Gym\n    kind: fee\n"

BAD = {
    # --- tiers ------------------------------------------------------------------------------
    "thresholds that stay level": Bad(
        edit(GOOD, "threshold: 500", "threshold: 100"),
        at="threshold: 100", col="100", occurrence=2,  # gold's
        message="tiers.levels[2].threshold: thresholds must increase up the ladder: 'gold' "
                "needs 100, not more than 'silver' (100)",
    ),
    "thresholds that go down": Bad(
        edit(GOOD, "threshold: 500", "threshold: 50"),
        at="threshold: 50", col="50",
        message="tiers.levels[2].threshold: thresholds must increase up the ladder: 'gold' "
                "needs 50, not more than 'silver' (100)",
    ),
    "a fraction of a visit": Bad(
        edit(edit(GOOD, "measure: spend", "measure: visits"), "threshold: 100",
             "threshold: 2.5"),
        at="threshold: 2.5", col="2.5",
        message="tiers.levels[1].threshold: a visits threshold is a whole number, not 2.5",
    ),
    "a fraction of a point": Bad(
        edit(edit(GOOD, "measure: spend", "measure: points"), "threshold: 500",
             'threshold: "500.5"'),
        at='threshold: "500.5"', col='"500.5"',
        message="tiers.levels[2].threshold: a points threshold is a whole number, not 500.5",
    ),
    "spend threshold with a tenth of a cent": Bad(
        edit(GOOD, "threshold: 500", 'threshold: "500.001"'),
        at='threshold: "500.001"', col='"500.001"',
        message="tiers.levels[2].threshold: amount 500.001 has more decimals than EUR "
                "allows (2)",
    ),
    "tier id used twice": Bad(
        edit(GOOD, "    - id: gold\n", "    - id: silver\n"),
        at="- id: silver", col="silver", occurrence=2,
        message="tiers.levels[2].id: tier id 'silver' is used twice; tier ids must be unique",
    ),
    "unknown perk on a tier level": Bad(
        edit(GOOD, "perks: [free-delivery]\n", "perks: [free-shipping]\n"),
        at="free-shipping", col="free-shipping",
        message="tiers.levels[1].perks[0]: unknown perk 'free-shipping' (perks: "
                "free-delivery, lounge, tasting)",
    ),
    # --- perks named by clubs and conditions ------------------------------------------------
    "unknown perk on a club": Bad(
        edit(GOOD, "    multiplier: 1.1\n", "    multiplier: 1.1\n    perks: [lounge, discount]\n"),
        at="perks: [lounge, discount]", col="discount",
        message="clubs[1].perks[1]: unknown perk 'discount' (perks: free-delivery, lounge, "
                "tasting)",
    ),
    "unknown perk on a fee club level": Bad(
        edit(GOOD, "perks: [tasting]", "perks: [spa]"),
        at="perks: [spa]", col="spa",
        message="clubs[2].levels[1].perks[0]: unknown perk 'spa' (perks: free-delivery, "
                "lounge, tasting)",
    ),
    "unknown perk in a rule condition": Bad(
        with_rule(bonus("{perks: [vip]}")),
        at="perks: [vip]", col="vip",
        message="rules[1].when.perks[0]: unknown perk 'vip' (perks: free-delivery, lounge, "
                "tasting)",
    ),
    "unknown perk when the program has none": Bad(
        with_rule(bonus("{perks: [lounge]}"), HEAD + PER_EURO),
        at="perks: [lounge]", col="lounge",
        message="rules[1].when.perks[0]: unknown perk 'lounge' (perks: none are defined)",
    ),
    "unknown perk in a multiplier condition": Bad(
        GOOD + "    multipliers:\n      - id: vip-boost\n        when: {perks: [vip]}\n"
               "        factor: 2\n",
        at="perks: [vip]", col="vip",
        message="rules[0].multipliers[0].when.perks[0]: unknown perk 'vip' (perks: "
                "free-delivery, lounge, tasting)",
    ),
    # --- tiers, clubs and groups named by conditions ----------------------------------------
    "unknown tier in a condition": Bad(
        with_rule(bonus("{tiers: [gold, platinum]}")),
        at="tiers: [gold, platinum]", col="platinum",
        message="rules[1].when.tiers[1]: unknown tier 'platinum' (tiers: bronze, gold, silver)",
    ),
    "tier condition without a ladder": Bad(
        with_rule(bonus("{tiers: [gold]}"), NO_TIERS),
        at="tiers: [gold]", col="tiers",
        message="rules[1].when.tiers: the program defines no tiers (add a tiers: ladder, or "
                "drop this condition)",
    ),
    "unknown club in a condition": Bad(
        with_rule(bonus("{clubs: [tea-club]}")),
        at="clubs: [tea-club]", col="tea-club",
        message="rules[1].when.clubs[0]: unknown club 'tea-club' (clubs: coffee-club, "
                "student-club, wine-club)",
    ),
    "unknown group in a condition": Bad(
        with_rule(bonus("{groups: [veterans]}")),
        at="groups: [veterans]", col="veterans",
        message="rules[1].when.groups[0]: unknown group 'veterans' (groups: seniors, students)",
    ),
    # --- groups -----------------------------------------------------------------------------
    "group with neither age nor verification": Bad(
        edit(NO_AFFINITY, "clubs:\n", "  - id: staff\n    name: Staff\nclubs:\n"),
        at="- id: staff", col="id",
        message="groups[2]: group 'staff' has no way to become eligible: give an age rule "
                "(age:) or a verification (verified:)",
    ),
    "age rule with neither bound": Bad(
        edit(NO_AFFINITY, "age: {attribute: date_of_birth, at_least: 65}",
             "age: {attribute: date_of_birth}"),
        at="age: {attribute", col="age",
        message="groups[1].age: an age rule needs at_least, under, or both; otherwise "
                "everyone would be eligible",
    ),
    "age rule nobody meets": Bad(
        edit(NO_AFFINITY, "at_least: 65}", "at_least: 65, under: 18}"),
        at="under: 18", col="18",
        message="groups[1].age.under: nobody is at least 65 and under 18",
    ),
    "group id used twice": Bad(
        edit(NO_AFFINITY, "at_least: 65}\n", "at_least: 65}\n  - id: seniors\n"
                                               "    name: Elders\n    age: {at_least: 70}\n"),
        at="- id: seniors", col="seniors", occurrence=2,
        message="groups[2].id: group id 'seniors' is used twice; group ids must be unique "
                "within a program",
    ),
    # --- clubs ------------------------------------------------------------------------------
    "affinity club without its group": Bad(
        edit(GOOD, "    group: students\n", ""),
        at="- id: student-club", col="id",
        message="clubs[1].group: an affinity club needs the group it is limited to",
    ),
    "open club with a group": Bad(
        edit(GOOD, "    join: first_purchase\n", "    join: first_purchase\n"
                                                 "    group: students\n"),
        at="group: students", col="students", occurrence=1,
        message="clubs[0].group: only affinity clubs have a group, not a open club",
    ),
    "fee club without levels": Bad(
        GOOD.replace(PER_EURO, GYM + PER_EURO),
        at="- id: gym", col="id",
        message="clubs[3].levels: a fee club needs at least one level with its fee",
    ),
    "fee club with a club-wide multiplier": Bad(
        edit(GOOD, "    kind: fee\n", "    kind: fee\n    multiplier: 2\n"),
        at="levels:", col="levels", occurrence=2,  # the wine club's (the ladder's is first)
        message="clubs[2].levels: a fee club's benefits belong to its levels (multiplier and "
                "perks per level)",
    ),
    "open club with paid levels": Bad(
        edit(GOOD, "    join: first_purchase\n",
             "    join: first_purchase\n    levels:\n      - {id: basic, fee: 5}\n"),
        at="levels:", col="levels", occurrence=2,
        message="clubs[0].levels: only fee clubs have paid levels, not a open club",
    ),
    "fee levels that do not go up in fee": Bad(
        edit(GOOD, "fee: 60", "fee: 25"),
        at="fee: 25", col="25", occurrence=2,  # grand's
        message="clubs[2].levels[1].fee: levels go up in fee: 'grand' must cost more than "
                "'classic'",
    ),
    "fee with a tenth of a cent": Bad(
        edit(GOOD, "fee: 60", 'fee: "60.001"'),
        at='fee: "60.001"', col='"60.001"',
        message="clubs[2].levels[1].fee: amount 60.001 has more decimals than EUR allows (2)",
    ),
    "fee SKU shared by two levels": Bad(
        edit(GOOD, "fee_sku: WINE-GRAND", "fee_sku: WINE-CLASSIC"),
        at="fee_sku: WINE-CLASSIC", col="WINE-CLASSIC", occurrence=2,
        message="clubs[2].levels[1].fee_sku: fee SKU 'WINE-CLASSIC' pays two fees; give each "
                "level its own",
    ),
    "fee SKU shared by two clubs": Bad(
        GOOD.replace(PER_EURO, GYM + "    levels:\n      - id: monthly\n        fee: 30\n"
                               "        fee_sku: WINE-GRAND\n" + PER_EURO),
        at="fee_sku: WINE-GRAND", col="WINE-GRAND", occurrence=2,
        message="clubs[3].levels[0].fee_sku: fee SKU 'WINE-GRAND' pays two fees; give each "
                "level its own",
    ),
    "fee club joined on first purchase": Bad(
        edit(GOOD, "    kind: fee\n", "    kind: fee\n    join: first_purchase\n"),
        at="join: first_purchase", col="first_purchase", occurrence=2,
        message="clubs[2].join: a fee club cannot be joined by a purchase alone; only open "
                "clubs enrol on first purchase",
    ),
    "affinity club joined on first purchase": Bad(
        edit(GOOD, "    group: students\n", "    group: students\n    join: first_purchase\n"),
        at="join: first_purchase", col="first_purchase", occurrence=2,
        message="clubs[1].join: a affinity club cannot be joined by a purchase alone; only "
                "open clubs enrol on first purchase",
    ),
    "club id used twice": Bad(
        edit(GOOD, "  - id: student-club\n", "  - id: coffee-club\n"),
        at="- id: coffee-club", col="coffee-club", occurrence=2,
        message="clubs[1].id: club id 'coffee-club' is used twice; club ids must be unique "
                "within a program",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_membership_is_refused_at_the_mistake(name: str) -> None:
    case = BAD[name]
    problem = only_problem(case.text)
    assert problem.message == case.message
    assert (problem.line, problem.column) == expected_position(case), str(problem)
    assert str(problem) == f"shop.yaml:{problem.line}:{problem.column}: {problem.message}"


UNKNOWN_GROUP = edit(GOOD, "    group: students\n", "    group: pupils\n")


def test_affinity_club_of_an_unknown_group_is_refused_at_the_group() -> None:
    problem = only_problem(UNKNOWN_GROUP)
    assert (problem.line, problem.column) == expected_position(
        Bad(UNKNOWN_GROUP, at="group: pupils", col="pupils", message=""))
    assert problem.message.endswith(": unknown group 'pupils' (groups: seniors, students)")


def test_affinity_club_of_an_unknown_group_names_the_key() -> None:
    assert only_problem(UNKNOWN_GROUP).message == (
        "clubs[1].group: unknown group 'pupils' (groups: seniors, students)")


@pytest.mark.parametrize(
    "text",
    [
        # A perk id used twice: tiers and clubs then say their perks are unknown.
        edit(GOOD, "    name: Wine tasting\n",
             "    name: Wine tasting\n  - id: tasting\n    name: Again\n"),
        # An impossible age rule: the affinity club's group and a condition's group vanish.
        with_rule(bonus("{groups: [seniors]}"),
                  edit(GOOD, "at_least: 65}", "at_least: 65, under: 18}")),
        # Thresholds out of order: a tiers: condition hears that there are no tiers.
        with_rule(bonus("{tiers: [gold]}"), edit(GOOD, "threshold: 500", "threshold: 50")),
        # Fees out of order: a clubs: condition's club is unknown.
        with_rule(bonus("{clubs: [coffee-club]}"), edit(GOOD, "fee: 60", "fee: 25")),
    ],
    ids=["perks", "groups", "tiers", "clubs"],
)
def test_a_mistake_in_one_section_is_reported_once(text: str) -> None:
    problem = only_problem(text)  # fails: 2 or 3 problems, the others false
    assert "none are defined" not in problem.message


# --- good programs --------------------------------------------------------------------------

def test_a_program_using_every_membership_part_loads() -> None:
    compiled = load_program_text(GOOD, "shop.yaml").compiled
    assert compiled.perks == {"free-delivery": "Free delivery", "lounge": "Lounge access",
                              "tasting": "Wine tasting"}
    assert compiled.tiers is not None
    assert [(s.tier_id, s.threshold, s.perks) for s in compiled.tiers.steps] == [
        ("bronze", 0, frozenset()), ("silver", 10000, {"free-delivery"}),
        ("gold", 50000, {"free-delivery", "lounge"})]
    assert set(compiled.groups) == {"students", "seniors"}
    assert compiled.groups["seniors"].at_least == 65
    assert compiled.groups["students"].verified
    wine = compiled.clubs["wine-club"]
    assert [(lv.level_id, lv.fee_minor, lv.fee_sku, lv.points_price) for lv in wine.levels] == [
        ("classic", 2500, "WINE-CLASSIC", None), ("grand", 6000, "WINE-GRAND", 6000)]
    assert (wine.waiver_minor, wine.grace_days, wine.term_months) == (100000, 7, 12)
    assert compiled.fee_skus == {"WINE-CLASSIC": ("wine-club", "classic"),
                                 "WINE-GRAND": ("wine-club", "grand")}
    # Fee SKUs never earn: they join the excluded SKUs.
    assert compiled.excluded_skus == {"DEPOSIT-BOTTLE", "WINE-CLASSIC", "WINE-GRAND"}
    assert compiled.has_standing and compiled.stateful and compiled.tracks_spend


@pytest.mark.parametrize(
    ("join", "joins"),
    [("    join: first_purchase\n", True), ("", True), ("    join: explicit\n", False)],
    ids=["first_purchase", "default", "explicit"],
)
def test_open_club_join(join: str, joins: bool) -> None:
    text = edit(GOOD, "    join: first_purchase\n", join)
    assert load_program_text(text).compiled.clubs["coffee-club"].joins_on_purchase is joins


def test_fee_and_affinity_clubs_may_be_joined_explicitly() -> None:
    text = edit(GOOD, "    kind: fee\n", "    kind: fee\n    join: explicit\n")
    text = edit(text, "    group: students\n", "    group: students\n    join: explicit\n")
    clubs = load_program_text(text).compiled.clubs
    assert not clubs["wine-club"].joins_on_purchase
    assert not clubs["student-club"].joins_on_purchase


def test_whole_number_visit_thresholds_load() -> None:
    text = edit(edit(GOOD, "measure: spend", "measure: visits"), "threshold: 100",
                "threshold: 10.0")
    tiers = load_program_text(text).compiled.tiers
    assert tiers is not None and [s.threshold for s in tiers.steps] == [0, 10, 500]


def test_rolling_window_loads() -> None:
    text = edit(GOOD, "window: calendar_year", "window: {rolling_months: 3}")
    tiers = load_program_text(text).compiled.tiers
    assert tiers is not None and (tiers.window, tiers.months) == ("rolling", 3)


def test_cel_context_declares_perks_groups_and_consents() -> None:
    for name in ("member.perks", "member.groups", "member.consents", "member.tier",
                 "member.clubs"):
        assert name in CONTEXT, name


def test_conditions_on_membership_mark_the_program_as_reading_the_member() -> None:
    for when in ("{perks: [lounge]}", "{clubs: [coffee-club]}", "{groups: [seniors]}",
                 "{consents: [marketing]}", "{tiers: [gold]}"):
        compiled = load_program_text(with_rule(bonus(when))).compiled
        assert compiled.uses_member, when


# --- evaluation under the pure engine -------------------------------------------------------

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_transactions = itertools.count(1)


@lru_cache(maxsize=64)
def program(text: str) -> CompiledProgram:
    return load_program_text(text, "shop.yaml").compiled


def at(local: str) -> str:
    return datetime.fromisoformat(local).replace(tzinfo=AMSTERDAM).isoformat()


def item(price: str = "10.00", sku: str = "FLAT-WHITE", category: str = "coffee") -> Line:
    return (sku, category, "1", price)


def buy(*lines: Line, when: str = "2026-03-04 10:00", member: str | None = "M-42",
        instant: str | None = None) -> Purchase:
    return purchase(list(lines) or [item()], occurred_at=instant or at(when),
                    member_id=member, transaction_id=f"T-{next(_transactions)}")


def member(tier: str = "", *, clubs: dict[str, str] | None = None,
           verified: frozenset[str] = frozenset(), attributes: dict[str, object] | None = None,
           consents: frozenset[str] = frozenset(), manual: str = "",
           manual_until: datetime | None = None) -> MemberView:
    standing = Standing(tier=tier, has_tier_row=bool(tier), enrolled_on=date(2025, 1, 10),
                        clubs=dict(clubs or {}), known_clubs=frozenset(clubs or {}),
                        verified=verified, manual_tier=manual, manual_until=manual_until)
    return MemberView("M-42", dict(attributes or {}), consents, {"shop": standing})


def earned(evaluation: Evaluation) -> dict[str, int]:
    return {award.rule_id: award.points for award in evaluation.awards}


def run(compiled: CompiledProgram, purchases: list[Purchase], who: MemberView | None,
        progress: Progress | None = None) -> list[Evaluation]:
    progress = {} if progress is None else progress
    return [evaluate(compiled, p, who, progress) for p in purchases]


@pytest.mark.parametrize(
    ("who", "price", "points", "benefits"),
    [
        (member("bronze"), "10.00", 10, None),  # a tier without a multiplier
        (member("silver"), "10.00", 12, {"tier:silver": "1.25"}),  # 12.5 floored
        (member("gold"), "10.00", 15, {"tier:gold": "1.5"}),
        (member("gold"), "9.99", 14, {"tier:gold": "1.5"}),  # 999 x 1.5 = 1498.5 cents
        (member(), "10.00", 10, None),  # no tier yet
        (None, "10.00", 10, None),  # anonymous
        # Manual floor (purchase at 09:00 UTC): gold while it lasts, earned silver after.
        (member("silver", manual="gold", manual_until=datetime(2026, 3, 5, tzinfo=UTC)),
         "10.00", 15, {"tier:gold": "1.5"}),
        (member("silver", manual="gold", manual_until=datetime(2026, 3, 4, 9, tzinfo=UTC)),
         "10.00", 12, {"tier:silver": "1.25"}),
    ],
)
def test_tier_multiplier_on_points_per_spend(who: MemberView | None, price: str, points: int,
                                             benefits: dict[str, str] | None) -> None:
    (evaluation,) = run(program(GOOD), [buy(item(price))], who)
    (award,) = evaluation.awards
    assert (award.rule_id, award.points) == ("per-euro", points)
    # The multiplier as the program wrote it ("1.5", not "3/2").
    assert award.reason.get("benefits") == benefits
    assert "boosts" not in award.reason  # benefits are not rule multipliers


def test_club_multiplier_stacks_with_the_tier_multiplier() -> None:
    student = member("gold", clubs={"student-club": ""}, verified=frozenset({"students"}))
    (evaluation,) = run(program(GOOD), [buy(item("10.00"))], student)
    (award,) = evaluation.awards
    # 1000 cents x 1.5 x 1.1 = 1650 -> 16.5 points, floored.
    assert award.points == 16
    assert award.reason["benefits"] == {"club:student-club": "1.1", "tier:gold": "1.5"}
    # Without the tier: 10 x 1.1 = 11; with silver: 20 x 1.25 x 1.1 = 27.5 -> 27.
    students = frozenset({"students"})
    assert earned(run(program(GOOD), [buy()], member(
        "bronze", clubs={"student-club": ""}, verified=students))[0]) == {"per-euro": 11}
    assert earned(run(program(GOOD), [buy(item("20.00"))], member(
        "silver", clubs={"student-club": ""}, verified=students))[0]) == {"per-euro": 27}


def test_an_affinity_club_benefits_only_while_its_group_holds() -> None:
    """Its benefits end with the verification, at its end, whether or not the clubs job
    has recorded the lapse (the membership row may still say active)."""
    ends = datetime(2026, 3, 4, 9, tzinfo=UTC)  # the purchase is at 09:00 UTC that day
    for until, points in ((ends, 10), (ends + timedelta(seconds=1), 11)):
        student = member("bronze", clubs={"student-club": ""},
                         verified=frozenset({"students"}))
        student.standings["shop"].verified_until["students"] = until
        (evaluation,) = run(program(GOOD), [buy()], student)
        assert earned(evaluation) == {"per-euro": points}
    # Without the group at all, the club's row alone gives nothing.
    assert earned(run(program(GOOD), [buy()], member(
        "bronze", clubs={"student-club": ""}))[0]) == {"per-euro": 10}


def test_fee_club_level_multiplier_is_named_with_its_level() -> None:
    (evaluation,) = run(program(GOOD), [buy()], member("bronze", clubs={"wine-club": "grand"}))
    (award,) = evaluation.awards
    assert award.points == 30
    assert award.reason["benefits"] == {"club:wine-club/grand": "3"}


def test_benefits_multiply_item_scoped_boosts_too() -> None:
    text = GOOD + ("    multipliers:\n      - id: pastry-boost\n"
                   "        when: {categories: [pastry]}\n        factor: 2\n")
    (evaluation,) = run(program(text), [buy(item(), item("4.00", "CROISSANT", "pastry"))],
                        member("gold"))
    (award,) = evaluation.awards
    # coffee 10 x 1.5 = 15; croissant 4 x 2 x 1.5 = 12.
    assert award.points == 27
    assert award.reason["benefits"] == {"tier:gold": "1.5"}
    assert award.reason["boosts"] == {"pastry-boost": "2"}


# --- conditions on perks, clubs, groups and consents ------------------------------------------

@pytest.mark.parametrize(
    ("when", "who", "applies"),
    [
        # perks: one of them, from a tier or from an active club (level).
        ("{perks: [lounge]}", member("gold"), True),
        ("{perks: [lounge]}", member("silver"), False),
        ("{perks: [lounge, free-delivery]}", member("silver"), True),
        ("{perks: [lounge]}", member("bronze", clubs={"wine-club": "grand"}), False),
        ("{perks: [tasting]}", member("bronze", clubs={"wine-club": "grand"}), True),
        ("{perks: [tasting]}", member("bronze", clubs={"wine-club": "classic"}), False),
        ("{perks: [lounge]}", member("silver", manual="gold"), True),
        ("{perks: [lounge]}", None, False),
        # clubs: an active membership.
        ("{clubs: [coffee-club]}", member(clubs={"coffee-club": ""}), True),
        ("{clubs: [coffee-club]}", member(clubs={"wine-club": "classic"}), False),
        ("{clubs: [coffee-club, wine-club]}", member(clubs={"wine-club": "classic"}), True),
        ("{clubs: [coffee-club]}", member(), False),
        ("{clubs: [coffee-club]}", None, False),
        # groups by verification.
        ("{groups: [students]}", member(verified=frozenset({"students"})), True),
        ("{groups: [students]}", member(), False),
        # consents: every one listed.
        ("{consents: [marketing]}", member(consents=frozenset({"marketing"})), True),
        ("{consents: [marketing, sms]}", member(consents=frozenset({"marketing"})), False),
        ("{consents: [marketing, sms]}",
         member(consents=frozenset({"marketing", "sms", "email"})), True),
        ("{consents: [marketing]}", member(), False),
        ("{consents: [marketing]}", None, False),
        # tiers.
        ("{tiers: [gold]}", member("gold"), True),
        ("{tiers: [gold]}", member("silver"), False),
        # CEL sees the same standing.
        ("\"'lounge' in member.perks\"", member("gold"), True),
        ("\"'lounge' in member.perks\"", member("silver"), False),
        ("\"'students' in member.groups\"", member(verified=frozenset({"students"})), True),
        ("\"'marketing' in member.consents\"", member(consents=frozenset({"marketing"})), True),
        ("\"'marketing' in member.consents\"", member(), False),
        ("\"'coffee-club' in member.clubs\"", member(clubs={"coffee-club": ""}), True),
    ],
)
def test_membership_conditions(when: str, who: MemberView | None, applies: bool) -> None:
    (evaluation,) = run(program(with_rule(bonus(when))), [buy()], who)
    assert ("bonus" in earned(evaluation)) is applies


@pytest.mark.parametrize(
    ("born", "when", "senior"),
    [
        ("1961-03-14", "2026-03-14 10:00", True),  # the 65th birthday itself
        ("1961-03-14", "2026-03-13 23:59", False),  # the day before: still 64
        ("1961-03-15", "2026-03-14 10:00", False),
        ("1950-01-01", "2026-03-14 10:00", True),
        ("1961-02-28", "2026-03-14 10:00", True),
        # Born on 29 February: 65 on 1 March in a common year (28 Feb is still 64).
        ("1960-02-29", "2025-02-28 12:00", False),
        ("1960-02-29", "2025-03-01 12:00", True),
        ("not a date", "2026-03-14 10:00", False),
        (None, "2026-03-14 10:00", False),
    ],
)
def test_age_group_birthday_boundary(born: str | None, when: str, senior: bool) -> None:
    attributes = {} if born is None else {"date_of_birth": born}
    (evaluation,) = run(program(with_rule(bonus("{groups: [seniors]}"))), [buy(when=when)],
                        member(attributes=attributes))
    assert ("bonus" in earned(evaluation)) is senior


def test_age_is_judged_on_the_local_date() -> None:
    compiled = program(with_rule(bonus("{groups: [seniors]}")))
    senior_tomorrow = member(attributes={"date_of_birth": "1961-03-14"})
    # 23:30 UTC on 13 March is 00:30 on the 14th in Amsterdam: the birthday.
    (evaluation,) = run(compiled, [buy(instant="2026-03-13T23:30:00+00:00")], senior_tomorrow)
    assert "bonus" in earned(evaluation)
    (evaluation,) = run(compiled, [buy(instant="2026-03-13T22:30:00+00:00")], senior_tomorrow)
    assert "bonus" not in earned(evaluation)


def test_age_group_from_another_attribute_with_an_upper_bound() -> None:
    text = edit(GOOD, "age: {attribute: date_of_birth, at_least: 65}",
                "age: {attribute: born, under: 26}")
    compiled = program(with_rule(bonus("{groups: [seniors]}"), text))
    young = member(attributes={"born": "2000-03-15"})  # 25 until 15 March 2026
    assert "bonus" in earned(run(compiled, [buy(when="2026-03-14 10:00")], young)[0])
    assert "bonus" not in earned(run(compiled, [buy(when="2026-03-15 10:00")], young)[0])


# --- tier credit and upgrades at once ---------------------------------------------------------

def test_upgrade_at_once_when_crossing_a_threshold() -> None:
    compiled = program(GOOD)
    who = MemberView("M-42")
    progress: Progress = {}
    first, second, third, fourth, fifth = run(compiled, [
        buy(item("60.00"), when="2026-03-04 10:00"),
        buy(item("50.00"), when="2026-03-05 10:00"),  # 110 EUR: silver
        buy(item("40.00"), when="2026-03-06 10:00"),
        buy(item("400.00"), when="2026-03-07 10:00"),  # 550 EUR: gold
        buy(item("10.00"), when="2026-03-08 10:00"),
    ], who, progress)
    window = ["2026-01-01", "2027-01-01"]
    # First purchase: no tier before it, so no multiplier; then the first tier (bronze, 0).
    assert earned(first) == {"per-euro": 60}
    assert first.tier_change == TierChange(
        "shop", "", "bronze", "enrolment", None,
        {"credit": 6000, "measure": "spend", "window": window, "threshold": 0,
         "held_before": None}, base="bronze")
    # The crossing purchase itself earns at the tier held before it (bronze: x1).
    assert earned(second) == {"per-euro": 50}
    assert second.tier_change == TierChange(
        "shop", "bronze", "silver", "upgrade", None,
        {"credit": 11000, "measure": "spend", "window": window, "threshold": 10000,
         "held_before": None}, up=True)
    # The next one earns at silver: 40 x 1.25.
    assert earned(third) == {"per-euro": 50}
    assert third.tier_change is None
    # Crossing gold earns at silver: 400 x 1.25 = 500.
    assert earned(fourth) == {"per-euro": 500}
    assert fourth.tier_change is not None
    assert (fourth.tier_change.from_tier, fourth.tier_change.to_tier) == ("silver", "gold")
    assert earned(fifth) == {"per-euro": 15}
    standing = who.standings["shop"]
    assert (standing.tier, standing.has_tier_row, standing.enrolled_on) == (
        "gold", True, date(2026, 3, 4))
    # Credit is kept by local date.
    assert {k: v for k, v in progress.items() if k[0] == "*:spend"} == {
        ("*:spend", "2026-03-04"): 6000, ("*:spend", "2026-03-05"): 5000,
        ("*:spend", "2026-03-06"): 4000, ("*:spend", "2026-03-07"): 40000,
        ("*:spend", "2026-03-08"): 1000}


def test_credit_of_an_earlier_window_does_not_upgrade() -> None:
    who = member("bronze")
    progress: Progress = {}
    last_year, this_year = run(program(GOOD), [
        buy(item("80.00"), when="2025-12-31 18:00"),
        buy(item("30.00"), when="2026-01-02 10:00"),
    ], who, progress)
    assert last_year.tier_change is None and this_year.tier_change is None
    assert who.standings["shop"].tier == "bronze"


def test_a_held_tier_is_not_lowered_by_a_purchase() -> None:
    who = member("gold")
    (evaluation,) = run(program(GOOD), [buy()], who)
    assert evaluation.tier_change is None
    assert who.standings["shop"].tier == "gold"


def test_upgrade_under_hold_next_period_records_the_hold() -> None:
    text = edit(GOOD, "downgrade: qualified", "downgrade: hold_next_period")
    who = member("bronze")
    (evaluation,) = run(program(text), [buy(item("120.00"), when="2026-05-10 10:00")], who)
    assert evaluation.tier_change is not None
    assert (evaluation.tier_change.to_tier, evaluation.tier_change.held_until) == (
        "silver", date(2028, 1, 1))
    assert who.standings["shop"].held_until == date(2028, 1, 1)


def test_tier_credit_is_counted_on_the_local_date() -> None:
    # 23:30 UTC on 4 March is 00:30 on 5 March in Amsterdam.
    (evaluation,) = run(program(GOOD), [buy(instant="2026-03-04T23:30:00+00:00")],
                        member("bronze"))
    assert ProgressDelta("*:spend", "2026-03-05", 1000) in evaluation.progress


def test_visits_credit_counts_a_purchase_with_eligible_spend() -> None:
    text = edit(edit(edit(GOOD, "measure: spend", "measure: visits"), "threshold: 100",
                     "threshold: 2"), "threshold: 500", "threshold: 5")
    who = MemberView("M-42")
    progress: Progress = {}
    first, second, fee_only = run(program(text), [
        buy(when="2026-03-04 10:00"), buy(when="2026-03-04 12:00"),
        buy(item("25.00", "WINE-CLASSIC", "clubs"), when="2026-03-05 10:00"),
    ], who, progress)
    assert ProgressDelta("*:visits", "2026-03-04", 1) in first.progress
    assert first.tier_change is not None and first.tier_change.to_tier == "bronze"
    assert second.tier_change is not None and second.tier_change.to_tier == "silver"
    # A till line that only pays a club fee is not a visit.
    assert not any(d.counter == "*:visits" for d in fee_only.progress)
    assert progress[("*:visits", "2026-03-04")] == 2


def test_points_credit_counts_the_points_earned() -> None:
    text = edit(edit(GOOD, "measure: spend", "measure: points"), "threshold: 100",
                "threshold: 50")
    who = member("bronze")
    (evaluation,) = run(program(text), [buy(item("60.00"))], who)
    assert ProgressDelta("*:points", "2026-03-04", 60) in evaluation.progress
    assert evaluation.tier_change is not None and evaluation.tier_change.to_tier == "silver"


# --- fee SKUs ---------------------------------------------------------------------------------

def test_fee_sku_lines_never_earn_nor_count_as_tier_credit() -> None:
    (evaluation,) = run(program(GOOD), [buy(item("10.00"), item("25.00", "WINE-CLASSIC",
                                                                  "clubs"))], member("bronze"))
    (award,) = evaluation.awards
    assert (award.points, award.reason["eligible_spend_minor"],
            award.reason["excluded_items"]) == (10, 1000, 1)
    assert [d for d in evaluation.progress if d.counter == "*:spend"] == [
        ProgressDelta("*:spend", "2026-03-04", 1000)]


def test_a_fee_only_purchase_earns_nothing() -> None:
    (evaluation,) = run(program(GOOD), [buy(item("60.00", "WINE-GRAND", "clubs"))],
                        member("bronze"))
    assert evaluation.awards == []
    assert not any(d.counter == "*:spend" for d in evaluation.progress)


# --- planning: fee lines and open clubs --------------------------------------------------------

def catalog(compiled: CompiledProgram) -> ProgramCatalog:
    return ProgramCatalog([VersionInForce(1, compiled.program_id, 1, "hash",
                                          datetime(2020, 1, 1, tzinfo=UTC), compiled)])


def test_anonymous_purchase_with_a_fee_line_is_rejected() -> None:
    anonymous = buy(item(), item("25.00", "WINE-CLASSIC", "clubs"), member=None)
    plan = plan_purchase(catalog(program(GOOD)), 7, anonymous)
    assert isinstance(plan, PlanRejection)
    assert plan.ref == 7
    assert plan.reason == ("line 'WINE-CLASSIC' pays a club fee, which needs the member's id "
                           "on the purchase")


def test_anonymous_purchase_without_a_fee_line_is_planned_with_nothing() -> None:
    plan = plan_purchase(catalog(program(GOOD)), 1, buy(member=None))
    assert isinstance(plan, PurchasePlan)
    assert (plan.awards, plan.club_joins, plan.fee_lines, plan.tier_changes) == ((), (), (), ())


def test_member_purchase_lists_its_fee_lines() -> None:
    plan = plan_purchase(catalog(program(GOOD)), 1,
                         buy(item(), item("60.00", "WINE-GRAND", "clubs")))
    assert isinstance(plan, PurchasePlan)
    assert plan.fee_lines == (FeeLine("shop", "wine-club", "grand", "WINE-GRAND", 6000),)
    # Only the coffee is eligible spend: the 60.00 fee line earns nothing itself.
    (award,) = plan.awards
    reason = json.loads(award.reason_json)
    assert (award.rule_id, reason["eligible_spend_minor"], reason["excluded_items"]) == (
        "per-euro", 1000, 1)


def test_open_club_is_joined_on_the_first_purchase_only() -> None:
    compiled = program(GOOD)
    book = ProgressBook()
    first = plan_purchase(catalog(compiled), 1, buy(when="2026-03-04 10:00"), book)
    second = plan_purchase(catalog(compiled), 2, buy(when="2026-03-05 10:00"), book)
    assert isinstance(first, PurchasePlan) and isinstance(second, PurchasePlan)
    assert first.club_joins == (("shop", "coffee-club"),)  # only the open club
    assert second.club_joins == ()
    standing = book.members["M-42"].standings["shop"]
    assert standing.clubs == {"coffee-club": ""}
    assert standing.known_clubs == {"coffee-club"}
    assert first.enrol == ("shop",)
    assert [c.to_tier for c in first.tier_changes] == ["bronze"]


def test_a_member_who_left_an_open_club_is_not_signed_up_again() -> None:
    book = ProgressBook()
    book.members["M-42"] = MemberView("M-42", standings={"shop": Standing(
        known_clubs=frozenset({"coffee-club"}))})
    plan = plan_purchase(catalog(program(GOOD)), 1, buy(), book)
    assert isinstance(plan, PurchasePlan)
    assert plan.club_joins == ()
    assert book.members["M-42"].standings["shop"].clubs == {}


def test_an_explicit_open_club_is_not_joined_by_a_purchase() -> None:
    text = edit(GOOD, "    join: first_purchase\n", "    join: explicit\n")
    plan = plan_purchase(catalog(program(text)), 1, buy(), ProgressBook())
    assert isinstance(plan, PurchasePlan)
    assert plan.club_joins == ()


def test_a_rule_met_through_the_members_standing_names_it_in_its_reason() -> None:
    text = with_rule(bonus("{perks: [tasting], clubs: [wine-club]}", "club-bonus", 7))
    (evaluation,) = run(program(text), [buy()], member("bronze", clubs={"wine-club": "grand"}))
    (bonus_award,) = [a for a in evaluation.awards if a.rule_id == "club-bonus"]
    assert bonus_award.reason["because"] == {"perks": ["tasting"], "clubs": ["wine-club"]}
