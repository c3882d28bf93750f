"""The scheduler's heart, shared by `scheduler tick` and `scheduler run`: which jobs are due
for which program up to an instant (from watermarks and cron schedules), running them in
time order, each fire time in one transaction with its watermark, and job failures kept
to retry."""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, and_, select, text, tuple_
from sqlalchemy.engine import make_url

from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.rules.schedules import JOBS
from loyalty_engine.scheduler.cron import cron_trigger, fire_times, latest_fire
from loyalty_engine.services.jobs import BY_NAME, Due, Job, Outcome
from loyalty_engine.services.programs import load_catalog, require_program
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_rows
from loyalty_engine.store.database import write_transaction
from loyalty_engine.store.errors import describe_failure
from loyalty_engine.store.unit_of_work import in_write_unit

log = logging.getLogger("loyalty.scheduler")

_marks = tables.scheduler_watermarks
_failures = tables.job_failures

# How far back a job that has never run looks for its latest fire time.
FIRST_RUN_LOOKBACK = timedelta(days=400)
# Any number that no other user of the database's advisory locks picks: "LOYALTY".
_ADVISORY_KEY = 0x4C4F59414C5459
ALL_MEMBERS = "*"


class BackwardsTickError(LoyaltyError):
    """A tick asked to run up to an instant before where a job has already run."""


class SchedulerBusyError(LoyaltyError):
    """Another scheduler holds the database's scheduler lock (and we were told not to wait)."""


@dataclass(slots=True)
class JobRun:
    """What one job did at one fire time for one program (or why it failed)."""

    program_id: str
    job: str
    fire: datetime
    counts: dict[str, Any] = field(default_factory=dict)
    member_failures: list[tuple[str, str, str]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"program_id": self.program_id, "job": self.job,
                "fire_time": self.fire.isoformat(), "counts": self.counts,
                "member_failures": [{"member_id": m, "key": k, "reason": r}
                                    for m, k, r in self.member_failures],
                "error": self.error, "seconds": round(self.seconds, 3)}

    def totals(self) -> dict[str, int]:
        """The run's counts as numbers (per-program maps summed), for logs and metrics."""
        return _flat(self.counts)

    def summary(self) -> str:
        """One log line of counts."""
        if self.error is not None:
            return f"FAILED: {self.error}"
        shown = ", ".join(f"{k} {v}" for k, v in _flat(self.counts).items() if v) or "nothing"
        if self.member_failures:
            shown += f"; {len(self.member_failures)} member(s) failed, retried next run"
        return shown


@dataclass(slots=True)
class TickReport:
    """Everything a tick ran, in order; what would run, on a dry run."""

    as_of: datetime
    dry_run: bool
    runs: list[JobRun] = field(default_factory=list)
    waited_for_lock: bool = False
    ahead: list[str] = field(default_factory=list)  # jobs that have already run past as_of

    @property
    def failed(self) -> int:
        """Job runs that failed as a whole."""
        return sum(1 for r in self.runs if r.error is not None)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"as_of": self.as_of.isoformat(), "dry_run": self.dry_run,
                "waited_for_lock": self.waited_for_lock, "ahead": self.ahead,
                "runs": [r.as_json() for r in self.runs], "failed": self.failed,
                "member_failures": sum(len(r.member_failures) for r in self.runs)}


def _flat(counts: dict[str, Any]) -> dict[str, Any]:
    """Counts for a log line: numbers only, per-program maps summed."""
    flat: dict[str, Any] = {}
    for key, value in counts.items():
        if isinstance(value, dict):
            value = sum(v for v in value.values() if isinstance(v, int))
        if isinstance(value, int) and not isinstance(value, bool):
            flat[key] = value
    return flat


# --- which jobs apply to a program ----------------------------------------------------------

def schedules(catalog: ProgramCatalog, at: datetime, job: str | None = None,
              program_id: str | None = None) -> list[tuple[VersionInForce, str, str]]:
    """(version, job, cron) of every job that applies to a program in force at `at`."""
    found = []
    for version in catalog.all_in_force(at):
        if program_id is not None and version.program_id != program_id:
            continue
        for name, scheduled in BY_NAME.items():
            if (job is None or job == name) and scheduled.applies(version.program):
                found.append((version, name, version.program.schedule.get(
                    name, scheduled.spec.default_cron)))
    return found


