"""The program language: bad programs are refused where the mistake is, in plain words;
good programs using every part of the language load."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import date

import pytest

from loyalty_engine.rules import Problem, ProgramFileError, load_program_text
from loyalty_engine.rules.compiled import Expiry, StampCard
from loyalty_engine.rules.expressions import stored_programs

REWARDS = """\
rewards:
  - id: free-coffee
    name: A free coffee
    kind: free_item
    category: coffee
"""


def program_text(rules: str, *, before_rewards: str = "", rewards: str = REWARDS) -> str:
    """A program with the given rules (a YAML list, any indentation) and sections."""
    head = textwrap.dedent("""\
        program: corner-cafe
        name: Corner Cafe
        currency: EUR
        timezone: Europe/Amsterdam
        enrolment: open
        exclude:
          categories: [tobacco, gift-cards]
          skus: [DEPOSIT-BOTTLE]
        """)
    body = textwrap.indent(textwrap.dedent(rules), "  ")
    return head + textwrap.dedent(before_rewards) + rewards + "rules:\n" + body


def only_problem(text: str) -> Problem:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "cafe.yaml")
    problems = info.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def position(text: str, line_needle: str, column_needle: str) -> tuple[int, int]:
    """(line, column), 1-based, of column_needle on the only line containing line_needle."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if line_needle in line]
    assert len(hits) == 1, f"{line_needle!r} is on lines {hits}"
    line = text.splitlines()[hits[0] - 1]
    assert column_needle in line, (column_needle, line)
    return hits[0], line.index(column_needle) + 1


@dataclass(frozen=True)
class Bad:
    """A program that must be refused: where (the occurrence-th line holding `at`, at the
    column of `col`, or of `at` when not given) and what is said (exactly, or starting with
    `prefix` and containing every one of `contains`)."""

    text: str
    at: str
    message: str | None = None
    col: str | None = None
    prefix: str | None = None
    contains: tuple[str, ...] = ()
    occurrence: int = 1


def fixed_bonus(extra: str, rule_id: str = "bonus") -> str:
    return f"- id: {rule_id}\n  kind: fixed_bonus\n  points: 50\n" + extra


def stamp_card(extra: str = "", reward: str = "free-coffee") -> str:
    return ("- id: coffee-card\n  kind: stamp_card\n  stamp_per: item\n  card_size: 9\n"
            f"  reward: {reward}\n" + extra)


PER_EURO = "- id: per-euro\n  kind: points_per_spend\n  points_per_unit: 1\n"

