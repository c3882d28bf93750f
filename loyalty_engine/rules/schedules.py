"""The scheduler's jobs, their default cron schedules, and the syntax of a cron schedule."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job the scheduler runs per program: its default cron (program time) and whether a
    catch-up may run it once at the latest due time (its effects are dated by the data, not
    by the run) instead of once per missed fire time, in order."""

    name: str
    default_cron: str
    coalesce: bool
    does: str


# In the order jobs run when they are due at the same instant.
JOBS: dict[str, JobSpec] = {spec.name: spec for spec in (
    JobSpec("activate", "0 * * * *", True, "pending points become spendable"),
    JobSpec("expire", "0 1 * * *", True, "points, stamps and vouchers past their expiry"),
    JobSpec("period_bonuses", "30 2 * * *", False,
            "visit and spend-threshold bonuses awarded at the end of their period"),
    JobSpec("rebates", "30 2 * * *", False, "periodic rebates of ended periods as vouchers"),
    JobSpec("review_tiers", "0 3 1 * *", False, "tier reviews (catches up missed ones)"),
    JobSpec("clubs", "0 4 * * *", False,
            "fee renewals, grace and lapse; affinity eligibility lapse"),
    JobSpec("notices", "0 9 * * *", True,
            "advance notices: points expiring, tiers that will drop, verifications due"),
    JobSpec("rfm_snapshot", "0 5 * * mon", False,
            "RFM scores and segments stored per member once per run date; moves as events"),
)}

_NUMERIC_WEEKDAY = re.compile(r"\d")


def job_name(raw: str) -> str:
    """A job's canonical name ('review-tiers' and 'review_tiers' both name review_tiers)."""
    name = raw.strip().lower().replace("-", "_")
    if name not in JOBS:
        raise ValueError(f"there is no job {raw!r}; the jobs are {', '.join(JOBS)}")
    return name


def check_cron(expression: str) -> None:
    """Refuse what is not a standard five-field crontab expression (minute hour day month
    weekday) that the scheduler can run, with the message APScheduler 3 would give.
    Weekdays must be names (mon-sun): numbers mean different days in different cron
    dialects (APScheduler 3 counts 0 as Monday). The syntax only, checked here so that a
    program file is refused at load time without the core importing the scheduler; the
    scheduler adapter (loyalty_engine/scheduler/cron.py) parses it into a trigger."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron schedule: give five fields, minute hour "
            f"day-of-month month day-of-week, e.g. '0 3 1 * *'")
    if _NUMERIC_WEEKDAY.search(fields[4]):
        raise ValueError(
            f"write the day of week of {expression!r} as names (mon, tue, ..., sun, or "
            f"mon-fri): numbers mean different days in different cron dialects")
    minute, hour, day, month, weekday = fields
    try:
        # In APScheduler's order (month first, minute last), so the first fault is its.
        for name, value in (("month", month), ("day", day), ("day_of_week", weekday),
                            ("hour", hour), ("minute", minute)):
            for part in _SEPARATOR.split(value.strip()):
                _check_part(name, part)
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a valid cron schedule: {error}") from None


# --- APScheduler 3's crontab field grammar, without APScheduler ------------------------------
# (apscheduler/triggers/cron/fields.py and expressions.py: the same patterns, tried in the
# same order per field, the same ranges and the same messages; tests/unit/test_schedules.py
# compares the two on generated expressions.)

_MIN = {"month": 1, "day": 1, "day_of_week": 0, "hour": 0, "minute": 0}
_MAX = {"month": 12, "day": 31, "day_of_week": 6, "hour": 23, "minute": 59}
_SEPARATOR = re.compile(" *, *")
_ALL = re.compile(r"\*(?:/(?P<step>\d+))?$")
_RANGE = re.compile(r"(?P<first>\d+)(?:-(?P<last>\d+))?(?:/(?P<step>\d+))?$")
_NAMES = re.compile(r"(?P<first>[a-z]+)(?:-(?P<last>[a-z]+))?", re.IGNORECASE)
_LAST = re.compile(r"last", re.IGNORECASE)
_WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _check_part(name: str, part: str) -> None:
    """One comma-separated part of a field, as APScheduler's compile_expression checks it."""
    found = _ALL.match(part)
    if found:
        _check_step(found["step"])
        _validate(part, name, None, None, found["step"])
        return
    found = _RANGE.match(part)
    if found:
        first, last, step = found["first"], found["last"], found["step"]
        _check_step(step)
        low = int(first)
        high = int(last) if last is not None else (low if step is None else None)
        if high is not None and low > high:
            raise ValueError("The minimum value in a range must not be higher than the maximum")
        _validate(part, name, low, high, step)
        return
    if name in ("month", "day_of_week"):
        found = _NAMES.match(part)
        if found:
            names, what = (_MONTHS, "month") if name == "month" else (_WEEKDAYS, "weekday")
            base = 1 if name == "month" else 0
            numbers = []
            for given in (found["first"], found["last"]):
                if given:
                    if given.lower() not in names:
                        raise ValueError(f'Invalid {what} name "{given}"')
                    numbers.append(names.index(given.lower()) + base)
            low, high = numbers[0], numbers[-1]
            if low > high:
                raise ValueError("The minimum value in a range must not be higher than the maximum")
            _validate(part, name, low, high, None)
            return
    # (APScheduler's day field also takes "2nd fri", which needs a space: no crontab field
    # can hold one.)
    if name == "day" and _LAST.match(part):
        return
    raise ValueError(f'Unrecognized expression "{part}" for field "{name}"')


def _check_step(step: str | None) -> None:
    if step is not None and int(step) == 0:
        raise ValueError("Increment must be higher than 0")


def _validate(part: str, name: str, low: int | None, high: int | None,
              step: str | None) -> None:
    """A part's values within the field's range (low None: `*`), as validate_range checks."""
    try:
        _check_range(name, low, high, None if step is None else int(step))
    except ValueError as error:
        raise ValueError(f"Error validating expression {part!r}: {error}") from None


def _check_range(name: str, low: int | None, high: int | None, step: int | None) -> None:
    span = _MAX[name] - _MIN[name]
    if step is not None and step > span:
        raise ValueError(f"the step value ({step}) is higher than the total range of the "
                         f"expression ({span})")
    if low is None:
        return
    if low < _MIN[name]:
        raise ValueError(
            f"the first value ({low}) is lower than the minimum value ({_MIN[name]})")
    if high is not None and high > _MAX[name]:
        raise ValueError(
            f"the last value ({high}) is higher than the maximum value ({_MAX[name]})")
    # As APScheduler reckons it: a last value of 0 counts as none (the field's maximum).
    span = (high or _MAX[name]) - low
    if step is not None and step > span:
        raise ValueError(f"the step value ({step}) is higher than the total range of the "
                         f"expression ({span})")
