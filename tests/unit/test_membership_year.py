"""Membership years: the period arithmetic (leap days, a club's chained terms), the
language's new period values and what validation refuses about them, the compiled
program, the pure core's counter keys, and the rules diff's words."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from loyalty_engine.domain.decisions import MemberView
from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.periods import (
    key_end,
    membership_year,
    membership_year_key,
)
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.earning import evaluate
from loyalty_engine.rules import load_program_text
from loyalty_engine.rules.diff import diff_programs
from tests.unit.test_program_language import only_problem, position, program_text

D = date.fromisoformat


@pytest.mark.parametrize(("anchor", "day", "chained", "expected"), [
    # An ordinary anniversary: the day itself starts the next year.
    ("2026-03-15", "2026-03-15", False, ("2026-03-15", "2027-03-15")),
    ("2026-03-15", "2027-03-14", False, ("2026-03-15", "2027-03-15")),
    ("2026-03-15", "2027-03-15", False, ("2027-03-15", "2028-03-15")),
    ("2026-03-15", "2031-01-02", False, ("2030-03-15", "2031-03-15")),
    # Before the enrolment (a purchase posted from earlier): the first year.
    ("2026-03-15", "2026-01-01", False, ("2026-03-15", "2027-03-15")),
    # Joined on 29 February: from 28 February in common years, 29 in leap years.
    ("2024-02-29", "2025-02-27", False, ("2024-02-29", "2025-02-28")),
    ("2024-02-29", "2025-02-28", False, ("2025-02-28", "2026-02-28")),
    ("2024-02-29", "2028-02-28", False, ("2027-02-28", "2028-02-29")),
    ("2024-02-29", "2028-02-29", False, ("2028-02-29", "2029-02-28")),
    # A club's terms chain from the end of the last (as renewals do): 28 February on.
    ("2024-02-29", "2028-02-28", True, ("2028-02-28", "2029-02-28")),
    ("2026-01-31", "2026-06-01", True, ("2026-01-31", "2027-01-31")),
])
def test_the_membership_year_holding_a_day(anchor: str, day: str, chained: bool,
                                           expected: tuple[str, str]) -> None:
    start, end = membership_year(D(anchor), D(day), chained=chained)
    assert (start.isoformat(), end.isoformat()) == expected


def test_a_membership_year_key_names_its_end_and_fits_a_counter() -> None:
    key = membership_year_key(D("2026-03-15"), D("2027-03-15"))
    assert key == "2026-03-15--2027-03-15"
    assert key_end("membership_year:warehouse", key) == D("2027-03-15")
    assert len("my:" + key) <= 32  # progress_counters.period, a cap's key included


CLUB = """\
clubs:
  - id: warehouse
    name: Warehouse
    kind: fee
    term_months: 12
    levels: [{id: basic, name: Basic, fee: "60.00"}]
  - id: friends
    name: Friends
    kind: open