BAD = {
    # --- CEL conditions: checked when the program loads, not when a purchase arrives -------
    "cel syntax error": Bad(
        program_text(fixed_bonus('  when: "purchase.total >"\n')),
        at='when: "purchase.total >"', col='"purchase',
        prefix="rules[0].when.expression: CEL: at 1:17: Syntax error",
    ),
    "cel unbalanced parenthesis": Bad(
        program_text(fixed_bonus('  when: "(purchase.total > 5"\n')),
        at='when: "(purchase', col='"(purchase',
        prefix="rules[0].when.expression: CEL: ", contains=("Syntax error",),
    ),
    "cel unknown field": Bad(
        program_text(fixed_bonus('  when: "purchase.totl > 1000"\n')),
        at="purchase.totl", col='"purchase',
        message="rules[0].when.expression: CEL: at 1:9: undeclared reference to "
                "'purchase.totl'",
    ),
    "cel unknown variable": Bad(
        program_text(fixed_bonus("  when: {expression: \"customer.age > 18\"}\n")),
        at="customer.age", col='"customer',
        message="rules[0].when.expression: CEL: at 1:9: undeclared reference to "
                "'customer.age'",
    ),
    "cel unknown field in a multiplier": Bad(
        program_text(PER_EURO + "  multipliers:\n    - id: big-basket\n"
                     '      when: "purchase.totl > 1000"\n      factor: 2\n'),
        at="purchase.totl", col='"purchase',
        message="rules[0].multipliers[0].when.expression: CEL: at 1:9: undeclared "
                "reference to 'purchase.totl'",
    ),
    "cel number, not true or false": Bad(
        program_text(fixed_bonus('  when: "purchase.total + 1"\n')),
        at="purchase.total + 1", col='"purchase',
        message="rules[0].when.expression: the expression must be true or false, "
                "but it gives a value of type int",
    ),
    "cel text, not true or false": Bad(
        program_text(fixed_bonus("  when: {expression: \"purchase.store\"}\n")),
        at='"purchase.store"', col='"purchase',
        message="rules[0].when.expression: the expression must be true or false, "
                "but it gives a value of type string",
    ),
    # --- references and identity -----------------------------------------------------------
    "stamp card with an unknown reward": Bad(
        program_text(stamp_card(reward="free-tea")),
        at="reward: free-tea", col="free-tea",
        message="rules[0].reward: unknown reward 'free-tea' (rewards: free-coffee)",
    ),
    "stamp card when no rewards exist": Bad(
        program_text(stamp_card(reward="free-tea"), rewards=""),
        at="reward: free-tea", col="free-tea",
        message="rules[0].reward: unknown reward 'free-tea' (rewards: none are defined)",
    ),
    "rule id used twice": Bad(
        program_text(PER_EURO + fixed_bonus("", rule_id="per-euro")),
        at="- id: per-euro", col="per-euro", occurrence=2,  # the second one
        message="rules[1].id: rule id 'per-euro' is used twice; rule ids must be unique "
                "within a program",
    ),
    "reward id used twice": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: free-coffee\n"
                     "    name: Another free coffee\n    kind: free_item\n    sku: FLAT-WHITE\n"),
        at="- id: free-coffee", col="free-coffee", occurrence=2,
        message="rewards[1].id: reward id 'free-coffee' is used twice; reward ids must be "
                "unique within a program",
    ),
    # --- stacking ------------------------------------------------------------------------------
    "group with one rule": Bad(
        program_text(PER_EURO + fixed_bonus("  group: welcome\n")),
        at="group: welcome", col="welcome",
        message="rules[1].group: group 'welcome' has only this rule; best-of needs two or "
                "more rules to compare",
    ),
    "stamp card in a group": Bad(
        program_text(fixed_bonus("  group: best\n") + stamp_card("  group: best\n")),
        at="group: best", col="best", occurrence=2,  # the stamp card's
        message="rules[1].group: a stamp_card rule cannot stack in a best-of group (groups "
                "compare points; it does not award points at purchase)",
    ),
    "periodic rebate in a group": Bad(
        program_text(fixed_bonus("  group: best\n") + textwrap.dedent("""\
            - id: rebate
              kind: periodic_rebate
              percent: 1
              period: year
              group: best-rebate
            """)),
        at="group: best-rebate", col="best-rebate",
        message="rules[1].group: a periodic_rebate rule cannot stack in a best-of group "
                "(groups compare points; it does not award points at purchase)",
    ),
    # --- caps that can never be met ------------------------------------------------------------
    "per_week above seven days of per_day": Bad(
        program_text(PER_EURO + "  caps: {per_day: 10, per_week: 71}\n"),
        at="per_week: 71", col="71",
        message="rules[0].caps.per_week: per_week 71 can never be met: per_day 10 allows "
                "at most 70 in a week",
    ),
    "per_month above 31 days of per_day": Bad(
        program_text(PER_EURO + "  caps:\n    per_day: 10\n    per_month: 311\n"),
        at="per_month: 311", col="311",
        message="rules[0].caps.per_month: per_month 311 can never be met: per_day 10 "
                "allows at most 310 in a month",
    ),
    "program-wide per_year above 366 days of per_day": Bad(
        program_text(PER_EURO, before_rewards="caps:\n  per_day: 1\n  per_year: 367\n"),
        at="per_year: 367", col="367",
        message="caps.per_year: per_year 367 can never be met: per_day 1 allows at most "
                "366 in a year",
    ),
    "fixed bonus above its own cap": Bad(
        program_text(fixed_bonus("  caps:\n    per_month: 40\n")),
        at="caps:", col="caps",
        message="rules[0].caps: a cap of 40 is below the rule's 50 points, so it could "
                "never be awarded in full",
    ),
    "nth visit bonus above its own cap": Bad(
        program_text(textwrap.dedent("""\
            - id: fifth-visit
              kind: nth_visit
              visit: 5
              period: month
              points: 100
              caps: {per_week: 500, per_day: 99}
            """)),
        at="caps: {per_week", col="caps",
        message="rules[0].caps: a cap of 99 is below the rule's 100 points, so it could "
                "never be awarded in full",
    ),
    # --- dates ---------------------------------------------------------------------------------
    "window that ends before it starts": Bad(
        program_text(fixed_bonus("  when:\n    starts: 2026-03-10\n    ends: 2026-03-01\n")),
        at="ends: 2026-03-01", col="2026-03-01",
        message="rules[0].when.ends: ends (2026-03-01) is before starts (2026-03-10); the "
                "rule could never apply",
    ),
    "multiplier window that ends before it starts": Bad(
        program_text(PER_EURO + "  multipliers:\n    - id: spring\n"
                     "      when: {starts: 2026-04-30, ends: 2026-04-01}\n      factor: 2\n"),
        at="ends: 2026-04-01", col="2026-04-01",
        message="rules[0].multipliers[0].when.ends: ends (2026-04-01) is before starts "
                "(2026-04-30); the rule could never apply",
    ),
    "unknown weekday": Bad(
        program_text(fixed_bonus("  when: {days: [monday, funday]}\n")),
        at="funday", col="funday",
        prefix="rules[0].when.days[1]: Input should be 'monday', 'tuesday', 'wednesday', "
               "'thursday', 'friday', 'saturday' or 'sunday'",
    ),
    # --- conditions on excluded items ----------------------------------------------------------
    "condition on excluded categories only": Bad(
        program_text(fixed_bonus("  when: {categories: [tobacco, gift-cards]}\n")),
        at="categories: [tobacco, gift-cards]}", col="categories",
        message="rules[0].when.categories: every category listed is excluded from the "
                "program, so this could never be met",
    ),
    "condition on excluded skus only": Bad(
        program_text(fixed_bonus("  when:\n    skus: [DEPOSIT-BOTTLE]\n")),
        at="skus: [DEPOSIT-BOTTLE]", col="skus", occurrence=2,  # the rule's, not exclude's
        message="rules[0].when.skus: every SKU listed is excluded from the program, so this "
                "could never be met",
    ),
    "multiplier on excluded categories only": Bad(
        program_text(PER_EURO + "  multipliers:\n    - id: smokes\n"
                     "      when: {categories: [tobacco]}\n      factor: 2\n"),
        at="categories: [tobacco]}", col="categories",
        message="rules[0].multipliers[0].when.categories: every category listed is excluded "
                "from the program, so this could never be met",
    ),
    "first purchase in an excluded category": Bad(
        program_text("- id: first-smoke\n  kind: first_in_category\n  category: tobacco\n"
                     "  points: 20\n"),
        at="category: tobacco", col="tobacco",
        message="rules[0].category: category 'tobacco' is excluded from the program, so this "
                "rule could never be met",
    ),
    # --- expiry --------------------------------------------------------------------------------
    "points expiry two ways at once": Bad(
        program_text(PER_EURO,
                     before_rewards="points:\n  expiry:\n    after_days: 30\n"
                                    "    after_months: 2\n"),
        at="after_months: 2", col="2",
        message="points.expiry.after_months: give one of after_days, after_months and end_of "
                "(or 'never'), not after_days and after_months",
    ),
    "stamp expiry two ways at once": Bad(
        program_text(stamp_card("  stamps_expire: {after_months: 6, end_of: year}\n")),
        at="stamps_expire:", col="year",
        message="rules[0].stamps_expire.end_of: give one of after_days, after_months and "
                "end_of (or 'never'), not after_months and end_of",
    ),
    # --- money ---------------------------------------------------------------------------------
    "threshold with a tenth of a cent": Bad(
        program_text(textwrap.dedent("""\
            - id: spend-200
              kind: spend_threshold
              threshold: "200.001"
              period: quarter
              points: 500
            """)),
        at='threshold: "200.001"', col='"200.001"',
        message="rules[0].threshold: amount 200.001 has more decimals than EUR allows (2)",
    ),
    "rebate cap with a tenth of a cent": Bad(
        program_text("- id: rebate\n  kind: periodic_rebate\n  percent: 1\n  period: year\n"
                     "  cap: 250.005\n"),
        at="cap: 250.005", col="250.005",
        message="rules[0].cap: amount 250.005 has more decimals than EUR allows (2)",
    ),
    "condition min_spend with a tenth of a cent": Bad(
        program_text(fixed_bonus('  when: {min_spend: "9.999"}\n')),
        at="min_spend", col='"9.999"',
        message="rules[0].when.min_spend: amount 9.999 has more decimals than EUR allows (2)",
    ),
    "reward amount with a tenth of a cent": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: five-off\n    name: Five off\n"
                     "    kind: fixed_amount\n    amount: \"5.001\"\n"),
        at='amount: "5.001"', col='"5.001"',
        message="rewards[1].amount: amount 5.001 has more decimals than EUR allows (2)",
    ),
    # --- rewards -------------------------------------------------------------------------------
    "fixed amount reward without an amount": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: five-off\n    name: Five off\n"
                     "    kind: fixed_amount\n    valid_days: 30\n"),
        at="- id: five-off", col="id",
        message="rewards[1]: a fixed_amount reward needs 'amount'",
    ),
    "percentage reward without a percent": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: tenth-off\n    name: Ten percent\n"
                     "    kind: percentage\n"),
        at="- id: tenth-off", col="id",
        message="rewards[1]: a percentage reward needs 'percent'",
    ),
    "free item reward without a sku or category": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: free-thing\n    name: Free thing\n"
                     "    kind: free_item\n"),
        at="- id: free-thing", col="id",
        message="rewards[1]: a free_item reward needs 'sku' or 'category'",
    ),
}


