"""Periodic rebates: once a month, quarter or year has ended, each member's accrued share
of its spend becomes a voucher, capped, exactly once (the voucher code is its natural key)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.domain.periods import period_end, period_key, start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.records.memberships import household_owners
from loyalty_engine.rules.compiled import PeriodicRebate
from loyalty_engine.services.programs import versions_in_force
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_if_absent
from loyalty_engine.store.unit_of_work import write_use_case

_counters = tables.progress_counters
_vouchers = tables.vouchers


@dataclass(slots=True)
class ProgramRebates:
    """The rebate vouchers issued now in one program, and their total in its currency."""

    currency: str
    vouchers: int = 0
    amount_minor: int = 0


@dataclass(slots=True)
class RebateResult:
    """What issuing rebates did: vouchers written now, and their totals program by program
    (amounts of two programs may be in two currencies, so they are never added)."""

    vouchers: int = 0
    by_program: dict[str, ProgramRebates] = field(default_factory=dict)
    codes: list[str] = field(default_factory=list)

    def amount_minor(self, program_id: str) -> int:
        """The total issued in one program, in minor units of its currency."""
        found = self.by_program.get(program_id)
        return 0 if found is None else found.amount_minor

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"vouchers": self.vouchers, "by_program": {
            pid: {"vouchers": p.vouchers, "amount_minor": p.amount_minor,
                  "currency": p.currency} for pid, p in self.by_program.items()},
            "codes": self.codes}


def rebate_code(program_id: str, rule_id: str, period: str, member_id: str) -> str:
    """The voucher code of a member's rebate for a period: its natural key."""
    code = f"{program_id}-{rule_id}-{period}-{member_id}"
    if len(code) <= 160:
        return code
    digest = hashlib.sha256(code.encode()).hexdigest()[:32]
    return f"{program_id[:40]}-{rule_id[:40]}-{period}-{digest}"


@write_use_case
def issue_rebates(conn: Connection, as_of: datetime, now: datetime,
                  program_id: str | None = None,
                  since: datetime | None = None, *,
                  versions: list[VersionInForce] | None = None) -> RebateResult:
    """Turn every ended period's accrued rebate spend into a voucher (percent of the spend,
    rounded half up to a minor unit, at most the cap), dated at the period's end and
    valid for the rule's valid_days. Given `since` (the scheduler's last run), only the
    periods from the one holding since's local day on are read. Set-based per rule: one
    read of the ended periods' counters and one insert-if-absent; safe to run again, by
    two processes at once."""
    result = RebateResult()
    for version in versions_in_force(conn, as_of, program_id, versions):
        program = version.program
        today = local_day(program, as_of)
        for rule in program.rules_of(PeriodicRebate):
            current = period_key(rule.period, today)
            query = (
                select(_counters.c.member_id, _counters.c.period, _counters.c.value)
                .where(_counters.c.program_id == version.program_id,
                       _counters.c.counter == f"{rule.rule_id}:spend",
                       _counters.c.period < current, _counters.c.value > 0)
                .order_by(_counters.c.period, _counters.c.member_id))
            if since is not None:
                query = query.where(_counters.c.period >= period_key(
                    rule.period, local_day(program, since)))
            rows: Sequence[Any] = conn.execute(query).all()
            if any(lv.household_max for c in program.clubs.values() for lv in c.levels):
                # A household's secondaries accrue their spend to the primary's rebate.
                rows = household_owners(
                    conn, version.program_id, rows,
                    lambda instant, period=rule.period, here=program: period_key(
                        period, local_day(here, instant)))
            vouchers = []
            for member_id, period, spend in rows:
                amount = rule.rebate(int(spend))
                if amount <= 0:
                    continue
                ends = start_of_day(period_end(rule.period, period),
                                    program.timezone)
                vouchers.append({
                    "code": rebate_code(version.program_id, rule.rule_id, period,
                                        member_id),
                    "member_id": member_id, "program_id": version.program_id,
                    "program_version_id": version.id, "reward_id": rule.rule_id,
                    "kind": "fixed_amount", "amount_minor": amount, "percent": None,
                    "sku": None, "category": None, "source": "rebate",
                    "purchase_id": None, "rule_id": rule.rule_id,
                    "consumed": {"period": period, "spend_minor": int(spend),
                                 "percent": _percent(rule),
                                 "cap_minor": rule.cap_minor},
                    "issued_at": ends, "valid_until": ends + timedelta(
                        days=rule.valid_days),
                    "status": "issued", "redeemed_by": None, "changed_at": now})
            if not vouchers:
                continue
            written = insert_if_absent(conn, _vouchers, vouchers, ("code",))
            record_events(conn, [Event(
                f"reward:{w.code}", "reward_issued", w.member_id, version.program_id,
                w.issued_at,
                {"voucher": w.code, "rule": rule.rule_id, "kind": "fixed_amount",
                 "amount_minor": int(w.amount_minor), "currency": program.currency,
                 "valid_until": w.valid_until.isoformat(),
                 "period": (w.consumed or {}).get("period")})
                for w in written], now)
            result.vouchers += len(written)
            issued = result.by_program.setdefault(
                version.program_id, ProgramRebates(program.currency))
            issued.vouchers += len(written)
            issued.amount_minor += sum(int(w.amount_minor) for w in written)
            result.codes.extend(sorted(w.code for w in written))
    return result


def _percent(rule: PeriodicRebate) -> str:
    """The rule's percentage as written (1, 2.5)."""
    value = rule.percent * 100
    return format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
