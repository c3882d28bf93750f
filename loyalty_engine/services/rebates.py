"""Periodic rebates: once a month, quarter, year or membership year has ended, each
member's accrued share of its spend becomes a voucher, capped, exactly once (the voucher
code is its natural key); a return after that takes its share back (an unused voucher is
replaced by a smaller one, a used one leaves a rebate debt that the next rebate repays)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, func, select

from loyalty_engine.domain.periods import (
    MEMBERSHIP_YEAR_END_AT,
    is_membership_year,
    key_end,
    period_key,
    start_of_day,
)
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.records.memberships import household_owners, household_spend
from loyalty_engine.rules.compiled import PeriodicRebate
from loyalty_engine.services.programs import versions_in_force
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import chunked, insert_if_absent
from loyalty_engine.store.locks import lock_member, read_with_members_locked
from loyalty_engine.store.unit_of_work import write_use_case

_counters = tables.progress_counters
_vouchers = tables.vouchers
_debts = tables.rebate_debts


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
            query = (
                select(_counters.c.member_id, _counters.c.period, _counters.c.value)
                .where(_counters.c.program_id == version.program_id,
                       _counters.c.counter == f"{rule.rule_id}:spend",
                       _counters.c.value > 0)
                .order_by(_counters.c.period, _counters.c.member_id))
            query = query.where(*ended_periods(_counters.c.period, rule.period, today,
                                               None if since is None
                                               else local_day(program, since)))
            rows: Sequence[Any] = read_with_members_locked(conn, query)
            if program.has_households and not is_membership_year(rule.period):
                # A household's secondaries accrue their spend to the primary's rebate (on
                # calendar periods: a membership year is each member's own).
                rows = household_owners(
                    conn, version.program_id, rows,
                    lambda instant, period=rule.period, here=program: period_key(
                        period, local_day(here, instant)))
            owed = _owed(conn, version.program_id, rule.rule_id,
                         sorted({member for member, _, _ in rows}))
            vouchers = []
            repaying: dict[str, list[tuple[int, int]]] = {}
            for member_id, period, spend in rows:
                amount = rule.rebate(int(spend))
                if amount <= 0:
                    continue
                ends = start_of_day(key_end(rule.period, period), program.timezone)
                code = rebate_code(version.program_id, rule.rule_id, period, member_id)
                # What the member owes from an earlier period's used voucher comes off
                # this one (applied only if this voucher is written now).
                repaid = _take_owed(owed.get(member_id, []), period, amount)
                if repaid:
                    repaying[code] = repaid
                    amount -= sum(part for _, part in repaid)
                vouchers.append({
                    "code": code,
                    "member_id": member_id, "program_id": version.program_id,
                    "program_version_id": version.id, "reward_id": rule.rule_id,
                    "kind": "fixed_amount", "amount_minor": amount, "percent": None,
                    "sku": None, "category": None, "source": "rebate",
                    "purchase_id": None, "rule_id": rule.rule_id,
                    "consumed": {"period": period, "spend_minor": int(spend),
                                 "percent": _percent(rule),
                                 "cap_minor": rule.cap_minor,
                                 **({"debt_repaid_minor": sum(p for _, p in repaid)}
                                    if repaid else {})},
                    "issued_at": ends, "valid_until": ends + timedelta(
                        days=rule.valid_days),
                    # A voucher the debt took whole is kept (void) as the period's mark.
                    "status": "issued" if amount > 0 else "void", "redeemed_by": None,
                    "changed_at": now})
            if not vouchers:
                continue
            inserted = insert_if_absent(conn, _vouchers, vouchers, ("code",))
            _repay(conn, [(w.code, part) for w in inserted
                          for part in repaying.get(w.code, ())])
            written = [w for w in inserted if w.status == "issued"]
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


def ended_periods(column: Any, period: str, today: date, since: date | None) -> list[Any]:
    """SQL conditions on a counter's period key: the period has ended by today (and, given
    since, had not ended before since's day: what an earlier run has not looked at). A
    membership year's end is read from its key, so each member's own year is judged in the
    one statement."""
    if is_membership_year(period):
        end = func.substr(column, MEMBERSHIP_YEAR_END_AT, 10)
        found = [end <= today.isoformat()]
        if since is not None:
            found.append(end > since.isoformat())
        return found
    found = [column < period_key(period, today)]
    if since is not None:
        found.append(column >= period_key(period, since))
    return found


def _owed(conn: Connection, program_id: str, rule_id: str,
          member_ids: list[str]) -> dict[str, list[list[Any]]]:
    """Outstanding rebate debts of these members for a rule, oldest first: [id, period,
    outstanding] each (one statement per chunk of members; usually nobody owes)."""
    found: dict[str, list[list[Any]]] = {}
    if not member_ids or conn.execute(
            select(_debts.c.id).where(_debts.c.program_id == program_id,
                                      _debts.c.rule_id == rule_id,
                                      _debts.c.outstanding_minor > 0).limit(1)).first() is None:
        return found
    for part in chunked(member_ids):
        for debt_id, member_id, period, outstanding in conn.execute(
                select(_debts.c.id, _debts.c.member_id, _debts.c.period,
                       _debts.c.outstanding_minor)
                .where(_debts.c.program_id == program_id, _debts.c.rule_id == rule_id,
                       _debts.c.member_id.in_(part), _debts.c.outstanding_minor > 0)
                .order_by(_debts.c.id)):
            found.setdefault(member_id, []).append([int(debt_id), period, int(outstanding)])
    return found


def _take_owed(debts: list[list[Any]], period: str, amount: int) -> list[tuple[int, int]]:
    """(debt id, minor units) this period's voucher repays, oldest debt first; a debt is
    repaid only by a later period's rebate (never by the one it was owed on)."""
    taken: list[tuple[int, int]] = []
    for debt in debts:
        if amount == 0:
            break
        debt_id, owed_on, outstanding = debt
        if owed_on >= period or outstanding == 0:
            continue
        part = min(outstanding, amount)
        debt[2] -= part
        amount -= part
        taken.append((debt_id, part))
    return taken


