"""Period-end bonuses: visit and spend-threshold rules with `award: at_period_end` pay, once
a period has ended, every member whose counter reached them. Exactly once: each award is a
job effect under its natural key (program, job, member, rule:period), written first."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.domain.periods import period_end, period_key, start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.rules.compiled import NthVisit, SpendThreshold
from loyalty_engine.services.outbox import Event, record_events
from loyalty_engine.services.programs import versions_in_force
from loyalty_engine.services.rows import LEDGER_COLUMNS
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    Converters,
    allocate_ids,
    chunked,
    insert_if_absent,
    insert_rows,
    lock_rows,
)
from loyalty_engine.store.unit_of_work import write_use_case

JOB = "period_bonuses"

_counters = tables.progress_counters
_effects = tables.job_effects
_ledger = tables.ledger_entries
_lots = tables.point_lots
_debts = tables.point_debts
_balances = tables.balances


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
    """Points a job gives a member outside any purchase (a ledger entry and a lot)."""

    member_id: str
    program_id: str
    version_id: int
    rule_id: str
    points: int
    at: datetime
    expires_at: datetime | None
    reason: dict[str, Any]
    ref: str
    kind: str = "earn"  # "adjust": an operator's credit (services/adjustments.py)


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
        if not isinstance(rule, NthVisit | SpendThreshold) or not rule.at_period_end:
            continue
        visits = isinstance(rule, NthVisit)
        counter = f"{rule.rule_id}:{'visits' if visits else 'spend'}"
        need = rule.visit if isinstance(rule, NthVisit) else rule.threshold_minor
        query = (select(_counters.c.member_id, _counters.c.period, _counters.c.value)
                 .where(_counters.c.program_id == pid, _counters.c.counter == counter,
                        _counters.c.period < period_key(rule.period, today),
                        _counters.c.value >= need)
                 .order_by(_counters.c.period, _counters.c.member_id))
        if since is not None:
            query = query.where(_counters.c.period >= period_key(
                rule.period, local_day(program, since)))
        reached = conn.execute(query).all()
        if not reached:
            continue
        ends = {period: start_of_day(period_end(rule.period, period), program.timezone)
                for period in {r.period for r in reached}}
        effects = [{"program_id": pid, "job": JOB, "member_id": r.member_id,
                    "effect_key": f"{rule.rule_id}:{r.period}",
                    "detail": {"rule": rule.rule_id, "period": r.period,
                               "points": rule.points,
                               ("visits" if visits else "spend_minor"): int(r.value)},
                    "occurred_at": ends[r.period], "recorded_at": now} for r in reached]
        inserted = insert_if_absent(conn, _effects, effects, tables.JOB_EFFECT_KEY)
        if not inserted:
            continue
        grants = [Grant(
            e.member_id, pid, version.id, rule.rule_id, rule.points, e.occurred_at,
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
    """Write points given by a job, as a purchase's earnings are written: an `earn` ledger
    entry and a spendable lot each, outstanding point debts repaid first (oldest first,
    with a `debt` entry where the balance did not show the debt yet), and the balances.
    Bulk statements for all grants; members locked in id order first (PostgreSQL)."""
    if not grants:
        return
    conv = Converters(conn)
    members = sorted({g.member_id for g in grants})
    lock_rows(conn, tables.members, "member_id", members)
    ids = allocate_ids(conn, _ledger, len(grants))
    insert_rows(conn, _ledger, LEDGER_COLUMNS, [
        (eid, g.member_id, g.program_id, g.version_id, g.kind, g.points, None, g.rule_id,
         conv.when(g.at), conv.when(now), Converters.json(g.reason), g.ref)
        for eid, g in zip(ids, grants, strict=True)])
    debts: defaultdict[tuple[str, str], list[list[Any]]] = defaultdict(list)
    for part in chunked(members):
        for debt_id, member_id, program_id, outstanding, in_balance in conn.execute(
            select(_debts.c.id, _debts.c.member_id, _debts.c.program_id,
                   _debts.c.outstanding, _debts.c.in_balance)
            .where(_debts.c.member_id.in_(part), _debts.c.outstanding > 0)
            .order_by(_debts.c.id)
        ):
            debts[(member_id, program_id)].append([debt_id, int(outstanding), bool(in_balance)])
    lots, repaid, debt_entries = [], [], []
    balance: defaultdict[tuple[str, str], int] = defaultdict(int)
    lifetime: defaultdict[tuple[str, str], int] = defaultdict(int)
    for eid, g in zip(ids, grants, strict=True):
        pair = (g.member_id, g.program_id)
        remaining = g.points
        for debt in debts.get(pair, ()):
            taken = min(remaining, debt[1])
            if taken <= 0:
                continue
            debt[1] -= taken
            remaining -= taken
            repaid.append((debt[0], taken))
            if debt[2]:
                balance[pair] += taken  # the balance already showed the debt
            else:
                debt_entries.append((g, debt[0], eid, taken))
        lots.append((eid, g.member_id, g.program_id, conv.when(g.at), g.points, remaining,
                     conv.when(g.expires_at), None))
        balance[pair] += remaining
        # Lifetime earned counts earnings only (db check compares it with the earn entries):
        # an operator's credit is not earned.
        lifetime[pair] += g.points if g.kind == "earn" else 0
    insert_rows(conn, _lots, ("entry_id", "member_id", "program_id", "earned_at", "points",
                              "remaining", "expires_at", "pending_until"), lots)
    debt_ids = allocate_ids(conn, _ledger, len(debt_entries))
    insert_rows(conn, _ledger, LEDGER_COLUMNS, [
        (did, g.member_id, g.program_id, g.version_id, "debt", -taken, None, "",
         conv.when(g.at), conv.when(now),
         Converters.json({"debt_id": debt_id, "repaid_from_entry": eid}),
         f"debt:{debt_id}:{eid}")
        for did, (g, debt_id, eid, taken) in zip(debt_ids, debt_entries, strict=True)])
    for debt_id, taken in repaid:
        conn.execute(_debts.update().where(_debts.c.id == debt_id)
                     .values(outstanding=_debts.c.outstanding - taken))
    insert_rows(
        conn, _balances,
        ("member_id", "program_id", "points", "pending", "lifetime_earned", "updated_at"),
        [(m, p, balance[(m, p)], 0, lifetime[(m, p)], conv.when(now))
         for m, p in sorted(lifetime)],
        on_conflict=["member_id", "program_id"],
        update={"points": "balances.points + excluded.points",
                "lifetime_earned": "balances.lifetime_earned + excluded.lifetime_earned",
                "updated_at": "excluded.updated_at"})