# --- running ----------------------------------------------------------------------------------

def plan(conn: Connection, catalog: ProgramCatalog, as_of: datetime, job: str | None,
         program_id: str | None, dry_run: bool, strict: bool = True,
         ahead: list[str] | None = None) -> list[tuple[Due, VersionInForce]]:
    """Every (fire time, job, program) due up to as_of, in the order they must run: by
    fire time, then job order. A job never run before runs once, at its latest fire time
    (the steps catch up what they find); after that every missed fire time runs, in
    order, except for jobs whose effects are dated by the data (coalesced to the latest).

    A job that has already run past as_of has nothing due: when as_of was asked for
    (strict) that is an error, since the caller expected it to run; when it is simply now
    (a tick from cron, the long-running scheduler) the job is skipped and named in
    `ahead`."""
    marks = {(r.program_id, r.job): r.ran_to for r in conn.execute(select(_marks))}
    found: list[tuple[Due, VersionInForce]] = []
    behind = []
    for version, name, cron in schedules(catalog, as_of, job, program_id):
        trigger = cron_trigger(cron, version.program.timezone)
        mark = marks.get((version.program_id, name))
        if mark is not None and as_of < mark:
            behind.append(f"{name} of {version.program_id} has run up to {mark.isoformat()}")
            continue
        if mark is None:
            last = latest_fire(trigger, as_of, FIRST_RUN_LOOKBACK)
            fires = [] if last is None else [last]
        else:
            fires = fire_times(trigger, mark, as_of)
            if JOBS[name].coalesce:
                fires = fires[-1:]
        previous = mark
        for fire in fires:
            # The job's effects are computed on the version in force at its fire time
            # (none before the program's first), from this tick's one catalog.
            at_fire = catalog.in_force(version.program_id, fire)
            found.append((Due(fire, name, version.program_id, previous,
                              () if at_fire is None else (at_fire,)), version))
            previous = fire
    if behind and strict and not dry_run:
        more = f" and {len(behind) - 1} more job(s)" if len(behind) > 1 else ""
        raise BackwardsTickError(
            f"--as-of {as_of.isoformat()} is before where the scheduler has already run "
            f"({behind[0]}{more}); the scheduler cannot go back in time, so give a later "
            "instant, tick with --dry-run (which writes nothing), or move a watermark set "
            "by mistake back with `loyalty scheduler rewind`")
    if ahead is not None:
        ahead.extend(behind)
    order = list(JOBS)
    found.sort(key=lambda d: (d[0].fire, order.index(d[0].job), d[0].program_id))
    return found


def run_tick(engine: Engine, as_of: datetime, now: Callable[[], datetime],
             job: str | None = None, program_id: str | None = None,
             dry_run: bool = False, wait: bool = True,
             on_run: Callable[[JobRun], None] | None = None,
             on_wait: Callable[[], None] | None = None, strict: bool = True) -> TickReport:
    """Run everything due up to as_of once, in order. Each fire time of each job commits
    with its watermark in one transaction, so a process killed half-way leaves every job
    either done and marked or not done at all, and a rerun finishes the rest. A job that
    fails for a program records the failure and holds its watermark (retried next run);
    other jobs carry on. A dry run rolls every job back and moves nothing. strict: a job
    that has already run past as_of is an error (see `plan`), else it is reported ahead.
    The catalog is loaded once, here: the planner hands each job its version."""
    report = TickReport(as_of, dry_run)
    with _scheduler_lock(engine, wait and not dry_run, dry_run, on_wait) as waited:
        report.waited_for_lock = waited
        with engine.connect() as conn:
            catalog = load_catalog(conn)
            require_program(catalog, program_id)
            due = plan(conn, catalog, as_of, job, program_id, dry_run, strict, report.ahead)
        if dry_run:
            # One transaction, rolled back at the end: each job (a savepoint of it) sees
            # what the jobs before it would have done, and nothing stays.
            with write_transaction(engine) as trial:
                _run_all(report, due, lambda work: _in_savepoint(trial, work), now, on_run,
                         dry_run=True, engine=engine)
                trial.rollback()
        else:
            _run_all(report, due, lambda work: in_write_unit(engine, work), now, on_run,
                     dry_run=False, engine=engine)
    return report


