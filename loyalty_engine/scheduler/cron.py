"""Cron schedules as APScheduler 3 triggers, and their fire times in UTC (safe across DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from loyalty_engine.rules.schedules import check_cron

# Catch-up never enumerates more fire times than this per program and job in one tick
# (ten years of a daily job); a schedule that fires more often than that is coalesced.
MAX_FIRES = 4000


def cron_trigger(expression: str, zone: ZoneInfo) -> CronTrigger:
    """A standard five-field crontab expression (minute hour day month weekday) as a
    trigger in the program's time zone; refused as `check_cron` refuses it (program files
    were checked so when loaded)."""
    check_cron(expression)
    try:
        return CronTrigger.from_crontab(expression, timezone=zone)
    except ValueError as error:  # a backstop: check_cron follows APScheduler's grammar
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