def expected_position(case: Bad) -> tuple[int, int]:
    lines = case.text.splitlines()
    hits = [n for n, line in enumerate(lines, start=1) if case.at in line]
    assert len(hits) == case.occurrence, f"{case.at!r} is on lines {hits}"
    line = lines[hits[-1] - 1]
    needle = case.col or case.at
    assert needle in line, (needle, line)
    return hits[-1], line.index(needle) + 1


def assert_refused_as(case: Bad) -> Problem:
    """The file's only problem is the case's: at its position, with its message (whole, its
    beginning, or fragments of it)."""
    problem = only_problem(case.text)
    assert (problem.line, problem.column) == expected_position(case), str(problem)
    if case.message is not None:
        assert problem.message == case.message
    if case.prefix is not None:
        assert problem.message.startswith(case.prefix), problem.message
    for fragment in case.contains:
        assert fragment in problem.message, problem.message
    return problem


@pytest.mark.parametrize("name", list(BAD))
def test_bad_program_is_refused_at_the_mistake(name: str) -> None:
    case = BAD[name]
    problem = assert_refused_as(case)
    assert problem.path == "cafe.yaml"
    assert str(problem) == f"cafe.yaml:{problem.line}:{problem.column}: {problem.message}"


@pytest.mark.parametrize(
    "caps",
    [
        "{per_day: 10, per_week: 70}",
        "{per_day: 10, per_month: 310}",
        "{per_day: 10, per_year: 3660}",
        "{per_month: 100, per_year: 1200}",
    ],
)
def test_caps_that_can_just_be_met_load(caps: str) -> None:
    compiled = load_program_text(program_text(PER_EURO + f"  caps: {caps}\n")).compiled
    assert len(compiled.rules[0].caps) == 2


@pytest.mark.parametrize(
    "caps",
    ["{per_week: 10, per_month: 60}", "{per_week: 10, per_month: 51}",
     "{per_week: 10, per_year: 540}"],
)
def test_caps_reachable_through_partial_iso_weeks_load(caps: str) -> None:
    # A weekly cap restarts every ISO week, and March 2026 touches six of them (1 March
    # is a Sunday): ten a week is sixty that month, so a monthly cap of 60 can be met.
    # Likewise 2040 touches 54 ISO weeks.
    load_program_text(program_text(PER_EURO + f"  caps: {caps}\n"))


# --- unknown rule kinds ------------------------------------------------------------------------

UNKNOWN_KIND = program_text("- id: birthday\n  kind: birthday_bonus\n  points: 5\n")
ALL_KINDS = ("points_per_spend", "fixed_bonus", "nth_visit", "spend_threshold", "stamp_card",
             "first_in_category", "periodic_rebate")


def test_unknown_rule_kind_is_refused_naming_it_and_the_kinds_there_are() -> None:
    problem = only_problem(UNKNOWN_KIND)
    assert problem.message.startswith("rules[0]"), problem.message
    assert "'birthday_bonus'" in problem.message
    assert all(f"'{kind}'" in problem.message for kind in ALL_KINDS), problem.message
    # Within the rule, at the latest on its kind line.
    assert position(UNKNOWN_KIND, "- id: birthday", "id")[0] <= problem.line
    assert problem.line <= position(UNKNOWN_KIND, "kind: birthday_bonus", "kind")[0]


def test_unknown_rule_kind_points_at_the_kind() -> None:
    problem = only_problem(UNKNOWN_KIND)
    assert (problem.line, problem.column) == position(
        UNKNOWN_KIND, "kind: birthday_bonus", "birthday_bonus")


# --- good programs -----------------------------------------------------------------------------

EVERY_KIND = program_text("""\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      multipliers:
        - id: double-tuesday
          when: {days: [tuesday]}
          factor: 2
    - id: early-bird
      kind: fixed_bonus
      points: 10
      when: "local.hour < 9 && purchase.total_minor >= 500"
      group: morning
    - id: morning-coffee
      kind: fixed_bonus
      points: 15
      when: {categories: [coffee], days: [monday, tuesday]}
      group: morning
    - id: fifth-visit
      kind: nth_visit
      visit: 5
      period: month
      points: 100
      caps: {per_month: 100}
    - id: spend-200
      kind: spend_threshold
      threshold: "200.00"
      period: quarter
      points: 500
    - id: coffee-card
      kind: stamp_card
      when: {categories: [coffee]}
      stamp_per: item
      card_size: 9
      reward: free-coffee
      stamps_expire: {after_months: 6}
    - id: first-bakery
      kind: first_in_category
      category: bakery
      points: 30
      priority: 5
    - id: rebate
      kind: periodic_rebate
      percent: "1.5"
      period: year
      cap: "250.00"
    """, before_rewards="points:\n  expiry: {end_of: year}\ncaps: {per_day: 1000}\n")