# How a fire time's work is run: in a unit of its own (committed, retried whole after a
# deadlock) or in a savepoint of the dry run's one transaction.
RunIn = Callable[[Callable[[Connection], Outcome]], Outcome]


def _in_savepoint(conn: Connection, work: Callable[[Connection], Outcome]) -> Outcome:
    with conn.begin_nested():
        return work(conn)


def _run_all(report: TickReport, due: list[tuple[Due, VersionInForce]], run_in: RunIn,
             now: Callable[[], datetime], on_run: Callable[[JobRun], None] | None, *,
             dry_run: bool, engine: Engine) -> None:
    broken: set[tuple[str, str]] = set()
    for item, version in due:
        if (item.program_id, item.job) in broken:
            continue
        run = _run_one(engine, BY_NAME[item.job], version, item, now, run_in, dry_run)
        if run.error is not None:
            broken.add((item.program_id, item.job))
        report.runs.append(run)
        if on_run is not None:
            on_run(run)


def _run_one(engine: Engine, job: Job, version: VersionInForce, item: Due,
             now: Callable[[], datetime], run_in: RunIn, dry_run: bool) -> JobRun:
    run = JobRun(item.program_id, item.job, item.fire)
    started = time.perf_counter()

    def fire(conn: Connection) -> Outcome:
        # The job, its failures and its watermark: one unit of work.
        stamp = now()
        outcome = job.run(conn, version, item, stamp)
        _keep_failures(conn, item, outcome.member_failures, stamp)
        _advance(conn, item, stamp)
        return outcome

    try:
        outcome = run_in(fire)
        run.counts, run.member_failures = outcome.counts, outcome.member_failures
    except Exception as error:  # a job's failure must not stop the other jobs
        run.error = describe_failure(error)
        log.error("job %s of %s at %s failed: %s", item.job, item.program_id,
                  item.fire.isoformat(), run.error)
        log.debug("the failure of %s of %s in full", item.job, item.program_id,
                  exc_info=True)
        if not dry_run:
            failure = [(ALL_MEMBERS, item.fire.isoformat(), run.error)]
            in_write_unit(engine, lambda conn: _keep_failures(conn, item, failure, now(),
                                                              whole=True))
    run.seconds = time.perf_counter() - started
    return run


def _keep_failures(conn: Connection, item: Due, failures: list[tuple[str, str, str]],
                   now: datetime, whole: bool = False) -> None:
    """Record this run's failures (again: attempts + 1) and, after a run that got through,
    resolve the job's earlier failures that did not happen again."""
    if failures:
        insert_rows(conn, _failures, (
            "program_id", "job", "member_id", "failure_key", "reason", "as_of", "attempts",
            "first_failed_at", "last_failed_at", "resolved_at"),
            [(item.program_id, item.job, member, key[:160], reason, item.fire, 1, now, now,
              None) for member, key, reason in failures],
            on_conflict=["program_id", "job", "member_id", "failure_key"],
            update={"reason": "excluded.reason", "as_of": "excluded.as_of",
                    "attempts": "job_failures.attempts + 1",
                    "last_failed_at": "excluded.last_failed_at", "resolved_at": "NULL"})
    if whole:
        return
    still = [(m, k[:160]) for m, k, _ in failures]
    resolve = and_(_failures.c.program_id == item.program_id, _failures.c.job == item.job,
                   _failures.c.resolved_at.is_(None))
    if still:
        resolve = and_(resolve, tuple_(_failures.c.member_id, _failures.c.failure_key)
                       .not_in(still))
    conn.execute(_failures.update().where(resolve).values(resolved_at=now))


def _advance(conn: Connection, item: Due, now: datetime) -> None:
    insert_rows(conn, _marks, ("program_id", "job", "ran_to", "runs", "updated_at"),
                [(item.program_id, item.job, item.fire, 1, now)],
                on_conflict=["program_id", "job"],
                update={"ran_to": "excluded.ran_to", "runs": "scheduler_watermarks.runs + 1",
                        "updated_at": "excluded.updated_at"})


# --- one scheduler at a time -------------------------------------------------------------------

