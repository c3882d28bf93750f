"""Clubs as sold in the program language: upgrade_price, a level's trial and intro_fee —
the slips refused at file:line:col with what to change, and what a good file compiles to."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.rules.diff import diff_programs


def program(clubs: str, currency: str = "EUR") -> str:
    """A one-rule program with the given clubs section (YAML list under `clubs:`)."""
    return textwrap.dedent(f"""\
        program: club-shop
        name: Club Shop
        currency: {currency}
        timezone: Europe/Amsterdam
        enrolment: open
        clubs:
        """) + textwrap.indent(textwrap.dedent(clubs), "  ") + textwrap.dedent("""\
        rules:
          - id: per-euro
            kind: points_per_spend
            points_per_unit: 1
        """)


TWO_LEVELS = """\
- id: plus
  name: Plus
  kind: fee
  term_months: 12
  {club_extra}
  levels:
    - id: basic
      fee: "{fee}"
      {level_extra}
    - id: gold
      fee: "{gold_fee}"
"""


def two_levels(club_extra: str = "auto_renew: true", level_extra: str = "perks: []",
               fee: str = "60.00", gold_fee: str = "120.00") -> str:
    return TWO_LEVELS.format(club_extra=club_extra, level_extra=level_extra, fee=fee,
                             gold_fee=gold_fee)


ONE_LEVEL = """\
- id: plus
  name: Plus
  kind: fee
  upgrade_price: full_difference
  levels:
    - id: basic
      fee: "60.00"
"""

# name: (program text, the line's text the problem points at, the column's text there,
#        fragments the message must hold)
BAD = {
    "trial longer than the term": (
        program(two_levels("term_months: 1", "trial: {months: 2}").replace(
            "  term_months: 12\n", "")),
        "trial: {months: 2}", "2}",
        ("a trial of 2 months is longer than the club's term (term_months: 1)",
         "shorten the trial or lengthen term_months")),
    "intro fee above the fee": (
        program(two_levels(level_extra='intro_fee: "70.00"')),
        'intro_fee: "70.00"', '"70.00"',
        ("the introductory fee 70.00 is above the level's fee 60.00",)),
    "intro fee with more decimals than the currency": (
        program(two_levels(level_extra='intro_fee: "30.005"')),
        'intro_fee: "30.005"', '"30.005"', ("30.005",)),
    "intro fee in yen with cents": (
        program(two_levels(level_extra='intro_fee: "350.50"', fee="6000", gold_fee="9000"),
                currency="JPY"),
        'intro_fee: "350.50"', '"350.50"', ("350.50",)),
    "trial fee above the intro fee": (
        program(two_levels(level_extra='intro_fee: "30.00"\n      trial: '
                                       '{months: 1, fee: "40.00"}')),
        'trial: {months: 1, fee: "40.00"}', '"40.00"',
        ("the trial fee 40.00 is above the first paid term's fee 30.00",)),
    "upgrade_price on a club with one level": (
        program(ONE_LEVEL), "upgrade_price: full_difference", "full_difference",
        ("upgrade_price needs a club with two or more paid levels", "has 1",
         "remove upgrade_price")),
    "household on an open club": (
        program("- id: app\n  name: App\n  kind: open\n  household: {max_members: 2}\n"),
        "household: {max_members: 2}", "household",
        ("only fee clubs have households", "joins an open club on their own",
         "remove household")),
    "household of no members": (
        program(two_levels("household: {max_members: 0}")), "household: {max_members: 0}",
        "0}", ("greater than or equal to 1",)),
    "upgrade_price spelled wrong": (
        program(two_levels("upgrade_price: full")), "upgrade_price: full", "full",
        ("full_difference",)),
}


@pytest.mark.parametrize("name", list(BAD))
def test_club_slips_are_refused_at_the_mistake(name: str) -> None:
    text, line_text, column_text, fragments = BAD[name]
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "shop.yaml")
    [problem] = info.value.problems
    [line] = [n for n, row in enumerate(text.splitlines(), 1) if line_text in row]
    assert (problem.line, problem.column) == (
        line, text.splitlines()[line - 1].index(column_text) + 1), str(problem)
    for fragment in fragments:
        assert fragment in problem.message, problem.message
    assert str(problem).startswith(f"shop.yaml:{problem.line}:{problem.column}: ")


def test_new_keys_compile_to_minor_units_and_default_to_todays_behaviour() -> None:
    sold = load_program_text(program(two_levels(
        "upgrade_price: full_difference",
        'intro_fee: "30.00"\n      trial: {months: 1, fee: "1.50"}')), "shop.yaml")
    club = sold.compiled.clubs["plus"]
    basic, gold = club.levels
    assert club.upgrade_price == "full_difference"
    assert (basic.fee_minor, basic.intro_fee_minor, basic.first_fee()) == (6000, 3000, 3000)
    assert (basic.trial_months, basic.trial_fee_minor) == (1, 150)  # 1.50 EUR = 150 cents
    # Without the keys: prorated upgrades, no trial, the first term at the fee.
    assert (gold.intro_fee_minor, gold.trial_months, gold.first_fee()) == (None, None, 12000)
    plain = load_program_text(program(two_levels()), "shop.yaml").compiled.clubs["plus"]
    assert plain.upgrade_price == "prorated"
    free = load_program_text(program(two_levels(level_extra="trial: {months: 12}")),
                             "shop.yaml").compiled.clubs["plus"].levels[0]
    assert (free.trial_months, free.trial_fee_minor) == (12, 0)  # as long as the term: fine
    shared = load_program_text(program(two_levels(
        "household: {max_members: 1}", "household: {max_members: 3}")),
        "shop.yaml").compiled.clubs["plus"]
    # The level's household replaces the club's; a level without one has the club's.
    assert [lv.household_max for lv in shared.levels] == [3, 1]
    assert [lv.household_max for lv in plain.levels] == [0, 0]  # no household: none


def test_the_rules_diff_names_each_new_club_key() -> None:
    before = program(two_levels("household: {max_members: 1}"))
    after = program(two_levels("upgrade_price: full_difference",
                               'intro_fee: "30.00"\n      trial: {months: 1}'))
    diff = diff_programs(load_program_text(before, "a.yaml").definition,
                         load_program_text(after, "b.yaml").definition)
    settings: Any = diff.to_plain()["settings"]
    changes = {c["path"]: (c["before"], c["after"]) for c in settings}
    assert changes == {
        "clubs[plus].levels[basic].trial.months": (None, 1),
        "clubs[plus].levels[basic].trial.fee": (None, "0"),  # free: the default fee
        "clubs[plus].levels[basic].intro_fee": (None, "30"),
        "clubs[plus].household.max_members": (1, None),
        "clubs[plus].upgrade_price": ("prorated", "full_difference"),
    }