def test_a_program_using_every_rule_kind_loads() -> None:
    compiled = load_program_text(EVERY_KIND, "cafe.yaml").compiled
    assert {rule.kind for rule in compiled.rules} == set(ALL_KINDS)
    # Higher priority first, then file order.
    assert [rule.rule_id for rule in compiled.rules] == [
        "first-bakery", "per-euro", "early-bird", "morning-coffee", "fifth-visit", "spend-200",
        "coffee-card", "rebate"]
    assert compiled.caps == (("day", 1000),)
    assert compiled.expiry == Expiry("end_of_year")
    card = compiled.rule("coffee-card")
    assert isinstance(card, StampCard)
    assert (card.card_size, card.reward_id, card.stamps_expire) == (
        9, "free-coffee", Expiry("months", 6))
    threshold = compiled.rule("spend-200")
    assert threshold is not None and threshold.threshold_minor == 20000  # type: ignore[union-attr]
    rebate = compiled.rule("rebate")
    assert rebate is not None and rebate.cap_minor == 25000  # type: ignore[union-attr]
    assert {r.rule_id for r in compiled.rules if r.group == "morning"} == {
        "early-bird", "morning-coffee"}
    assert compiled.stateful and not compiled.uses_member


def test_when_shorthand_is_a_cel_expression() -> None:
    text = program_text(fixed_bonus('  when: "purchase.total_minor > 1000"\n'))
    loaded = load_program_text(text, "cafe.yaml")
    assert loaded.definition.rules[0].when is not None
    assert loaded.definition.rules[0].when.expression == "purchase.total_minor > 1000"
    compiled_when = loaded.compiled.rules[0].when
    assert compiled_when is not None
    assert compiled_when.expression_source == "purchase.total_minor > 1000"
    # The same rule written out in full means the same thing.
    longhand = program_text(fixed_bonus('  when: {expression: "purchase.total_minor > 1000"}\n'))
    assert load_program_text(longhand).content_hash == loaded.content_hash


def test_expression_reading_the_member_marks_the_program_as_needing_the_member() -> None:
    text = program_text(fixed_bonus("  when: \"member.segment == 'student'\"\n"))
    assert load_program_text(text).compiled.uses_member


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("points:\n  expiry: never\n", Expiry("never")),
        ("", Expiry("never")),  # the default
        ("points:\n  expiry: {after_days: 90}\n", Expiry("days", 90)),
        ("points:\n  expiry: {after_months: 12}\n", Expiry("months", 12)),
        ("points:\n  expiry: {end_of: month}\n", Expiry("end_of_month")),
    ],
)
def test_points_expiry_policies(section: str, expected: Expiry) -> None:
    compiled = load_program_text(program_text(PER_EURO, before_rewards=section)).compiled
    assert compiled.expiry == expected


def test_stamps_expire_never() -> None:
    text = program_text(stamp_card("  stamps_expire: never\n"))
    card = load_program_text(text).compiled.rules[0]
    assert isinstance(card, StampCard)
    assert card.stamps_expire == Expiry("never")
    assert card.stamps_expire.first_lapsed_day(date(2026, 3, 3)) is None


@pytest.mark.parametrize(
    ("store", "covered"),
    [
        ("AMS-01", True),
        ("AMS-CENTRAAL", True),
        ("UTR-01", True),
        ("UTR-02", False),  # an exact id, not a prefix
        ("UTR-010", False),
        ("RTM-01", False),
        ("ams-01", False),  # store ids are case-sensitive
        ("XAMS-01", False),  # a prefix matches at the start only
    ],
)
def test_program_stores_with_prefixes(store: str, covered: bool) -> None:
    text = program_text(PER_EURO, before_rewards='stores: ["AMS-*", UTR-01]\n')
    assert load_program_text(text).compiled.covers(store) is covered


def test_a_program_without_stores_covers_every_store() -> None:
    compiled = load_program_text(program_text(PER_EURO)).compiled
    assert compiled.covers("AMS-01") and compiled.covers("anything at all")


def test_a_condition_naming_some_excluded_categories_still_loads() -> None:
    text = program_text(fixed_bonus("  when: {categories: [tobacco, coffee]}\n"))
    when = load_program_text(text).compiled.rules[0].when
    assert when is not None and when.categories == frozenset({"tobacco", "coffee"})


@pytest.mark.parametrize(
    "rules",
    [
        fixed_bonus("  when: {starts: 2026-03-01, ends: 2026-03-31}\n"),
        fixed_bonus("  when:\n    starts: 2026-03-01\n"),
        PER_EURO + "  multipliers:\n    - id: spring\n"
                   "      when: {starts: 2026-04-01, ends: 2026-04-30}\n      factor: 2\n",
    ],
    ids=["rule window", "open-ended start", "multiplier window"],
)
def test_a_program_with_a_date_window_loads(rules: str) -> None:
    loaded = load_program_text(program_text(rules), "cafe.yaml")
    assert len(loaded.content_hash) == 64
    conditions = [r.when for r in loaded.compiled.rules] + [
        m[1] for r in loaded.compiled.rules for m in getattr(r, "multipliers", ())]
    assert any(c is not None and c.starts is not None for c in conditions)


def test_moving_a_date_window_changes_the_content_hash() -> None:
    march = program_text(fixed_bonus("  when: {starts: 2026-03-01, ends: 2026-03-31}\n"))
    april = march.replace("ends: 2026-03-31", "ends: 2026-04-30")
    assert load_program_text(march).content_hash != load_program_text(april).content_hash


# --- what an expression may cost, and its regular expressions ----------------------------

