"""Caps and period-end bonuses on the membership year (from each member's enrolment: in
an open program, their first purchase), on both databases: the year resets on the
member's anniversary, not on 1 January; a member who joined on 29 February has years
from 28 February in common years; a bonus is paid when the member's own year ends and a
return after that takes it back (owed when already spent). Table-driven: each case is a
program and steps, with the figures worked out by hand beside them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from loyalty_engine.services.period_bonuses import award_period_bonuses

from .walk import apply_text, assert_ledger_exact, at, buy, points, refund, spend

NOW = datetime(2029, 1, 1, tzinfo=UTC)

HEAD = """
program: year-club
name: Year Club
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
points: {refund_shortfall: debt}
rules:
"""
CAPPED = HEAD + """
  - id: euro
    kind: points_per_spend
    points_per_unit: 1
    caps: {per_membership_year: 500}
"""
PROGRAM_CAP = HEAD.replace("rules:", "caps: {per_membership_year: 500}\nrules:") + """
  - id: euro
    kind: points_per_spend
    points_per_unit: 1
"""
VISITS = HEAD + """
  - id: third-visit
    kind: nth_visit
    visit: 3
    period: membership_year
    points: 100
    award: at_period_end
"""
SPEND = HEAD + """
  - id: big-year
    kind: spend_threshold
    threshold: "300.00"
    period: membership_year
    points: 50
    award: at_period_end
"""

Step = tuple[Any, ...]

CASES: list[tuple[str, str, list[Step]]] = [
    ("a rule's cap resets on the anniversary, not on 1 January", CAPPED, [
        ("buy", "2026-05-10", "300.00", 300),  # joins: year 2026-05-10 .. 2027-05-10
        ("buy", "2026-12-01", "300.00", 500),  # 300 + 300 capped at 500
        ("buy", "2027-01-02", "100.00", 500),  # a new calendar year, the same member year
        ("buy", "2027-05-09", "100.00", 500),
        ("buy", "2027-05-10", "100.00", 600),  # the anniversary: a new cap, 500 + 100
    ]),
    ("a program-wide cap per membership year", PROGRAM_CAP, [
        ("buy", "2026-05-10", "450.00", 450),
        ("buy", "2026-06-10", "100.00", 500),  # 50 of 100 fit under 500
        ("buy", "2027-01-05", "30.00", 500),  # 1 January changed nothing
        ("buy", "2027-05-10", "80.00", 580),
    ]),
    ("a member who joined on 29 February: the year ends on 28 February", CAPPED, [
        ("buy", "2024-02-29", "300.00", 300),  # year 2024-02-29 .. 2025-02-28
        ("buy", "2025-02-27", "300.00", 500),  # capped: 200 of 300
        ("buy", "2025-02-28", "100.00", 600),  # year 2025-02-28 .. 2026-02-28
        ("buy", "2028-02-28", "500.00", 1100),  # year 2027-02-28 .. 2028-02-29
        ("buy", "2028-02-29", "50.00", 1150),  # a leap year again: from 29 February
    ]),
    ("a visit bonus is paid when the member's own year ends", VISITS, [
        ("buy", "2026-05-10", "10.00", 0),
        ("buy", "2026-08-01", "10.00", 0),
        ("buy", "2027-05-01", "10.00", 0),  # the third visit of the year from 10 May
        ("bonuses", "2027-05-09", 0, 0),  # the year has not ended
        ("bonuses", "2027-05-10T00:00:00+02:00", 1, 100),  # local midnight of the 10th
        ("bonuses", "2027-05-11", 0, 100),  # once per member and year
    ]),
    ("a return after the bonus takes it back", SPEND, [
        ("buy", "2026-05-10", "200.00", 0),
        ("buy", "2026-06-01", "150.00", 0),  # 350.00 reaches 300.00
        ("bonuses", "2027-05-10T00:00:00+02:00", 1, 50),
        ("refund", "R1", 2, "2027-05-20", "100.00", 0),  # 250.00 < 300.00: 50 back
        ("refund", "R1", 2, "2027-05-20", "100.00", 0),  # the same return: nothing more
        ("refund", "R2", 2, "2027-05-21", "50.00", 0),  # already taken back: once
    ]),
    ("a return that leaves the spend above the threshold keeps the bonus", SPEND, [
        ("buy", "2026-05-10", "200.00", 0),
        ("buy", "2026-06-01", "150.00", 0),
        ("bonuses", "2027-05-10T00:00:00+02:00", 1, 50),
        ("refund", "R1", 2, "2027-05-20", "50.00", 50),  # 300.00: still reached
    ]),
    ("a bonus already spent is owed", SPEND, [
        ("buy", "2026-05-10", "350.00", 0),
        ("bonuses", "2027-05-10T00:00:00+02:00", 1, 50),
        ("spend", "X1", "2027-05-12", 50, 0),
        # 350.00 - 100.00 = 250.00 < 300.00: 50 owed (debt policy: the balance stays 0)
        ("refund", "R1", 1, "2027-05-20", "100.00", 0, {"year-club": 50}),
        ("buy", "2027-06-01", "10.00", 0),  # a new year's spend earns no points here
    ]),
]


@pytest.mark.parametrize(("program", "steps"), [(p, s) for _, p, s in CASES],
                         ids=[name for name, _, _ in CASES])
def test_membership_year_caps_and_bonuses(engine: Engine, tmp_path: Path, program: str,
                                          steps: list[Step]) -> None:
    apply_text(engine, tmp_path, program)
    bought = 0
    for step in steps:
        if step[0] == "buy":
            _, day, amount, expected = step
            bought += 1
            buy(engine, f"T{bought}", day, [("X", "general", "1", amount)])
        elif step[0] == "bonuses":
            _, day, awarded, expected = step
            assert award_period_bonuses(engine, at(day), NOW).awarded == awarded, step
        elif step[0] == "spend":
            _, rid, day, amount, expected = step
            spend(engine, rid, day, "year-club", points=amount)
        else:
            _, rid, number, day, amount, expected, *owed = step
            outcome = refund(engine, rid, f"T{number}", day, amount)
            if owed:
                assert outcome.debts == owed[0], step
        assert points(engine, "year-club") == (expected, 0), step
    assert_ledger_exact(engine)
