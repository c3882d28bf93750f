"""Period-end bonuses: visit and spend-threshold rules with `award: at_period_end` pay, once
a period has ended, every member whose counter reached them. Exactly once: each award is a
job effect under its natural key (program, job, member, rule:period), written first."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from loyalty_engine import ledger
from loyalty_engine.domain.periods import key_end, start_of_day
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.services.programs import versions_in_force
from loyalty_engine.services.rebates import ended_periods
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_if_absent, lock_rows
from loyalty_engine.store.locks import read_with_members_locked
from loyalty_engine.store.unit_of_work import write_use_case

JOB = "period_bonuses"

_counters = tables.progress_counters
_effects = tables.job_effects
_ledger = tables.ledger_entries


@dataclass(slots=True)
class BonusResult:
    """What a run awarded: bonuses and points, by program and rule."""

    awarded: int = 0
    points: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)  # "program/rule" -> awards

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"awarded": self.awarded, "points": self.points, "by_rule": self.by_rule}


@dataclass(frozen=True, slots=True)
class Grant:
    """Points a job gives a member outside any purchase (earned through the ledger)."""

    member_id: str
    program_id: str
    version_id: int
    rule_id: str
    points: int
    at: datetime
    expires_at: datetime | None
    reason: dict[str, Any]
    ref: str


@write_use_case
def award_period_bonuses(conn: Connection, as_of: datetime, now: datetime,
                         program_id: str | None = None,
                         since: datetime | None = None, *,
                         versions: list[VersionInForce] | None = None) -> BonusResult:
    """Award every at-period-end bonus of the periods that ended by as_of (and, given
    `since`, after the period holding since's local day: what an earlier run has not
    looked at). Set-based per rule: one read of the counters that reached the rule, one
    insert-if-absent of the effects, and bulk writes of what was inserted."""
    result = BonusResult()
    for version in versions_in_force(conn, as_of, program_id, versions):
        _award_program(conn, version, as_of, now, since, result)
    return result


def _award_program(conn: Connection, version: VersionInForce, as_of: datetime,
                   now: datetime, since: datetime | None, result: BonusResult) -> None:
    program = version.program
    pid = version.program_id
    today = local_day(program, as_of)
    for rule in program.rules:
        award = rule.period_end_award  # what its kind counts, and how much it needs
        if award is None:
            continue
        query = (select(_counters.c.member_id, _counters.c.period, _counters.c.value)
                 .where(_counters.c.program_id == pid, _counters.c.counter == award.counter,
                        _counters.c.value >= award.need,
                        # a membership year ends with each member's own year
                        *ended_periods(_counters.c.period, award.period, today,
                                       None if since is None else local_day(program, since)))
                 .order_by(_counters.c.period, _counters.c.member_id))
        reached = read_with_members_locked(conn, query)
        if not reached:
            continue
        ends = {period: start_of_day(key_end(award.period, period), program.timezone)
                for period in {r.period for r in reached}}
        effects = [{"program_id": pid, "job": JOB, "member_id": r.member_id,
                    "effect_key": f"{rule.rule_id}:{r.period}",
                    "detail": {"rule": rule.rule_id, "period": r.period,
                               "points": award.points, award.detail: int(r.value)},
                    "occurred_at": ends[r.period], "recorded_at": now} for r in reached]
        inserted = insert_if_absent(conn, _effects, effects, tables.JOB_EFFECT_KEY)
        if not inserted:
            continue
        grants = [Grant(
            e.member_id, pid, version.id, rule.rule_id, award.points, e.occurred_at,
            program.expiry.at(e.occurred_at, program.timezone),
            {"kind": rule.kind, "award": "at_period_end", **e.detail},
            _ref(pid, e.effect_key, e.member_id)) for e in inserted]
        grant_points(conn, grants, now)
        record_events(conn, [Event(
            f"bonus:{pid}:{g.member_id}:{g.rule_id}:{g.reason['period']}", "reward_issued",
            g.member_id, pid, g.at,
            {"rule": g.rule_id, "kind": "points", "points": g.points,
             "period": g.reason["period"]}) for g in grants], now)
        result.awarded += len(grants)
        result.points += sum(g.points for g in grants)
        result.by_rule[f"{pid}/{rule.rule_id}"] = (
            result.by_rule.get(f"{pid}/{rule.rule_id}", 0) + len(grants))


def _ref(program_id: str, effect_key: str, member_id: str) -> str:
    ref = f"bonus:{program_id}:{effect_key}:{member_id}"
    if len(ref) <= 160:
        return ref
    return "bonus:" + hashlib.sha256(ref.encode()).hexdigest()


def grant_points(conn: Connection, grants: list[Grant], now: datetime) -> None:
    """Earn the points given by a job, as a purchase's are earned (loyalty_engine/ledger:
    an `earn` entry and a spendable lot each, debts repaid first, the balances), members
    locked in id order first (PostgreSQL)."""
    if not grants:
        return
    lock_rows(conn, tables.members, "member_id", sorted({g.member_id for g in grants}))
    ledger.earn(conn, [ledger.Earning(g.member_id, g.program_id, g.version_id, g.points,
                                      g.at, g.expires_at, g.reason, g.rule_id, ref=g.ref)
                       for g in grants], now)


@dataclass(slots=True)
class BonusRefund:
    """Period-end bonuses a return took back: points per program, and of them owed."""

    points: dict[str, int] = field(default_factory=dict)
    debts: dict[str, int] = field(default_factory=dict)


def take_back_bonuses(conn: Connection, catalog: ProgramCatalog, member_id: str,
                      refund_pk: int, changed: dict[tuple[str, str, str], int],
                      at: datetime, now: datetime, *, refund_id: str = "",
                      store_id: str = "") -> BonusRefund:
    """A return lowered counters (changed: (program, counter, period) -> delta, already
    written). A period-end bonus already paid for such a period whose count or spend is
    now below what the rule needs is taken back whole, once (a job effect
    `rule:period:taken_back` is its natural key), through the ledger: from the bonus's own
    lot, then other lots; what was spent already is owed under the program's
    refund_shortfall, as a refund's points are."""
    result = BonusRefund()
    for (program_id, counter, period), delta in sorted(changed.items()):
        if delta >= 0:
            continue
        rule_id = counter.rsplit(":", 1)[0]
        effect_key = f"{rule_id}:{period}"
        entry = conn.execute(
            select(_ledger.c.id, _ledger.c.program_version_id, _ledger.c.points)
            .where(_ledger.c.ref == _ref(program_id, effect_key, member_id),
                   _ledger.c.kind == "earn")).first()
        if entry is None:
            continue  # not awarded (yet): the job will judge the lowered count
        program = catalog.version(entry.program_version_id).program
        rule = program.rule(rule_id)
        award = None if rule is None else rule.period_end_award
        if award is None or award.counter != counter:
            continue
        value = int(conn.execute(select(func.coalesce(func.sum(_counters.c.value), 0)).where(
            _counters.c.member_id == member_id, _counters.c.program_id == program_id,
            _counters.c.counter == counter, _counters.c.period == period)).scalar_one())
        if value >= award.need:
            continue
        if not insert_if_absent(conn, _effects, [{
                "program_id": program_id, "job": JOB, "member_id": member_id,
                "effect_key": f"{effect_key}:taken_back",
                "detail": {"rule": rule_id, "period": period, "refund": refund_pk,
                           award.detail: value, "need": award.need},
                "occurred_at": at, "recorded_at": now}], tables.JOB_EFFECT_KEY):
            continue
        points = int(entry.points)
        own = ledger.take_from_lot(conn, entry.id, points)
        taken = ([own] if own else []) + ledger.take_points(
            conn, member_id, program_id, points - (own.points if own else 0), at,
            skip_entry=entry.id)
        took = sum(t.points for t in taken)
        shortfall = points - took
        in_balance = program.refund_shortfall == "negative_balance"
        spendable = -sum(t.points for t in taken if not t.pending)
        pending = -sum(t.points for t in taken if t.pending)
        if shortfall:
            ledger.record_debts(conn, [ledger.NewDebt(member_id, program_id, refund_pk,
                                                      points, shortfall, in_balance)], now)
            result.debts[program_id] = result.debts.get(program_id, 0) + shortfall
            if in_balance:
                spendable -= shortfall
        booked = points if in_balance else took
        ledger.append(conn, [ledger.Entry(
            member_id, program_id, entry.program_version_id, "refund", -booked, at,
            # As a refund's entries say it (domain/ledger_reasons.py), with the bonus's need.
            {"refund_id": refund_id, "store_id": store_id, "earned_entry": entry.id,
             "rule": rule_id, "period": period, award.detail: value, "need": award.need,
             "from_lots": {str(t.entry_id): t.points for t in taken},
             **({"shortfall": shortfall} if shortfall else {})},
            f"refund:{refund_pk}:{entry.id}", rule_id)], now)
        ledger.change_balances(conn, {(member_id, program_id): (spendable, pending)}, now)
        result.points[program_id] = result.points.get(program_id, 0) + booked
    return result
