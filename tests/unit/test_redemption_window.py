"""The program's window for back-dated redemptions (`redemptions.backdate_hours`): its
default, its bounds refused at file:line:col, and `rules diff` showing a change of it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.rules.diff import diff_programs

BASE = """\
program: shop
name: Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
"""
RULE = """\
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "shop.yaml")
    return [str(p) for p in info.value.problems]


def test_the_default_window_is_24_hours() -> None:
    assert load_program_text(BASE + RULE).compiled.redemption_backdate == timedelta(hours=24)


def test_a_program_states_its_own_window() -> None:
    program = load_program_text(BASE + "redemptions:\n  backdate_hours: 72\n" + RULE)
    assert program.compiled.redemption_backdate == timedelta(hours=72)


@pytest.mark.parametrize(("value", "says"), [
    ("0", "greater than or equal to 1"),
    ("721", "less than or equal to 720"),
    ('"a day"', "integer"),
])
def test_a_window_out_of_bounds_is_refused_at_its_value(value: str, says: str) -> None:
    [problem] = problems_of(BASE + f"redemptions:\n  backdate_hours: {value}\n" + RULE)
    assert problem.startswith("shop.yaml:7:19: redemptions.backdate_hours: "), problem
    assert says in problem, problem


def test_an_unknown_key_of_the_section_is_refused() -> None:
    [problem] = problems_of(BASE + "redemptions:\n  backdate_days: 1\n" + RULE)
    assert problem.startswith("shop.yaml:7:3: redemptions: unknown key 'backdate_days'"), problem


def test_rules_diff_shows_a_changed_window() -> None:
    before = load_program_text(BASE + RULE).definition
    after = load_program_text(BASE + "redemptions: {backdate_hours: 48}\n" + RULE).definition
    [change] = diff_programs(before, after).settings
    assert (change.path, change.before, change.after) == ("redemptions.backdate_hours", 24, 48)
    # Writing the default out changes nothing.
    same = load_program_text(BASE + "redemptions: {backdate_hours: 24}\n" + RULE).definition
    assert diff_programs(before, same).identical