"""


def rebate(period: str) -> str:
    return ("- id: rebate\n  kind: periodic_rebate\n  percent: 2\n"
            f"  period: {period}\n")


@pytest.mark.parametrize(("rules", "line", "column", "message"), [
    (rebate("{membership_year: shop}"), "membership_year: shop", "shop",
     "rules[0].period.membership_year: unknown club 'shop' (fee clubs: warehouse); name a "
     "fee club, or write 'period: membership_year' for a year from the enrolment"),
    (rebate("{membership_year: friends}"), "membership_year: friends", "friends",
     "rules[0].period.membership_year: club 'friends' is open: only a fee club has terms "
     "to follow; write 'period: membership_year' for a year from the enrolment"),
    (rebate("fortnight"), "period: fortnight", "fortnight",
     "rules[0].period: Input should be 'month', 'quarter', 'year' or 'membership_year'"),
    ("- id: third\n  kind: nth_visit\n  visit: 3\n  points: 5\n"
     "  period: {membership_year: shop}\n", "membership_year: shop", "shop",
     "rules[0].period.membership_year: unknown club 'shop' (fee clubs: warehouse); name a "
     "fee club, or write 'period: membership_year' for a year from the enrolment"),
    ("- id: euro\n  kind: points_per_spend\n  points_per_unit: 1\n"
     "  caps: {per_day: 1, per_membership_year: 400}\n", "caps:", "caps",
     "rules[0].caps.per_membership_year: per_membership_year 400 can never be met: per_day "
     "1 allows at most 366 in a membership_year"),
])
def test_bad_membership_years_are_refused_where_they_are(rules: str, line: str, column: str,
                                                         message: str) -> None:
    text = program_text(rules, before_rewards=CLUB)
    problem = only_problem(text)
    assert problem.message == message
    if column != "caps":
        assert (problem.line, problem.column) == position(text, line, column)


def test_membership_year_periods_compile() -> None:
    text = program_text(
        rebate("{membership_year: warehouse}")
        + "- id: third\n  kind: nth_visit\n  visit: 3\n  points: 5\n"
          "  period: membership_year\n  award: at_period_end\n"
        + "- id: euro\n  kind: points_per_spend\n  points_per_unit: 1\n"
          "  caps: {per_membership_year: 500}\n", before_rewards=CLUB)
    compiled = load_program_text(text).compiled
    periods = {r.rule_id: getattr(r, "period", None) for r in compiled.rules}
    assert periods == {"rebate": "membership_year:warehouse", "third": "membership_year",
                       "euro": None}
    assert compiled.rule("euro").caps == (("membership_year", 500),)  # type: ignore[union-attr]
    assert compiled.membership_years  # enrolment dates are loaded with each batch
    # A program keeping only calendar periods and club years needs no enrolment dates.
    calendar = load_program_text(program_text(rebate("year"), before_rewards=CLUB)).compiled
    assert not calendar.membership_years


def test_the_core_keys_counters_by_the_members_own_year() -> None:
    text = program_text(rebate("membership_year") + rebate("{membership_year: warehouse}")
                        .replace("id: rebate", "id: club-rebate"), before_rewards=CLUB)
    program = load_program_text(text).compiled
    member = MemberView("M-1")
    standing = member.standing(program.program_id)
    standing.enrolled_on = D("2024-02-29")
    standing.clubs["warehouse"] = "basic"
    standing.club_since["warehouse"] = datetime(2026, 5, 1, 10, tzinfo=UTC)
    progress: dict[tuple[str, str], int] = {}
    evaluate(program, _event("2026-03-01T12:00:00+01:00"), member, progress)
    # From the enrolment: 2026-02-28 .. 2027-02-28; the club year had not begun then.
    assert progress == {("rebate:spend", "2026-02-28--2027-02-28"): 10000}
    evaluate(program, _event("2027-04-30T12:00:00+02:00"), member, progress)
    # The third year from 29 February 2024 ends on 29 February 2028 (a leap year); the
    # club's first term, paid on 1 May 2026, runs to 1 May 2027.
    assert progress == {("rebate:spend", "2026-02-28--2027-02-28"): 10000,
                        ("rebate:spend", "2027-02-28--2028-02-29"): 10000,
                        ("club-rebate:spend", "2026-05-01--2027-05-01"): 10000}


def _event(when: str) -> Purchase:
    """A purchase of 100.00 by M-1 at an instant."""
    return PurchaseEvent.model_validate({
        "transaction_id": when, "store_id": "S", "member_id": "M-1",
        "occurred_at": when, "currency": "EUR", "total": "100.00",
        "items": [{"sku": "X", "category": "general", "quantity": "1",
                   "unit_price": "100.00"}]}).to_purchase()


def test_the_diff_says_which_anchor_a_membership_year_counts_from() -> None:
    old = load_program_text(program_text(rebate("year"), before_rewards=CLUB)).definition
    new = load_program_text(program_text(rebate("{membership_year: warehouse}"),
                                         before_rewards=CLUB)).definition
    [changed] = diff_programs(old, new).rules.changed
    assert [(c.path, c.before, c.after) for c in changed.changes] == [
        ("period", "year", "membership year of club warehouse (its paid terms)")]
