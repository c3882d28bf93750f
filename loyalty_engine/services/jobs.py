"""The scheduler's jobs as objects: whether a job has anything to do for a program, and one
run of it at one fire time, inside the caller's transaction, on the version the planner chose."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.schedules import JOBS, JobSpec
from loyalty_engine.services.analytics_members import take_snapshot
from loyalty_engine.services.clubs import advance_clubs
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.notices import send_notices
from loyalty_engine.services.period_bonuses import award_period_bonuses
from loyalty_engine.services.points import activate_pending
from loyalty_engine.services.rebates import issue_rebates
from loyalty_engine.services.tiers import review_tiers

# (member id, failure key, reason) of each member a run could not do, retried next run.
MemberFailure = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Due:
    """One job of one program to run at one fire time; since: the previous fire time done;
    versions: the program's version in force at the fire time (none before its first),
    which the job works on, chosen by the planner from the tick's one catalog."""

    fire: datetime
    job: str
    program_id: str
    since: datetime | None
    versions: tuple[VersionInForce, ...] = ()


@dataclass(slots=True)
class Outcome:
    """What one run did: its counts (as the report shows them) and the members it failed."""

    counts: dict[str, Any]
    member_failures: list[MemberFailure]


class Job(ABC):
    """A scheduler job: its spec (name, default cron, coalescing), whether it applies to a
    program, and one run in the caller's unit of work (the fire time's transaction, with
    its watermark; a savepoint of a dry run's)."""

    name: str

    @property
    def spec(self) -> JobSpec:
        """The job's name, default cron and whether its catch-up coalesces."""
        return JOBS[self.name]

    @abstractmethod
    def applies(self, program: CompiledProgram) -> bool:
        """Whether the job has anything to do for the program at all."""

    @abstractmethod
    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        """Run the job at due.fire for due.program_id; version: the one in force at the
        tick (its settings), due.versions: the one the effects are computed on."""


class Activate(Job):
    """Pending points whose return window ended become spendable."""

    name = "activate"

    def applies(self, program: CompiledProgram) -> bool:
        return program.pending_days > 0

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = activate_pending(conn, due.fire, due.program_id)
        return Outcome({"lots": done.lots, "points": done.points, "members": done.members}, [])


class Expire(Job):
    """Points, stamps and vouchers past their expiry."""

    name = "expire"

    def applies(self, program: CompiledProgram) -> bool:
        return (program.expiry.kind != "never" or bool(program.rewards)
                or "expire" in program.rule_jobs or program.inactivity.kind != "never")

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = expire_due(conn, due.fire, now, due.program_id, due.since,
                          versions=list(due.versions))
        return Outcome(done.as_json(), [])


class PeriodBonuses(Job):
    """Visit and spend-threshold bonuses awarded at the end of their period."""

    name = "period_bonuses"

    def applies(self, program: CompiledProgram) -> bool:
        return "period_bonuses" in program.rule_jobs

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = award_period_bonuses(conn, due.fire, now, due.program_id, due.since,
                                    versions=list(due.versions))
        return Outcome({"bonuses": done.awarded, "points": done.points,
                        "by_rule": done.by_rule}, [])


class Rebates(Job):
    """Periodic rebates of ended periods as vouchers."""

    name = "rebates"

    def applies(self, program: CompiledProgram) -> bool:
        return "rebates" in program.rule_jobs

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = issue_rebates(conn, due.fire, now, due.program_id, due.since,
                             versions=list(due.versions))
        amount = done.amount_minor(due.program_id)
        # The currency only beside an amount: a run that issued nothing counts nothing.
        return Outcome({"vouchers": done.vouchers, "amount_minor": amount,
                        **({"currency": version.program.currency} if amount else {})}, [])


class ReviewTiers(Job):
    """Tier reviews, missed ones caught up; a member that fails alone is kept to retry."""

    name = "review_tiers"

    def applies(self, program: CompiledProgram) -> bool:
        return program.tiers is not None

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = review_tiers(conn, due.fire, now, due.program_id, versions=list(due.versions))
        pid = due.program_id
        counts = {"reviewed": done.reviewed.get(pid, 0), "upgraded": done.upgraded.get(pid, 0),
                  "downgraded": done.downgraded.get(pid, 0), "held": done.held.get(pid, 0),
                  "manual_floors_ended": done.floors_ended.get(pid, 0),
                  "review_days": done.review_days.get(pid, [])}
        return Outcome(counts, [(member, day, why) for _, member, day, why in done.failures])


class Clubs(Job):
    """Fee renewals, grace and lapse; affinity eligibility lapse."""

    name = "clubs"

    def applies(self, program: CompiledProgram) -> bool:
        return bool(program.clubs) or bool(program.groups)

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = advance_clubs(conn, due.fire, now, due.program_id, versions=list(due.versions))
        return Outcome({**done.as_json(), "household_members_ended": done.households_ended},
                       [])


class Notices(Job):
    """Advance notices: points expiring, tiers that will drop, verifications due."""

    name = "notices"

    def applies(self, program: CompiledProgram) -> bool:
        return (program.expiry.kind != "never" or program.tiers is not None
                or bool(program.groups) or program.inactivity.kind != "never")

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        done = send_notices(conn, due.fire, now, version.program.notice_days, due.program_id,
                            versions=list(due.versions))
        return Outcome(dict(done.recorded), [])


class RfmSnapshot(Job):
    """Every purchasing member's RFM scores and segment stored under the fire's local date,
    once per date; a member whose segment moved since their previous snapshot gets a
    segment_changed event. Every program has members to measure."""

    name = "rfm_snapshot"

    def applies(self, program: CompiledProgram) -> bool:
        return True

    def run(self, conn: Connection, version: VersionInForce, due: Due,
            now: datetime) -> Outcome:
        run_date = due.fire.astimezone(version.program.timezone).date()
        done = take_snapshot(conn, due.program_id, due.fire, run_date, now,
                             versions=list(due.versions) or None)
        return Outcome(done.as_json(), [])


# Every job by name, in the order jobs run when they are due at the same instant.
BY_NAME: dict[str, Job] = {job.name: job for job in (
    Activate(), Expire(), PeriodBonuses(), Rebates(), ReviewTiers(), Clubs(), Notices(),
    RfmSnapshot())}
