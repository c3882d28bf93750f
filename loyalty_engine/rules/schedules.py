"""The scheduler's jobs, their default cron schedules, and the fire times of a schedule."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger


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
)}

# Catch-up never enumerates more fire times than this per program and job in one tick
# (ten years of a daily job); a schedule that fires more often than that is coalesced.
MAX_FIRES = 4000

_NUMERIC_WEEKDAY = re.compile(r"\d")


def job_name(raw: str) -> str:
    """A job's canonical name ('review-tiers' and 'review_tiers' both name review_tiers)."""
    name = raw.strip().lower().replace("-", "_")
    if name not in JOBS:
        raise ValueError(f"there is no job {raw!r}; the jobs are {', '.join(JOBS)}")
    return name


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A standard five-field crontab expression (minute hour day month weekday) as a
    trigger in the program's time zone. Weekdays must be names (mon-sun): numbers mean
    different days in different cron dialects (APScheduler 3 counts 0 as Monday)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron schedule: give five fields, minute hour "
            f"day-of-month month day-of-week, e.g. '0 3 1 * *'")
    if _NUMERIC_WEEKDAY.search(fields[4]):
        raise ValueError(
            f"write the day of week of {expression!r} as names (mon, tue, ..., sun, or "
            f"mon-fri): numbers mean different days in different cron dialects")
    try:
        return CronTrigger.from_crontab(expression, timezone=zone)
    except ValueError as error:
        raise ValueError(f"{expression!r} is not a valid cron schedule: {error}") from None


def next_fire(trigger: CronTrigger, after: datetime) -> datetime | None:
    """The first fire time strictly after `after`, in UTC. (In UTC because two local times
    in the repeated hour of a DST fall-back compare equal when they share a zone; and
    APScheduler 3 can answer the same instant again there, so we probe on past it.)"""
    after = after.astimezone(UTC)
    probe = after + timedelta(microseconds=1)
    step = timedelta(seconds=1)
    for _ in range(64):
        found: datetime | None = trigger.get_next_fire_time(None, probe)
        if found is None:
            return None
        fire = found.astimezone(UTC)
        if fire > after:
            return fire
        probe = max(probe, fire) + step
        step *= 2
    raise RuntimeError(f"no fire time of {trigger} after {after.isoformat()}")


def fire_times(trigger: CronTrigger, after: datetime, until: datetime,
               limit: int = MAX_FIRES) -> list[datetime]:
    """The fire times in (after, until], oldest first, at most `limit` of the latest."""
    fires: list[datetime] = []
    fire = next_fire(trigger, after)
    while fire is not None and fire <= until:
        fires.append(fire)
        if len(fires) > limit:
            del fires[0]
        fire = next_fire(trigger, fire)
    return fires


def latest_fire(trigger: CronTrigger, until: datetime, lookback: timedelta) -> datetime | None:
    """The last fire time at or before `until` within `lookback` (None if there is none).
    Looks back a day, then a month, then all of it: an hourly cron is found at once."""
    for span in (timedelta(days=1), timedelta(days=32), lookback):
        fires = fire_times(trigger, until - min(span, lookback), until, limit=1)
        if fires:
            return fires[-1]
    return None
