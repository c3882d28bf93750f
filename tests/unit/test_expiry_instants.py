"""Expiry instants, hand-computed (issue 16 item 3): "N months after earning, then at the end
of that month", and the inactivity deadline; both in the program's time zone, across DST
changes, month ends and leap years. And the expiry policies validation refuses.

Amsterdam is UTC+1 (CET) in winter and UTC+2 (CEST) from the last Sunday of March to the
last Sunday of October; New York is UTC-5 (EST) and UTC-4 (EDT) from the second Sunday of
March to the first Sunday of November.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from loyalty_engine.rules import load_program_text
from loyalty_engine.rules.compiled import Expiry
from loyalty_engine.rules.diff import diff_programs
from loyalty_engine.rules.schema import ProgramDefinition
from loyalty_engine.services.jobs import Expire, Notices
from tests.unit.test_program_language import (
    PER_EURO,
    Bad,
    assert_refused_as,
    program_text,
    stamp_card,
)

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text + "+00:00")


# (months, zone, earned at (UTC), gone from (UTC), why)
END_OF_MONTH = [
    (6, AMS, "2026-01-15T09:00", "2026-07-31T22:00",
     "15 Jan 10:00 CET: 6 months run out on 15 July, gone at 1 Aug 00:00 CEST"),
    (6, AMS, "2026-01-31T22:30", "2026-07-31T22:00",
     "31 Jan 23:30 CET is still January locally: end of July as well"),
    (6, AMS, "2026-01-31T23:30", "2026-08-31T22:00",
     "00:30 CET on 1 Feb locally: the month of earning is February, gone 1 Sep 00:00 CEST"),
    (6, AMS, "2025-09-15T10:00", "2026-03-31T22:00",
     "earned in summer time, gone in summer time again: 1 Apr 2026 00:00 CEST"),
    (6, AMS, "2026-04-10T10:00", "2026-10-31T23:00",
     "October ends after the change back: 1 Nov 2026 00:00 CET"),
    (6, AMS, "2027-08-31T10:00", "2028-02-29T23:00",
     "31 Aug 2027 + 6 months: February 2028, a leap year, ends 29 Feb 24:00 CET"),
    (1, AMS, "2024-01-31T11:00", "2024-02-29T23:00",
     "31 Jan 2024 + 1 month: February 2024 has 29 days"),
    (12, AMS, "2025-02-28T11:00", "2026-02-28T23:00",
     "28 Feb 2025 + 12 months: February 2026 has 28 days, gone 1 Mar 00:00 CET"),
    (6, NYC, "2026-06-15T16:00", "2027-01-01T05:00",
     "15 Jun 12:00 EDT: December 2026, gone 1 Jan 2027 00:00 EST"),
    (6, NYC, "2026-02-01T04:30", "2026-08-01T04:00",
     "04:30Z on 1 Feb is 23:30 EST on 31 Jan: January + 6, gone 1 Aug 00:00 EDT"),
]


@pytest.mark.parametrize(("months", "zone", "earned", "gone", "why"), END_OF_MONTH,
                         ids=[case[-1] for case in END_OF_MONTH])
def test_n_months_then_end_of_month(months: int, zone: ZoneInfo, earned: str, gone: str,
                                    why: str) -> None:
    assert Expiry("months_end_of_month", months).at(utc(earned), zone) == utc(gone), why


# (months, zone, last activity (UTC), whole balance gone from (UTC), why)
INACTIVITY = [
    (18, AMS, "2025-01-15T09:30", "2026-07-15T08:30",
     "15 Jan 2025 10:30 CET + 18 months: 15 Jul 2026 10:30 CEST, the same local time"),
    (12, AMS, "2024-02-29T11:00", "2025-02-28T11:00",
     "29 Feb 2024 + 12 months: 28 Feb 2025 (no 29th), 12:00 CET"),
    (6, AMS, "2025-08-31T10:00", "2026-02-28T11:00",
     "31 Aug 2025 12:00 CEST + 6 months: 28 Feb 2026 12:00 CET"),
    (2, AMS, "2026-01-29T01:30", "2026-03-29T01:30",
     "29 Jan 02:30 CET + 2 months: 29 Mar 02:30 does not exist (clocks jump 02:00 to "
     "03:00); taken at the offset before the change, 01:30Z (03:30 CEST)"),
    (1, NYC, "2026-10-05T16:00", "2026-11-05T17:00",
     "5 Oct 12:00 EDT + 1 month: 5 Nov 12:00 EST"),
]


@pytest.mark.parametrize(("months", "zone", "last", "gone", "why"), INACTIVITY,
                         ids=[case[-1][:40] for case in INACTIVITY])
def test_inactivity_deadline(months: int, zone: ZoneInfo, last: str, gone: str,
                             why: str) -> None:
    assert Expiry("months", months).at(utc(last), zone) == utc(gone), why


@pytest.mark.parametrize(("earned", "first_gone"), [
    (date(2026, 1, 15), date(2026, 8, 1)),   # end of July
    (date(2027, 8, 31), date(2028, 3, 1)),   # end of February 2028 (29 days)
    (date(2026, 12, 1), date(2027, 7, 1)),   # December + 6: end of June
])
def test_stamps_n_months_then_end_of_month(earned: date, first_gone: date) -> None:
    assert Expiry("months_end_of_month", 6).first_lapsed_day(earned) == first_gone


@pytest.mark.parametrize(("section", "expiry", "inactivity"), [
    ("points:\n  expiry: {after_months: 6, then: end_of_month}\n",
     Expiry("months_end_of_month", 6), Expiry("never")),
    ("points:\n  expiry: {inactive_months: 18}\n", Expiry("never"), Expiry("months", 18)),
    ("points:\n  expiry: {after_months: 6, then: end_of_month, inactive_months: 5}\n",
     Expiry("months_end_of_month", 6), Expiry("months", 5)),
    ("points:\n  expiry: {after_months: 36, inactive_months: 12}\n",
     Expiry("months", 36), Expiry("months", 12)),
    ("points:\n  expiry: {end_of: year, inactive_months: 11}\n",
     Expiry("end_of_year"), Expiry("months", 11)),
    # 12 months are at least 336 days: a lot of 400 days can still lapse by inactivity.
    ("points:\n  expiry: {after_days: 400, inactive_months: 12}\n",
     Expiry("days", 400), Expiry("months", 12)),
    ("points:\n  expiry: {after_months: 6}\n", Expiry("months", 6), Expiry("never")),
])
def test_expiry_policies_compile(section: str, expiry: Expiry, inactivity: Expiry) -> None:
    compiled = load_program_text(program_text(PER_EURO, before_rewards=section)).compiled
    assert (compiled.expiry, compiled.inactivity) == (expiry, inactivity)


def _points(expiry: str) -> str:
    return program_text(PER_EURO, before_rewards=f"points:\n  expiry: {expiry}\n")


BAD = {
    "inactive_months below 1": Bad(
        _points("{inactive_months: 0}"), at="inactive_months", col="0",
        message="points.expiry.inactive_months: inactive_months 0 must be 1 to 1200: the "
                "months without earning or redeeming after which the whole balance lapses "
                "(for no inactivity expiry, leave it out)"),
    "then without after_months": Bad(
        _points("{then: end_of_month}"), at="then:", col="end_of_month",
        message="points.expiry.then: then: end_of_month rounds after_months up to the end of "
                "the month: give after_months too (e.g. {after_months: 6, then: "
                "end_of_month}), or use end_of: month"),
    "then with after_days only": Bad(
        _points("{after_days: 90, then: end_of_month}"), at="then:", col="end_of_month",
        prefix="points.expiry.then: then: end_of_month rounds after_months up"),
    "then end_of_year": Bad(
        _points("{after_months: 6, then: end_of_year}"), at="then:", col="end_of_year",
        message="points.expiry.then: Input should be 'end_of_month'"),
    "two per-lot policies with then": Bad(
        _points("{after_months: 6, then: end_of_month, end_of: year}"), at="then:",
        col="year",
        message="points.expiry.end_of: give one of after_days, after_months and end_of (or "
                "'never'), not after_months and end_of"),
    "inactivity no shorter than after_months": Bad(
        _points("{after_months: 6, then: end_of_month, inactive_months: 6}"), at="then:",
        col="6}",
        message="points.expiry.inactive_months: inactive_months 6 can never expire anything: "
                "with after_months 6 every point has lapsed before 6 months without activity "
                "can pass; give a shorter inactive_months or drop one of the two"),
    "inactivity beyond after_days": Bad(
        _points("{after_days: 30, inactive_months: 2}"), at="after_days", col="2}",
        contains=("inactive_months 2 can never expire anything", "with after_days 30")),
    "inactivity with end_of month": Bad(
        _points("{end_of: month, inactive_months: 1}"), at="end_of", col="1}",
        contains=("with end_of: month every point has lapsed",)),
    "inactivity of a year with end_of year": Bad(
        _points("{end_of: year, inactive_months: 12}"), at="end_of", col="12}",
        contains=("inactive_months 12 can never expire anything", "with end_of: year")),
    "inactivity on stamps": Bad(
        program_text(stamp_card("  stamps_expire: {inactive_months: 3}\n")),
        at="stamps_expire", col="3}",
        message="rules[0].stamps_expire.inactive_months: inactive_months applies to a points "
                "balance (points.expiry), not to stamps: give stamps_expire a per-stamp "
                "expiry or move it"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_expiry_is_refused_at_the_mistake(name: str) -> None:
    case = BAD[name]
    assert_refused_as(case)


@pytest.mark.parametrize(("before", "after", "settings"), [
    ("{after_months: 6}", "{after_months: 6, then: end_of_month}", [
        ("points.expiry.then", None, "end_of_month"),
        ("points.expiry", "6 months after earning",
         "at the end of the month in which 6 months after earning run out")]),
    ("never", "{inactive_months: 18}", [
        ("points.expiry.inactive_months", None, 18),
        ("points.expiry", "never",
         "never; the whole balance after 18 months without earning or redeeming")]),
    ("{after_days: 400, inactive_months: 12}", "{end_of: year, inactive_months: 6}", [
        ("points.expiry.after_days", 400, None),
        ("points.expiry.end_of", None, "year"),
        ("points.expiry.inactive_months", 12, 6),
        ("points.expiry",
         "400 days after earning; the whole balance after 12 months without earning or "
         "redeeming",
         "at the end of the year of earning; the whole balance after 6 months without "
         "earning or redeeming")]),
    # Without the new keys the diff is the fields alone, as before.
    ("never", "{after_months: 12}", [("points.expiry.after_months", None, 12)]),
])
def test_the_rules_diff_describes_expiry_policies(before: str, after: str,
                                                  settings: list[tuple[str, Any, Any]]
                                                  ) -> None:
    def definition(expiry: str) -> ProgramDefinition:
        return load_program_text(program_text(
            PER_EURO, before_rewards=f"points:\n  expiry: {expiry}\n")).definition

    diff = diff_programs(definition(before), definition(after))
    assert [(c.path, c.before, c.after) for c in diff.settings] == settings


@pytest.mark.parametrize(("expiry", "runs"), [
    ("{inactive_months: 12}", True),  # inactivity alone: the jobs have lapses to record
    ("{after_months: 6, then: end_of_month}", True),
    ("never", False),
])
def test_the_expire_and_notices_jobs_run_for_the_new_policies(expiry: str, runs: bool) -> None:
    # A program with only points rules and no rewards, tiers or groups: nothing else for
    # either job to do.
    compiled = load_program_text(program_text(
        PER_EURO, before_rewards=f"points:\n  expiry: {expiry}\n", rewards="rewards: []\n"
    )).compiled
    assert (Expire().applies(compiled), Notices().applies(compiled)) == (runs, runs)