TEN = "[0,1,2,3,4,5,6,7,8,9]"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("purchase.categories.exists(a, purchase.categories.exists(b, a != b))",
         "1,001,000 steps"),
        (f"{TEN}.all(a, {TEN}.all(b, {TEN}.all(c, {TEN}.all(d, a + b + c + d >= 0))))",
         "11,110 steps"),
        ("purchase.items.filter(i, i.amount_minor > 0).exists(i, purchase.skus.all(s, s != ''))",
         "1,002,000 steps"),
        ("(purchase.skus + purchase.categories).all(x, member.consents.all(c, c != x))",
         "102,000 steps"),
    ],
    ids=["nested over lines", "four nested tens", "filtered then nested", "concatenated"],
)
def test_an_expression_that_can_exceed_the_iteration_budget_is_refused(
    expression: str, fragment: str,
) -> None:
    problem = only_problem(program_text(f"""\
        - id: picky
          kind: fixed_bonus
          points: 5
          when: "{expression}"
        """))
    assert problem.message.startswith("rules[0].when.expression: CEL: its comprehensions")
    assert fragment in problem.message and "9,999" in problem.message
    assert (problem.line, problem.column) == (18, 11)


@pytest.mark.parametrize(
    "expression",
    [
        "purchase.categories.all(c, c != 'tobacco')",
        "purchase.items.all(i, i.exists(k, k != ''))",  # 1,000 x (1 + 4)
        f"{TEN}.all(a, {TEN}.all(b, {TEN}.all(c, a + b + c >= 0)))",  # 1,110
        "purchase.skus.all(s, s != '') && purchase.categories.exists(c, c == 'coffee')",
        "purchase.categories.map(c, c + '!').filter(c, c != '').size() > 2",
    ],
)
def test_expressions_within_the_budget_load(expression: str) -> None:
    load_program_text(program_text(f"""\
        - id: fine
          kind: fixed_bonus
          points: 5
          when: "{expression}"
        """))


@pytest.mark.parametrize(
    ("expression", "column", "fragment"),
    [
        ("member.segment.matches('(')", 24, "missing ): ("),
        ("purchase.skus.exists(s, s.matches(r'(a)\\\\1'))", 35, "invalid escape sequence: \\1"),
        ("member.segment.matches('a{1000}{1000}')", 24, "bad repetition operator"),
    ],
    ids=["unbalanced", "back-reference", "repetition"],
)
def test_a_regular_expression_that_cannot_compile_is_refused_where_it_is(
    expression: str, column: int, fragment: str,
) -> None:
    problem = only_problem(program_text(f"""\
        - id: picky
          kind: fixed_bonus
          points: 5
          when: "{expression}"
        """))
    assert problem.message.startswith(
        f"rules[0].when.expression: CEL: at 1:{column}: invalid regular expression")
    assert fragment in problem.message


def test_an_exhausted_budget_at_evaluation_is_an_expression_error() -> None:
    from loyalty_engine.rules.expressions import (
        ExpressionError,
        compile_expression,
        evaluate,
        stored_programs,
    )

    source = "purchase.categories.all(a, purchase.categories.all(b, a != b || a == b))"
    with stored_programs():  # as a program stored before the bound was checked
        compiled = compile_expression(source)
    with pytest.raises(ValueError, match="1,001,000 steps"):
        compile_expression(source)
    with pytest.raises(ExpressionError, match="more than the 9,999 comprehension steps"):
        evaluate(compiled, {"purchase.categories": [str(i) for i in range(200)]})


# --- tier measures (issue 16: nights, days, two measures, review dates) ----------------------

def tiers_text(measure: str, levels: str, window: str = "calendar_year") -> str:
    """The corner cafe with a tier ladder (excluding tobacco, gift cards, DEPOSIT-BOTTLE)."""
    block = (f"tiers:\n  measure: {measure}\n  window: {window}\n  downgrade: qualified\n"
             "  levels:\n" + textwrap.indent(textwrap.dedent(levels), "    "))
    return program_text(PER_EURO, before_rewards=block)


NIGHTS_OR_POINTS = "{any: {nights: {quantity: {categories: [room-night]}}, points: points}}"

