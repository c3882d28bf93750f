"""The port between our jobs and APScheduler 3: one cron job per program and job (from the
programs in force, re-derived at start and whenever the programs change), each firing a
tick of that job alone; a clock that can be set ahead for tests and replays."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from loyalty_engine.scheduler.cron import cron_trigger, next_fire
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.scheduling import JobRun, TickReport, run_tick, schedules
from loyalty_engine.store.errors import describe_failure

log = logging.getLogger("loyalty.scheduler")

# A job that could not start on time (the process was busy or asleep) still runs if it is
# at most this late; later than that, the next tick's catch-up covers it anyway.
MISFIRE_GRACE_SECONDS = 6 * 3600


@dataclass(frozen=True, slots=True)
class Clock:
    """Time as the scheduler sees it: the real clock, shifted by a fixed offset."""

    offset: timedelta = timedelta(0)

    @classmethod
    def starting_at(cls, instant: datetime | None) -> Clock:
        """A clock that reads `instant` now and runs on at real speed (None: real time)."""
        return cls() if instant is None else cls(instant - datetime.now(UTC))

    def now(self) -> datetime:
        """The current instant on this clock."""
        return datetime.now(UTC) + self.offset


class ShiftedTrigger(BaseTrigger):  # type: ignore[misc]
    """A cron trigger read on a shifted clock: APScheduler waits in real time for the
    real instant that the clock shows as the cron's fire time."""

    def __init__(self, inner: CronTrigger, offset: timedelta) -> None:
        self.inner = inner
        self.offset = offset

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        # After the previous fire time, or from now on: through our next_fire, which never
        # answers the same instant twice (around a DST fall-back APScheduler 3 can).
        after = (previous_fire_time if previous_fire_time is not None
                 else now - timedelta(microseconds=1))
        fire = next_fire(self.inner, after + self.offset)
        return None if fire is None else fire - self.offset

    def __str__(self) -> str:
        return f"{self.inner} shifted by {self.offset}"


class SchedulerPort:
    """Our jobs on APScheduler: coalesced, one instance of each at a time, a generous
    misfire grace, and one worker thread (jobs of a database run one after another)."""

    def __init__(self, engine: Engine, clock: Clock,
                 on_run: Callable[[JobRun], None], refresh_seconds: float = 60) -> None:
        self.engine = engine
        self.clock = clock
        self.on_run = on_run
        self.refresh_seconds = refresh_seconds
        self._registered: dict[str, str] = {}  # APScheduler job id -> cron and zone
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": MISFIRE_GRACE_SECONDS})

    def catch_up(self) -> TickReport:
        """Run everything due up to the clock's now (what was missed while down)."""
        # Not strict: a job whose watermark is past now (a rehearsal ticked ahead) simply
        # has nothing due until the clock reaches it.
        return run_tick(self.engine, self.clock.now(), self.clock.now, on_run=self.on_run,
                        on_wait=_waiting, strict=False)

    def register(self) -> int:
        """(Re-)derive the jobs from the programs in force now; returns how many changed."""
        with self.engine.connect() as conn:
            catalog = load_catalog(conn)
        wanted: dict[str, tuple[str, str, Any]] = {}
        for version, job, cron in schedules(catalog, self.clock.now()):
            zone = version.program.timezone
            wanted[f"{version.program_id}:{job}"] = (f"{cron} {zone}", job, (
                version.program_id, cron_trigger(cron, zone)))
        changed = 0
        for job_id in set(self._registered) - set(wanted):
            self._scheduler.remove_job(job_id)
            del self._registered[job_id]
            changed += 1
        for job_id, (signature, job, (program_id, trigger)) in sorted(wanted.items()):
            if self._registered.get(job_id) == signature:
                continue
            self._scheduler.add_job(
                self._fire, ShiftedTrigger(trigger, self.clock.offset), args=(job, program_id),
                id=job_id, name=job_id, replace_existing=True)
            self._registered[job_id] = signature
            log.info("scheduled %s of %s: %s", job, program_id, signature)
            changed += 1
        return changed

    def start(self) -> None:
        """Register every job, start firing them in the background, then catch up to now.
        In that order: a fire time that passes while the catch-up runs is after the
        scheduler's start, so APScheduler fires it (and the watermark makes whichever of
        the two comes second find it done); catching up first would lose it."""
        self.register()
        self._scheduler.add_job(self._refresh, IntervalTrigger(seconds=self.refresh_seconds),
                                id="refresh-programs", name="refresh-programs")
        self._scheduler.start()
        self.catch_up()

    def stop(self) -> None:
        """Stop firing; wait for a running job to finish (its transaction commits)."""
        self._scheduler.shutdown(wait=True)

    def next_fires(self) -> list[tuple[str, datetime]]:
        """(job id, next fire time on this clock) of every registered job."""
        return sorted((job.id, job.next_run_time + self.clock.offset)
                      for job in self._scheduler.get_jobs()
                      if job.id in self._registered and job.next_run_time is not None)

    def _fire(self, job: str, program_id: str) -> None:
        try:
            run_tick(self.engine, self.clock.now(), self.clock.now, job=job,
                     program_id=program_id, on_run=self.on_run, on_wait=_waiting,
                     strict=False)
        except Exception as error:  # the process lives on: the next fire (or start) catches up
            log.error("%s of %s could not run: %s", job, program_id, describe_failure(error))
            log.debug("why %s of %s could not run", job, program_id, exc_info=True)

    def _refresh(self) -> None:
        try:
            if self.register():
                log.info("programs changed: jobs re-registered")
        except Exception as error:
            log.error("could not re-read the programs (%s); keeping the current jobs",
                      describe_failure(error))


def _waiting() -> None:
    log.info("another scheduler is running jobs on this database; waiting for it")