@contextmanager
def _scheduler_lock(engine: Engine, wait: bool, dry_run: bool,
                    on_wait: Callable[[], None] | None) -> Iterator[bool]:
    """Hold the database's scheduler lock (yields whether we had to wait for it): a
    PostgreSQL advisory lock of our session, or a lock on a file beside the SQLite file;
    either is released by the system when the process dies, even by SIGKILL. A dry run
    writes nothing and takes no lock."""
    if dry_run:
        yield False
        return
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                               {"k": _ADVISORY_KEY}).scalar()
            conn.commit()
            if not got:
                if not wait:
                    raise SchedulerBusyError(
                        "another scheduler is running jobs on this database; try again when "
                        "it has finished")
                if on_wait is not None:
                    on_wait()
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
                conn.commit()
            try:
                yield not got
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                conn.commit()
        return
    path = Path(str(make_url(str(engine.url)).database) + ".scheduler-lock")
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            if not wait:
                raise SchedulerBusyError(
                    f"another scheduler is running jobs on this database (it holds {path}); "
                    "try again when it has finished") from None
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = True
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- moving a watermark back ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Watermark:
    """How far one job of one program has run."""

    program_id: str
    job: str
    ran_to: datetime


def watermarks_after(engine: Engine, to: datetime, job: str | None = None,
                     program_id: str | None = None) -> list[Watermark]:
    """The watermarks a rewind to `to` would move back: those past it."""
    with engine.connect() as conn:
        return [Watermark(r.program_id, r.job, r.ran_to)
                for r in conn.execute(_watermark_query(select(_marks), to, job, program_id)
                                      .order_by(_marks.c.program_id, _marks.c.job))]


def rewind_watermarks(engine: Engine, to: datetime, now: datetime, job: str | None = None,
                      program_id: str | None = None, wait: bool = True) -> list[Watermark]:
    """Move back to `to` every watermark past it (of one job, one program, or all), so the
    scheduler runs from there again: for a watermark set ahead by mistake. What the jobs
    did stays done; their effects have natural keys, so running those fire times again
    writes nothing twice. Under the scheduler lock, so a running tick is not overtaken.
    Returns the watermarks as they were."""
    with _scheduler_lock(engine, wait, False, None), write_transaction(engine) as conn:
        rows = [Watermark(r.program_id, r.job, r.ran_to) for r in conn.execute(
            _watermark_query(select(_marks), to, job, program_id))]
        if rows:
            conn.execute(_watermark_query(_marks.update(), to, job, program_id)
                         .values(ran_to=to, updated_at=now))
    return sorted(rows, key=lambda w: (w.program_id, w.job))


def _watermark_query(statement: Any, to: datetime, job: str | None,
                     program_id: str | None) -> Any:
    statement = statement.where(_marks.c.ran_to > to)
    if job is not None:
        statement = statement.where(_marks.c.job == job)
    if program_id is not None:
        statement = statement.where(_marks.c.program_id == program_id)
    return statement


# --- reading the scheduler's state ---------------------------------------------------------

def scheduler_status(engine: Engine, as_of: datetime) -> list[dict[str, Any]]:
    """Every job of every program in force: its schedule, how far it has run, and when
    it fires next."""
    with engine.connect() as conn:
        catalog = load_catalog(conn)
        marks = {(r.program_id, r.job): r for r in conn.execute(select(_marks))}
        open_failures: dict[tuple[str, str], int] = {}
        for row in conn.execute(select(_failures.c.program_id, _failures.c.job)
                                .where(_failures.c.resolved_at.is_(None))):
            key = (row.program_id, row.job)
            open_failures[key] = open_failures.get(key, 0) + 1
    found = []
    for version, name, cron in schedules(catalog, as_of):
        trigger = cron_trigger(cron, version.program.timezone)
        mark = marks.get((version.program_id, name))
        next_fire = trigger.get_next_fire_time(
            None, (mark.ran_to if mark is not None else as_of) + timedelta(seconds=1))
        found.append({"program_id": version.program_id, "job": name, "cron": cron,
                      "timezone": str(version.program.timezone),
                      "ran_to": None if mark is None else mark.ran_to,
                      "runs": 0 if mark is None else int(mark.runs),
                      "next_fire": next_fire,
                      "open_failures": open_failures.get((version.program_id, name), 0)})
    return found


def job_failures(engine: Engine, include_resolved: bool = False) -> list[dict[str, Any]]:
    """Recorded job failures, newest first (open ones only unless asked)."""
    query = select(_failures).order_by(_failures.c.last_failed_at.desc(), _failures.c.id)
    if not include_resolved:
        query = query.where(_failures.c.resolved_at.is_(None))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