BAD_TIERS = {
    "a decimal threshold on a quantity ladder": Bad(
        tiers_text("{quantity: {categories: [room-night]}}",
                   "- {id: silver, threshold: 0}\n- {id: gold, threshold: 2.5}\n"),
        at="id: gold", col="2.5",
        message="tiers.levels[1].threshold: a quantity threshold is a whole number, not 2.5"),
    "a decimal threshold on a days ladder": Bad(
        tiers_text("days", "- {id: silver, threshold: 0}\n- {id: gold, threshold: 10.5}\n"),
        at="id: gold", col="10.5",
        message="tiers.levels[1].threshold: a days threshold is a whole number, not 10.5"),
    "a decimal nights threshold of two measures": Bad(
        tiers_text(NIGHTS_OR_POINTS, "- {id: silver, thresholds: {nights: 0, points: 0}}\n"
                   "- {id: gold, thresholds: {nights: 25.5, points: 50000}}\n"),
        at="id: gold", col="25.5",
        message="tiers.levels[1].thresholds.nights: a quantity (nights) threshold is a whole "
                "number, not 25.5"),
    "any: with a level lacking a measure's threshold": Bad(
        tiers_text(NIGHTS_OR_POINTS, "- {id: silver, thresholds: {nights: 0, points: 0}}\n"
                   "- {id: gold, thresholds: {nights: 25}}\n"),
        at="id: gold", col="thresholds",
        message="tiers.levels[1].thresholds: tier 'gold' has no threshold for points; with "
                "any: every level needs one per measure ({nights: ..., points: ...})"),
    "all: with a level giving one threshold": Bad(
        tiers_text("{all: {nights: {quantity: {skus: [ROOM]}}, spend: spend}}",
                   "- {id: silver, thresholds: {nights: 0, spend: 0}}\n"
                   "- {id: gold, threshold: 25}\n"),
        at="id: gold", col="25",
        message="tiers.levels[1].threshold: a ladder of several measures gives each level "
                "thresholds: {nights: ..., spend: ...}, not one threshold"),
    "a threshold for a measure the ladder does not have": Bad(
        tiers_text(NIGHTS_OR_POINTS, "- {id: silver, thresholds: {nights: 0, points: 0}}\n"
                   "- {id: gold, thresholds: {nights: 25, points: 50000, stays: 3}}\n"),
        at="id: gold", col="3}",
        message="tiers.levels[1].thresholds.stays: unknown measure 'stays' (measures: "
                "nights, points)"),
    "two measures, one threshold decreasing": Bad(
        tiers_text(NIGHTS_OR_POINTS, "- {id: silver, thresholds: {nights: 10, points: 25000}}\n"
                   "- {id: gold, thresholds: {nights: 25, points: 20000}}\n"),
        at="id: gold", col="20000",
        message="tiers.levels[1].thresholds.points: thresholds must not decrease up the "
                "ladder: 'gold' needs 20000 points, less than 'silver' (25000)"),
    "two measures, neither threshold increasing": Bad(
        tiers_text(NIGHTS_OR_POINTS, "- {id: silver, thresholds: {nights: 10, points: 25000}}\n"
                   "- {id: gold, thresholds: {nights: 10, points: 25000}}\n"),
        at="id: gold", col="thresholds",
        message="tiers.levels[1].thresholds: 'gold' needs the same as 'silver': raise at "
                "least one of its thresholds (each may stay level, one must increase)"),
    "a quantity measure counting only excluded items": Bad(
        tiers_text("{quantity: {categories: [tobacco, gift-cards]}}",
                   "- {id: silver, threshold: 0}\n"),
        at="measure:", col="categories",
        message="tiers.measure.quantity.categories: every category the quantity measure "
                "counts is excluded from the program, so it would never count: select items "
                "the program counts, or stop excluding them"),
    "a quantity measure without a selection": Bad(
        tiers_text("{quantity: {}}", "- {id: silver, threshold: 0}\n"),
        at="measure:", col="quantity",
        message="tiers.measure.quantity: a quantity measure needs the categories or skus of "
                "the lines whose quantity it sums"),
    "an unknown key in a measure": Bad(
        tiers_text("{quantity: {categories: [room-night], nights: true}}",
                   "- {id: silver, threshold: 0}\n"),
        at="measure:", col="nights:",
        message="tiers.measure.quantity: unknown key 'nights'"),
    "neither any nor all": Bad(
        tiers_text("{}", "- {id: silver, threshold: 0}\n"),
        at="measure:", col="measure", prefix="tiers.measure: give either any:"),
    "the same measure twice": Bad(
        tiers_text("{any: {a: points, b: points}}",
                   "- {id: silver, thresholds: {a: 0, b: 0}}\n"),
        at="measure:", col="any",
        message="tiers.measure.any: points is measured twice; name each measure once"),
    "review_on on a quarterly review": Bad(
        tiers_text("spend", "- {id: silver, threshold: 0}\n",
                   "{rolling_months: 12, review: quarterly, review_on: 03-01}"),
        at="window:", col="03-01",
        message="tiers.window.review_on: review_on is the day of a yearly review; a quarterly "
                "review falls on the 1st (drop review_on or set review: yearly)"),
    "a review day not every year has": Bad(
        tiers_text("spend", "- {id: silver, threshold: 0}\n",
                   "{rolling_months: 12, review: yearly, review_on: 02-30}"),
        at="window:", col="02-30",
        message="tiers.window.review_on: review_on '02-30' is not a day every year has: give "
                "MM-DD with a day from 01 to 28"),
    "an unknown review schedule": Bad(
        tiers_text("spend", "- {id: silver, threshold: 0}\n",
                   "{rolling_months: 12, review: weekly}"),
        at="window:", col="weekly", prefix="tiers.window"),
}


@pytest.mark.parametrize("name", list(BAD_TIERS))
def test_bad_tier_measure_is_refused_at_the_mistake(name: str) -> None:
    case = BAD_TIERS[name]
    assert_refused_as(case)


# --- issue 16: slips a program manager makes, and CEL that cannot mean cents ------------------

def yen(text: str) -> str:
    return text.replace("currency: EUR", "currency: JPY")


def fee_club(extra: str) -> str:
    return ("clubs:\n  - id: wine-club\n    name: Wine club\n    kind: fee\n"
            "    levels:\n      - {id: classic, fee: 25}\n" + extra)


ATTRIBUTE_FIX = ("member.attributes.city fails for every member without that attribute (and "
                 "with it the purchase, and an import file); write has(member.attributes.city)"
                 " && member.attributes.city ... (or has(member.attributes.city) ? ... : false)")