def _repay(conn: Connection, parts: list[tuple[str, tuple[int, int]]]) -> None:
    """Debts shrink by what the vouchers written now repaid (one executemany)."""
    if not parts:
        return
    conn.execute(
        _debts.update().where(_debts.c.id == bindparam("debt"))
        .values(outstanding_minor=_debts.c.outstanding_minor - bindparam("part"),
                repaid_by=bindparam("code")),
        [{"debt": debt_id, "part": part, "code": code} for code, (debt_id, part) in parts])


@dataclass(slots=True)
class RebateRefund:
    """What a return did to rebates already issued: vouchers replaced, money owed."""

    voided: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    owed_minor: dict[str, int] = field(default_factory=dict)  # "program/rule" -> owed


def settle_rebate_refund(conn: Connection, catalog: ProgramCatalog, member_id: str,
                         refund_pk: int, changed: dict[tuple[str, str, str], int],
                         now: datetime) -> RebateRefund:
    """A return took spend off rebate periods (changed: (program, counter, period) ->
    delta, already written to the counters). For each such period whose voucher was
    issued, the voucher is recomputed on the period's net spend (percent, half up,
    capped, less any debt it repaid): still unused, it is voided and a smaller one issued
    in its place (same dates, code suffixed -R<refund>); already used, the difference not
    yet owed is recorded as a rebate debt, which the member's next rebate of the rule
    repays. An expired voucher was never used: nothing is owed. Exact and idempotent: the
    amounts follow from the net spend alone, so returns in parts come to the whole."""
    result = RebateRefund()
    for (program_id, counter, period), delta in sorted(changed.items()):
        if delta >= 0 or not counter.endswith(":spend"):
            continue
        rule_id = counter.rsplit(":", 1)[0]
        # A household member's spend counts for the primary's rebate: the return settles
        # the primary's voucher, on the whole household's spend of the period.
        owner, household = member_id, _household_spend(conn, catalog, program_id, counter,
                                                        period, member_id)
        if household is not None:
            owner, _ = household
            if owner != member_id:
                lock_member(conn, owner)  # two returns settle one voucher one at a time
        live = [v for v in conn.execute(
            select(_vouchers).where(
                _vouchers.c.member_id == owner, _vouchers.c.program_id == program_id,
                _vouchers.c.rule_id == rule_id, _vouchers.c.source == "rebate",
                _vouchers.c.status.in_(("issued", "redeemed")))
            .order_by(_vouchers.c.issued_at, _vouchers.c.code))
            if (v.consumed or {}).get("period") == period]
        if not live:
            continue
        voucher = live[-1]
        rule = catalog.version(voucher.program_version_id).program.rule(rule_id)
        if not isinstance(rule, PeriodicRebate):
            continue
        spend = household[1] if household is not None else int(conn.execute(
            select(func.coalesce(func.sum(_counters.c.value), 0)).where(
                _counters.c.member_id == member_id, _counters.c.program_id == program_id,
                _counters.c.counter == counter, _counters.c.period == period)).scalar_one())
        repaid = int((voucher.consumed or {}).get("debt_repaid_minor", 0))
        due = max(0, rule.rebate(max(0, spend)) - repaid)
        amount = int(voucher.amount_minor or 0)
        if due >= amount:
            continue  # the return left the rebate as it was (above the cap)
        label = f"{program_id}/{rule_id}"
        if voucher.status == "issued":
            conn.execute(_vouchers.update().where(_vouchers.c.code == voucher.code)
                         .values(status="void", changed_at=now))
            result.voided.append(voucher.code)
            if due > 0:
                root = str((voucher.consumed or {}).get("first_code", voucher.code))
                code = f"{root[:140]}-R{refund_pk}"
                conn.execute(_vouchers.insert().values(
                    {**voucher._asdict(), "code": code, "amount_minor": due,
                     "consumed": {**(voucher.consumed or {}), "spend_minor": spend,
                                  "replaces": voucher.code, "first_code": root},
                     "changed_at": now}))
                result.reissued.append(code)
            continue
        already = int(conn.execute(
            select(func.coalesce(func.sum(_debts.c.amount_minor), 0)).where(
                _debts.c.member_id == owner, _debts.c.program_id == program_id,
                _debts.c.rule_id == rule_id, _debts.c.period == period)).scalar_one())
        owed = amount - due - already
        if owed <= 0:
            continue
        conn.execute(_debts.insert().values(
            member_id=owner, program_id=program_id, rule_id=rule_id, period=period,
            voucher_code=voucher.code, refund_id=refund_pk, amount_minor=owed,
            outstanding_minor=owed, created_at=now, repaid_by=None))
        result.owed_minor[label] = result.owed_minor.get(label, 0) + owed
    return result


def _household_spend(conn: Connection, catalog: ProgramCatalog, program_id: str,
                     counter: str, period: str, member_id: str) -> tuple[str, int] | None:
    """(owner, the owner's whole spend of the period) when the program has households and
    the rule a calendar period (as issue_rebates shares it); None otherwise."""
    rule_id = counter.rsplit(":", 1)[0]
    for version in reversed(catalog.versions(program_id)):
        program = version.program
        rule = next((r for r in program.rules_of(PeriodicRebate) if r.rule_id == rule_id),
                    None)
        if rule is None:
            continue
        if not program.has_households or is_membership_year(rule.period):
            return None
        return household_spend(
            conn, program_id, counter, period, member_id,
            lambda instant, kind=rule.period, here=program: period_key(
                kind, local_day(here, instant)))
    return None
