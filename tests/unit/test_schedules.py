"""The scheduler's pure parts: cron overrides in program files (refused at file:line:col),
fire times (in order, across DST changes, never the same instant twice), period ends, the
first stamp day still to lapse, and rules awarded at period end (counted by the purchase,
paid by the scheduler)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty_engine.domain.periods import period_end, period_key
from loyalty_engine.engine.earning import evaluate
from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.rules.compiled import Expiry
from loyalty_engine.rules.schedules import JOBS, check_cron, job_name
from loyalty_engine.scheduler.cron import cron_trigger, fire_times, latest_fire, next_fire
from loyalty_engine.services.reward_expiry import earliest_lapsing

from .builders import purchase

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

BASE = """\
program: shop
name: Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
"""
RULE = """\
rules:
  - id: fifth
    kind: nth_visit
    visit: 2
    period: month
    points: 50
    award: at_period_end
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "shop.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(("cron", "column", "message"), [
    ('"0 3 1 *"', 17, "'0 3 1 *' is not a cron schedule: give five fields"),
    ('"0 3 1 * 1"', 17, "write the day of week of '0 3 1 * 1' as names (mon, tue, ..., sun"),
    ('"61 3 1 * *"', 17, "'61 3 1 * *' is not a valid cron schedule: Error validating "
                         "expression '61'"),
    ('"0 3 1 foo *"', 17, "'0 3 1 foo *' is not a valid cron schedule"),
])
def test_a_bad_cron_override_is_refused_at_its_value(cron: str, column: int,
                                                      message: str) -> None:
    text = BASE + f"schedule:\n  review_tiers: {cron}\n" + RULE
    [problem] = problems_of(text)
    assert problem.startswith(f"shop.yaml:7:{column}: schedule.review_tiers: "), problem
    assert message in problem


def test_an_unknown_job_in_a_schedule_and_a_bad_notice_horizon_are_refused() -> None:
    found = problems_of(BASE + "schedule:\n  reviews: '0 3 1 * *'\n  notice_days: 0\n" + RULE)
    assert "shop.yaml:7:3: schedule: unknown key 'reviews'" in found, found
    assert any(p.startswith("shop.yaml:8:16: schedule.notice_days:") for p in found), found


def test_overrides_replace_only_the_jobs_they_name() -> None:
    program = load_program_text(
        BASE + "schedule:\n  review_tiers: '0 4 1 jan *'\n  notice_days: 14\n" + RULE
    ).compiled
    assert program.schedule["review_tiers"] == "0 4 1 jan *"
    assert program.schedule["clubs"] == JOBS["clubs"].default_cron
    assert program.notice_days == 14


@pytest.mark.parametrize("extra", [
    "    group: g\n  - id: other\n    kind: fixed_bonus\n    points: 1\n    group: g\n",
    "    caps: {per_month: 50}\n",
])
def test_a_period_end_rule_cannot_be_grouped_or_capped(extra: str) -> None:
    [problem] = problems_of(BASE + RULE + extra)
    assert "awarded at period end" in problem and problem.startswith("shop.yaml:1")


def test_a_period_end_rule_counts_the_visit_but_pays_nothing_at_the_purchase() -> None:
    program = load_program_text(BASE + RULE).compiled
    progress: dict[tuple[str, str], int] = {}
    for day in ("2026-03-02", "2026-03-09"):
        bought = purchase([("BAG", "goods", "1", "10.00")],
                          occurred_at=f"{day}T10:00:00+01:00")
        assert evaluate(program, bought, None, progress).awards == []
    assert progress[("fifth:visits", "2026-03")] == 2
    assert ("fifth:awarded", "2026-03") not in progress


# The parts a crontab field is made of, valid and not: numbers in and out of every range,
# steps (0 too), ranges either way round, month and weekday names (good, bad, a prefix),
# `last`, empty parts and stray characters.
_PART = st.one_of(
    st.sampled_from(["*", "last", "lastly", "", "?", "L", "1st", "#", "jan1", "-", "/5"]),
    st.from_regex(r"\A\*/[0-9]{1,3}\Z"),
    st.from_regex(r"\A[0-9]{1,2}(-[0-9]{1,2})?(/[0-9]{1,2})?\Z"),
    st.from_regex(r"\A(jan|feb|dec|mon|fri|sun|foo|Mar|SAT)(-(jan|nov|mon|sat|bar|Tue))?\Z"),
)
_FIELD = st.lists(_PART, min_size=1, max_size=3).map(",".join)


def _apscheduler_says(expression: str) -> str | None:
    try:
        CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as error:
        return str(error)
    return None


def _check_says(expression: str) -> str | None:
    try:
        check_cron(expression)
    except ValueError as error:
        return str(error)
    return None


@settings(max_examples=600, deadline=None)
@given(st.tuples(_FIELD, _FIELD, _FIELD, _FIELD, _FIELD.filter(
    lambda f: not any(c.isdigit() for c in f))))