SLIPS = {
    "program cap below a fixed bonus": Bad(
        program_text(fixed_bonus(""), before_rewards="caps: {per_day: 40, per_week: 200}\n"),
        at="points: 50", col="50",
        message="rules[0].points: 50 points is more than the program's caps.per_day of 40, so "
                "this award could never be given whole; raise caps.per_day to at least 50, "
                "or award at most 40",
    ),
    "program cap below an nth visit award": Bad(
        program_text("- {id: fifth, kind: nth_visit, visit: 5, period: month, points: 300}\n",
                     before_rewards="caps: {per_month: 250}\n"),
        at="points: 300", col="300",
        prefix="rules[0].points: 300 points is more than the program's caps.per_month of 250",
    ),
    "program cap below a spend threshold award": Bad(
        program_text("- {id: big, kind: spend_threshold, threshold: 200, period: quarter, "
                     "points: 500}\n", before_rewards="caps: {per_year: 400}\n"),
        at="points: 500", col="500",
        contains=("caps.per_year of 400", "raise caps.per_year to at least 500"),
    ),
    "yen threshold written with cents": Bad(
        yen(program_text('- {id: big, kind: spend_threshold, threshold: "350.00", '
                         "period: month, points: 5}\n")),
        at='"350.00"', col='"350.00"',
        message="rules[0].threshold: amount 350.00 is written with more decimals than JPY has "
                "(no decimals); write 350",
    ),
    "yen minimum purchase as a YAML float": Bad(
        yen(program_text(PER_EURO + "  minimum_purchase: 500.0\n")),
        at="minimum_purchase", col="500.0",
        message="rules[0].minimum_purchase: amount 500.0 is written with more decimals than "
                "JPY has (no decimals); write 500",
    ),
    "euro reward amount with a third decimal zero": Bad(
        program_text(PER_EURO, rewards=REWARDS + "  - id: five-off\n    name: Five off\n"
                     "    kind: fixed_amount\n    amount: \"5.000\"\n"),
        at='amount: "5.000"', col='"5.000"',
        message="rewards[1].amount: amount 5.000 is written with more decimals than EUR has "
                "(2 decimals); write 5.00",
    ),
    "points expiring in days before pending ends": Bad(
        program_text(PER_EURO, before_rewards="points:\n  pending_days: 30\n"
                                              "  expiry: {after_days: 30}\n"),
        at="after_days: 30", col="30",
        message="points.expiry.after_days: points would expire after 30 days, before their "
                "pending_days (30) end, so they could never be spent; give after_days above "
                "30, or fewer pending_days",
    ),
    "points expiring a month later, pending four weeks": Bad(
        # 31 January + 1 month is 28 February: 28 days.
        program_text(PER_EURO, before_rewards="points:\n  pending_days: 28\n"
                                              "  expiry: {after_months: 1}\n"),
        at="after_months: 1", col="1}",
        prefix="points.expiry.after_months: after_months 1 can be as little as 28 days",
    ),
    "points expiring at the end of the month while pending": Bad(
        program_text(PER_EURO, before_rewards="points:\n  pending_days: 14\n"
                                              "  expiry: {end_of: month}\n"),
        at="end_of: month", col="month",
        prefix="points.expiry.end_of: points earned near the end of the month expire before "
               "their pending_days (14) end",
    ),
    "renewal notice longer than a monthly term": Bad(
        program_text(PER_EURO, before_rewards=fee_club(
            "    term_months: 1\n    renewal_notice_days: 30\n")),
        at="renewal_notice_days: 30", col="30",
        message="clubs[0].renewal_notice_days: renewal_notice_days 30 is longer than the "
                "club's term of 1 month (at least 28 days); give at most 28, or a longer "
                "term_months",
    ),
    "grace longer than a quarter's term": Bad(
        program_text(PER_EURO, before_rewards=fee_club(
            "    term_months: 3\n    renewal_notice_days: 10\n    grace_days: 100\n")),
        at="grace_days: 100", col="100",
        contains=("term of 3 months (at least 89 days)", "give at most 89"),
    ),
    "cooling off longer than a monthly term": Bad(
        program_text(PER_EURO, before_rewards=fee_club(
            "    term_months: 1\n    renewal_notice_days: 7\n    cooling_off_days: 31\n")),
        at="cooling_off_days: 31", col="31",
        prefix="clubs[0].cooling_off_days: cooling_off_days 31 is longer",
    ),
    "unguarded attribute": Bad(
        program_text(fixed_bonus("  when: 'member.attributes.city == \"Paris\"'\n")),
        at="member.attributes.city", col="'member",
        message=f"rules[0].when.expression: CEL: at 1:18: {ATTRIBUTE_FIX}",
    ),
    "unguarded attribute after an unrelated guard": Bad(
        program_text(fixed_bonus("  when: 'has(member.attributes.town) && "
                                 "member.attributes.city == \"Paris\"'\n")),
        at="member.attributes.city", col="'has",
        message=f"rules[0].when.expression: CEL: at 1:49: {ATTRIBUTE_FIX}",
    ),
    "unguarded attribute in a multiplier": Bad(
        program_text(PER_EURO + "  multipliers:\n    - id: paris\n"
                     "      when: 'member.attributes.city == \"Paris\" || "
                     "has(member.attributes.city)'\n      factor: 2\n"),
        at="member.attributes.city", col="'member",
        message=f"rules[0].multipliers[0].when.expression: CEL: at 1:18: {ATTRIBUTE_FIX}",
    ),
    "unguarded attribute by index": Bad(
        program_text(fixed_bonus("  when: 'member.attributes[\"city\"] == \"Paris\"'\n")),
        at="member.attributes", col="'member",
        message='rules[0].when.expression: CEL: at 1:18: member.attributes["city"] fails for '
                "every member without that attribute (and with it the purchase, and an import "
                'file); write "city" in member.attributes && member.attributes["city"] ...',
    ),
    "attribute guarded only where the guard is false": Bad(
        program_text(fixed_bonus("  when: 'has(member.attributes.city) ? true : "
                                 "member.attributes.city == \"Paris\"'\n")),
        at="member.attributes.city", col="'has",
        prefix="rules[0].when.expression: CEL: at 1:55: member.attributes.city fails",
    ),
    "purchase total without a language level": Bad(
        program_text(fixed_bonus('  when: "purchase.total >= 50"\n')),
        at="purchase.total", col='"purchase',
        message="rules[0].when.expression: CEL: at 1:9: purchase.total says no unit: add "
                "`language: 2` at the top of the file to write it in the currency "
                "(purchase.total >= 50 is 50 euros), or name the minor units "
                "(purchase.total_minor >= 5000 is in cents); a file written before levels "
                "existed means cents: `language: 1` keeps that",
    ),
    "item amount without a language level": Bad(
        program_text(fixed_bonus('  when: "purchase.items.exists(i, i.amount >= 5)"\n')),
        at="purchase.items", col='"purchase',
        prefix="rules[0].when.expression: CEL: at 1:27: an item amount says no unit",
    ),
    "amount in euros times a whole number": Bad(
        "language: 2\n" + program_text(fixed_bonus('  when: "purchase.total * 2 >= 50"\n')),
        at="purchase.total", col='"purchase',
        message="rules[0].when.expression: CEL: at 1:16: an amount in the currency is a "
                "decimal: CEL does not mix it with a whole number (int) in arithmetic; write "
                "the number with a decimal point (2.0, not 2)",
    ),
    "amount in euros compared with text": Bad(
        "language: 2\n" + program_text(fixed_bonus("  when: \"purchase.total > '50'\"\n")),
        at="purchase.total", col='"purchase',
        message="rules[0].when.expression: CEL: at 1:16: an amount in the currency is a "
                "number; it cannot be compared with a string (write a number, e.g. "
                "purchase.total >= 50)",
    ),
    "distinct days awarded at period end": Bad(
        program_text("- {id: third, kind: nth_visit, visit: 3, period: month, points: 5, "
                     "award: at_period_end, count: distinct_days}\n"),
        at="count: distinct_days", col="distinct_days",
        message="rules[0].count: visits counted as distinct days are awarded at the purchase "
                "that reaches them: drop award: at_period_end, or count: purchases",
    ),
    "stamps per distinct day per item": Bad(
        program_text(stamp_card("  count: distinct_days\n")),
        at="count: distinct_days", col="distinct_days",
        message="rules[0].count: count: distinct_days counts visits; use it with stamp_per: "
                "visit (per item, every item earns)",
    ),
    "stamp price with a tenth of a cent": Bad(
        program_text(stamp_card('  min_item_price: "2.005"\n')),
        at="min_item_price", col='"2.005"',
        message="rules[0].min_item_price: amount 2.005 has more decimals than EUR allows (2)",
    ),
    "a free stamp price": Bad(
        program_text(stamp_card('  min_item_price: "0.00"\n')),
        at="min_item_price", col='"0.00"',
        prefix="rules[0].min_item_price: Input should be greater than 0",
    ),
    "an unknown language level": Bad(
        "language: 3\n" + program_text(PER_EURO),
        at="language: 3", col="3",
        prefix="language: Input should be 1 or 2",
    ),
}


