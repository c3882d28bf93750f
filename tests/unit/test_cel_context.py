"""What CEL conditions see: amounts at each language level (exact in the currency's
precision), the date helpers and the member's birthday month."""

from __future__ import annotations

import pytest

from loyalty_engine.domain.decisions import MemberView
from loyalty_engine.engine.earning import evaluate
from loyalty_engine.rules import CompiledProgram, load_program_text
from loyalty_engine.rules.expressions import stored_programs

from .builders import Line, purchase

HEAD = """\
{level}program: cel-shop
name: CEL shop
currency: {currency}
timezone: Europe/Amsterdam
enrolment: open
exclude: {{categories: [tobacco]}}
rules:
  - id: bonus
    kind: fixed_bonus
    points: 7
    when: "{expression}"
"""


def program(expression: str, level: str = "language: 2\n", currency: str = "EUR",
            stored: bool = False) -> CompiledProgram:
    text = HEAD.format(level=level, currency=currency, expression=expression)
    if stored:
        with stored_programs():
            return load_program_text(text).compiled
    return load_program_text(text).compiled


def earns(compiled: CompiledProgram, lines: list[Line], member: MemberView | None = None,
          when: str = "2026-03-14T09:30:00+01:00", currency: str = "EUR") -> bool:
    bought = purchase(lines, currency=currency, occurred_at=when)
    awards = evaluate(compiled, bought, member or MemberView("M-42"), {}).awards
    return any(a.rule_id == "bonus" for a in awards)


COFFEE = ("LATTE", "coffee", "1", "10.10")
CIGARS = ("CIGARS", "tobacco", "1", "40.00")


@pytest.mark.parametrize(("expression", "lines", "expected"), [
    # 10.10 EUR is 1010 cents; read as 1010 / 100 it is the very double 10.1 is.
    ("purchase.total >= 10.1", [COFFEE], True),
    ("purchase.total == 10.1", [COFFEE], True),
    ("purchase.total > 10.1", [COFFEE], False),
    ("purchase.total >= 10", [COFFEE], True),  # a whole-number literal compares
    ("purchase.total >= 11", [COFFEE], False),
    ("purchase.total >= 50", [COFFEE, CIGARS], True),  # 50.10 euros, not 50 cents
    ("purchase.eligible_spend >= 50", [COFFEE, CIGARS], False),  # tobacco excluded: 10.10
    ("purchase.eligible_spend == 10.1", [COFFEE, CIGARS], True),
    ("purchase.total_minor == 5010", [COFFEE, CIGARS], True),
    ("purchase.eligible_spend_minor == 1010", [COFFEE, CIGARS], True),
    # 0.1 + 0.2 is no decimal: 30 cents read in euros is exactly the literal 0.3.
    ("purchase.total == 0.3", [("A", "x", "1", "0.30")], True),
    ("purchase.items.exists(i, i.amount == 40.0 && i.amount_minor == 4000)",
     [COFFEE, CIGARS], True),
    ("purchase.items.all(i, i.amount >= 10)", [COFFEE, CIGARS], True),
    ("purchase.total * 2.0 >= 20.2", [COFFEE], True),
])
def test_amounts_in_the_currency_compare_exactly(expression: str, lines: list[Line],
                                                 expected: bool) -> None:
    assert earns(program(expression), lines) is expected


def test_yen_amounts_are_whole_yen() -> None:
    compiled = program("purchase.total >= 350 && purchase.total_minor == 350",
                       currency="JPY")
    assert earns(compiled, [("ONIGIRI", "food", "1", "350")], currency="JPY")
    assert not earns(compiled, [("ONIGIRI", "food", "1", "349")], currency="JPY")


@pytest.mark.parametrize(("level", "stored"), [("", True), ("language: 1\n", False)])
def test_level_one_keeps_the_cents_a_stored_version_was_written_in(level: str,
                                                                   stored: bool) -> None:
    # Written before issue 16: purchase.total >= 1000 meant 10.00 euros, and still does.
    compiled = program("purchase.total >= 1000 && purchase.items.exists(i, i.amount == 1010)",
                       level=level, stored=stored)
    assert compiled.cel_language == 1
    assert earns(compiled, [COFFEE])  # 1010 cents
    assert not earns(compiled, [("A", "x", "1", "9.99")])


@pytest.mark.parametrize(("attributes", "month", "expected"), [
    ({"date_of_birth": "1990-03-17"}, 3, True),
    ({"date_of_birth": "1990-04-17"}, 3, False),
    ({"date_of_birth": "17/03/1990"}, 0, True),  # malformed: 0, never a failed purchase
    ({"date_of_birth": 19900317}, 0, True),  # not a string
    ({}, 0, True),  # unknown
])
def test_birthday_month(attributes: dict[str, object], month: int, expected: bool) -> None:
    compiled = program(f"member.birthday_month == {month}")
    assert earns(compiled, [COFFEE], MemberView("M-42", attributes)) is expected


def test_the_birthday_month_matches_the_purchase_month_in_program_time() -> None:
    compiled = program("member.birthday_month == local.month && member.birthday != ''")
    member = MemberView("M-42", {"date_of_birth": "1990-04-02"})
    # 31 March 22:30 UTC is 1 April 00:30 in Amsterdam: April, the birthday month.
    assert earns(compiled, [COFFEE], member, when="2026-03-31T22:30:00+00:00")
    assert not earns(compiled, [COFFEE], member, when="2026-03-31T21:30:00+00:00")


@pytest.mark.parametrize(("expression", "when", "expected"), [
    ("local.weekday_number == 6", "2026-03-14T09:30:00+01:00", True),  # a Saturday
    ("local.weekday_number <= 5", "2026-03-14T09:30:00+01:00", False),
    ("weekday_of('2026-03-16') == 1", "2026-03-14T09:30:00+01:00", True),  # a Monday
    ("month_of(local.date) == 3", "2026-03-14T09:30:00+01:00", True),
    # 14 March to 25 December 2026: 17 + 30 + 31 + 30 + 31 + 31 + 30 + 31 + 30 + 25 = 286.
    ("days_between(local.date, '2026-12-25') == 286", "2026-03-14T09:30:00+01:00", True),
    ("days_between('2026-12-25', local.date) == -286", "2026-03-14T09:30:00+01:00", True),
    # 2028 is a leap year: 1 Feb to 1 Mar is 29 days.
    ("days_between('2028-02-01', '2028-03-01') == 29", "2026-03-14T09:30:00+01:00", True),
])
def test_date_helpers(expression: str, when: str, expected: bool) -> None:
    assert earns(program(expression), [COFFEE], when=when) is expected


def test_days_since_an_attribute_date_guarded() -> None:
    compiled = program("has(member.attributes.joined) && "
                       "days_between(member.attributes.joined, local.date) >= 30")
    # 14 March 2026 is 30 days after 12 February (16 + 14).
    assert earns(compiled, [COFFEE], MemberView("M-42", {"joined": "2026-02-12"}))
    assert not earns(compiled, [COFFEE], MemberView("M-42", {"joined": "2026-02-13"}))
    assert not earns(compiled, [COFFEE], MemberView("M-42", {}))