def test_the_pure_cron_check_refuses_what_apscheduler_refuses_with_its_message(
        fields: tuple[str, str, str, str, str]) -> None:
    # The core checks a program's crons without APScheduler; the scheduler adapter then
    # parses them. The two must agree on every expression, and on the first fault found.
    expression = " ".join(fields)
    if not all(fields):  # an empty field is a missing one: fewer than five
        assert _check_says(expression) is not None
        return
    theirs = _apscheduler_says(expression)
    ours = _check_says(expression)
    if theirs is None:
        assert ours is None, (expression, ours)
    else:
        assert ours == f"{expression!r} is not a valid cron schedule: {theirs}", expression


@pytest.mark.parametrize("expression", [
    "0 3 1 * *", "*/15 * * * *", "0 0 last * *", "0 9 * * mon-fri", "0 4 1 jan *",
    "0 0 1/30 * *", "0-0/5 * * * *", "5 4 * jan-dec sun", "0 0 * * *,sat",
])
def test_the_pure_cron_check_and_the_trigger_accept_the_same(expression: str) -> None:
    check_cron(expression)
    assert cron_trigger(expression, AMSTERDAM) is not None


def test_job_names_accept_hyphens_and_refuse_unknown_ones() -> None:
    assert job_name("review-tiers") == "review_tiers"
    with pytest.raises(ValueError, match="there is no job 'nope'; the jobs are activate"):
        job_name("nope")


def test_fire_times_are_in_order_in_utc_and_bounded() -> None:
    monthly = cron_trigger("0 3 1 * *", AMSTERDAM)
    fires = fire_times(monthly, datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
                       datetime(2027, 4, 1, 1, 0, tzinfo=UTC))
    assert [f.isoformat() for f in fires] == [
        "2027-01-01T02:00:00+00:00", "2027-02-01T02:00:00+00:00",
        "2027-03-01T02:00:00+00:00", "2027-04-01T01:00:00+00:00"]  # summer time in April
    # The window is (after, until]: the fire at `after` itself is not repeated.
    assert fire_times(monthly, fires[0], fires[0]) == []
    hourly = cron_trigger("0 * * * *", AMSTERDAM)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert len(fire_times(hourly, start, start + timedelta(days=400), limit=10)) == 10
    assert latest_fire(monthly, datetime(2027, 1, 15, tzinfo=UTC), timedelta(days=400)) == \
        fires[0]
    assert latest_fire(cron_trigger("0 3 1 jan *", AMSTERDAM),
                       datetime(2027, 6, 1, tzinfo=UTC), timedelta(days=30)) is None


def test_fire_times_never_repeat_an_instant_across_a_dst_change() -> None:
    hourly = cron_trigger("0 * * * *", AMSTERDAM)
    autumn = fire_times(hourly, datetime(2025, 10, 25, 22, 30, tzinfo=UTC),
                        datetime(2025, 10, 26, 4, 30, tzinfo=UTC))
    assert [f.strftime("%H:%M") for f in autumn] == [
        "23:00", "00:00", "01:00", "02:00", "03:00", "04:00"]  # UTC: the 02:00 hour twice
    spring = fire_times(hourly, datetime(2026, 3, 28, 23, 30, tzinfo=UTC),
                        datetime(2026, 3, 29, 3, 30, tzinfo=UTC))
    assert [f.astimezone(AMSTERDAM).strftime("%H:%M") for f in spring] == [
        "01:00", "03:00", "04:00", "05:00"]  # 02:00 does not exist that night
    assert all(b > a for a, b in pairwise(autumn))
    after = next_fire(hourly, autumn[2])
    assert after is not None and after > autumn[2]


@pytest.mark.parametrize(("period", "day", "end"), [
    ("day", date(2026, 3, 31), date(2026, 4, 1)),
    ("week", date(2026, 12, 31), date(2027, 1, 4)),  # ISO week 2026-W53
    ("month", date(2026, 12, 5), date(2027, 1, 1)),
    ("quarter", date(2026, 5, 5), date(2026, 7, 1)),
    ("year", date(2026, 5, 5), date(2027, 1, 1)),
])
def test_a_period_ends_on_the_day_after_its_last(period: str, day: date, end: date) -> None:
    assert period_end(period, period_key(period, day)) == end


@pytest.mark.parametrize("expiry", [
    Expiry("days", 30), Expiry("months", 6), Expiry("end_of_month"), Expiry("end_of_year")])
def test_earliest_lapsing_is_the_first_stamp_day_whose_lapse_is_still_to_come(
    expiry: Expiry,
) -> None:
    for after in (date(2026, 1, 31), date(2026, 2, 28), date(2026, 12, 31)):
        first = earliest_lapsing(expiry, after)
        lapses = expiry.first_lapsed_day(first)
        assert lapses is not None and lapses > after
        before = expiry.first_lapsed_day(first - timedelta(days=1))
        assert before is not None and before <= after


def test_every_job_spec_has_its_job_object_in_the_same_order() -> None:
    from loyalty_engine.services.jobs import BY_NAME

    assert list(BY_NAME) == list(JOBS)
    assert all(job.spec is JOBS[name] for name, job in BY_NAME.items())