@pytest.mark.parametrize("name", list(SLIPS))
def test_a_slip_is_refused_at_the_mistake_with_the_fix(name: str) -> None:
    case = SLIPS[name]
    assert_refused_as(case)


@pytest.mark.parametrize("text", [
    # A cap at the award exactly lets it be given whole; awards at period end are not capped.
    program_text(fixed_bonus(""), before_rewards="caps: {per_day: 50}\n"),
    program_text("- {id: fifth, kind: nth_visit, visit: 5, period: month, points: 300, "
                 "award: at_period_end}\n", before_rewards="caps: {per_month: 250}\n"),
    yen(program_text('- {id: big, kind: spend_threshold, threshold: "350", period: month, '
                     "points: 5}\n")),
    program_text(PER_EURO + '  minimum_purchase: "5.10"\n'),
    program_text(PER_EURO, before_rewards="points:\n  pending_days: 27\n"
                                          "  expiry: {after_months: 1}\n"),
    program_text(PER_EURO, before_rewards="points:\n  pending_days: 0\n"
                                          "  expiry: {end_of: month}\n"),
    program_text(PER_EURO, before_rewards=fee_club("    term_months: 1\n"
                                                   "    renewal_notice_days: 28\n")),
], ids=["cap equal to the award", "period-end award above the cap", "whole yen",
        "euro cents", "expiry a day after pending", "no pending", "notice within the term"])
def test_what_is_no_slip_loads(text: str) -> None:
    load_program_text(text, "cafe.yaml")


@pytest.mark.parametrize("expression", [
    "has(member.attributes.city) && member.attributes.city == 'Paris'",
    "local.hour < 9 && has(member.attributes.city) && member.attributes.city == 'Paris'",
    "member.attributes.city == 'Paris' && has(member.attributes.city)",  # CEL's && commutes
    "'city' in member.attributes && member.attributes['city'] == 'Paris'",
    "has(member.attributes.city) && member.attributes['city'] == 'Paris'",
    "has(member.attributes.city) ? member.attributes.city == 'Paris' : false",
    "!has(member.attributes.city) || member.attributes.city != 'Paris'",
    "'member.attributes.city == 1' != local.date",  # the text in a string reads nothing
    "member.attributes.exists(k, k == 'city')",
    "member.segment == 'student'",
    "member.birthday_month == local.month && local.weekday_number <= 5",
    "days_between(local.date, '2026-12-25') < 30 && month_of(local.date) == 12",
    "has(member.attributes.enrolled) && days_between(member.attributes.enrolled, "
    "local.date) >= 365",
])
def test_guarded_attributes_and_date_helpers_load(expression: str) -> None:
    load_program_text(program_text(fixed_bonus(f'  when: "{expression}"\n')), "cafe.yaml")


@pytest.mark.parametrize(("level", "expression"), [
    ("language: 2\n", "purchase.total >= 50"),
    ("language: 2\n", "purchase.total * 2.0 >= 50.5 && purchase.eligible_spend < 1000"),
    ("language: 2\n", "purchase.items.exists(i, i.amount >= 2 && i.amount_minor >= 200)"),
    ("language: 1\n", "purchase.total >= 5000 && purchase.items.exists(i, i.amount > 100)"),
    ("", "purchase.total_minor >= 5000 && purchase.eligible_spend_minor > 0"),
])
def test_amount_names_each_level_accepts(level: str, expression: str) -> None:
    load_program_text(level + program_text(fixed_bonus(f'  when: "{expression}"\n')))


def test_a_stored_version_keeps_its_cents_and_skips_the_new_checks() -> None:
    # Versions applied before issue 16 were validated by the rules of their day: compiled
    # again, they are read as language 1 and the slips found since do not refuse them.
    text = yen(program_text(fixed_bonus(
        "  when: 'purchase.total >= 5000 && member.attributes.city == \"Paris\"'\n"
    ), before_rewards="caps: {per_day: 40}\npoints:\n  pending_days: 14\n"
                      "  expiry: {end_of: year}\n"))
    with stored_programs():
        loaded = load_program_text(text, "cafe.yaml")
    assert loaded.compiled.cel_language == 1
    with pytest.raises(ProgramFileError) as info:  # as a new file: each slip is refused
        load_program_text(text, "cafe.yaml")
    assert sorted(p.message.split(":")[0] for p in info.value.problems) == [
        # (the cap below the bonus's 50 points is reported once the expression is fixed)
        "points.expiry.end_of", "rules[0].when.expression"]


def test_a_language_level_changes_the_content_hash_and_absence_keeps_it() -> None:
    text = program_text(PER_EURO)
    plain = load_program_text(text).content_hash
    assert load_program_text("language: 1\n" + text).content_hash != plain
    assert load_program_text("language: 2\n" + text).content_hash != plain


def test_the_counting_keys_hash_only_when_they_change_the_meaning() -> None:
    # Omitted or written at their defaults, the keys of issue 16 leave the hash a stored
    # version has, so applying an unchanged file again makes no new version.
    visits = "- {id: third, kind: nth_visit, visit: 3, period: month, points: 5}\n"
    plain = load_program_text(program_text(visits)).content_hash
    same = program_text(visits.replace("points: 5}", "points: 5, count: purchases}"))
    days = program_text(visits.replace("points: 5}", "points: 5, count: distinct_days}"))
    assert load_program_text(same).content_hash == plain
    assert load_program_text(days).content_hash != plain
    card = load_program_text(program_text(stamp_card())).content_hash
    priced = load_program_text(program_text(stamp_card('  min_item_price: "2.00"\n')))
    assert priced.content_hash != card
