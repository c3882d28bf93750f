"""Stamps and vouchers that expire: vouchers past their validity are marked expired, and
stamps past their program's stamp expiry are recorded as lapsed (the engine stops counting
them on their day either way); each once, with a member event."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.domain.periods import start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.rules.compiled import Expiry, StampCard
from loyalty_engine.services.programs import versions_in_force
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_if_absent
from loyalty_engine.store.unit_of_work import write_use_case

JOB = "expire"

_vouchers = tables.vouchers
_counters = tables.progress_counters
_effects = tables.job_effects


@dataclass(slots=True)
class RewardExpiryResult:
    """Vouchers marked expired, and stamps recorded as lapsed (members, stamps)."""

    vouchers: int = 0
    stamp_members: int = 0
    stamps: int = 0
    codes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"vouchers_expired": self.vouchers, "stamps_lapsed": self.stamps,
                "members_with_stamps_lapsed": self.stamp_members}


@write_use_case
def expire_rewards(conn: Connection, as_of: datetime, now: datetime,
                   program_id: str | None = None,
                   since: datetime | None = None, *,
                   versions: list[VersionInForce] | None = None) -> RewardExpiryResult:
    """Mark every issued voucher whose validity ended by as_of expired, and record the
    stamps that lapsed by as_of's local day (after since's, given a previous run)."""
    result = RewardExpiryResult()
    for version in versions_in_force(conn, as_of, program_id, versions):
        _expire_vouchers(conn, version.program_id, as_of, now, result)
        _lapse_stamps(conn, version, as_of, now, since, result)
    return result


def _expire_vouchers(conn: Connection, program_id: str, as_of: datetime, now: datetime,
                     result: RewardExpiryResult) -> None:
    # A guarded update: a second run (or process, after the first commits) finds them
    # expired already and changes nothing.
    expired = conn.execute(
        _vouchers.update().where(_vouchers.c.program_id == program_id,
                                 _vouchers.c.status == "issued",
                                 _vouchers.c.valid_until <= as_of)
        .values(status="expired", changed_at=now)
        .returning(_vouchers.c.code, _vouchers.c.member_id, _vouchers.c.reward_id,
                   _vouchers.c.kind, _vouchers.c.amount_minor, _vouchers.c.valid_until)
    ).all()
    record_events(conn, [Event(
        f"voucher_expired:{v.code}", "voucher_expired", v.member_id, program_id, v.valid_until,
        {"voucher": v.code, "reward": v.reward_id, "kind": v.kind,
         "amount_minor": v.amount_minor, "expired_at": v.valid_until.isoformat()})
        for v in expired], now)
    result.vouchers += len(expired)
    result.codes.extend(sorted(v.code for v in expired))


def earliest_lapsing(expiry: Expiry, after: date) -> date:
    """The first earning day whose things lapse after `after` (lapse days only grow with
    the earning day, so a binary search finds it)."""
    low, high = after - timedelta(days=4000), after
    while low < high:
        middle = low + (high - low) // 2
        lapses = expiry.first_lapsed_day(middle)
        if lapses is not None and lapses <= after:
            low = middle + timedelta(days=1)
        else:
            high = middle
    return low


def _lapse_stamps(conn: Connection, version: VersionInForce, as_of: datetime, now: datetime,
                  since: datetime | None, result: RewardExpiryResult) -> None:
    program = version.program
    today = local_day(program, as_of)
    for rule in program.rules_of(StampCard):
        if rule.stamps_expire.kind == "never":
            continue
        expiry = rule.stamps_expire
        # Stamp days are counter periods (ISO dates); 'debt' sorts after every date.
        query = (select(_counters.c.member_id, _counters.c.period, _counters.c.value)
                 .where(_counters.c.program_id == version.program_id,
                        _counters.c.counter == f"{rule.rule_id}:stamps",
                        _counters.c.period < "debt", _counters.c.value > 0,
                        _counters.c.period < earliest_lapsing(expiry, today).isoformat()))
        if since is not None:
            query = query.where(_counters.c.period >= earliest_lapsing(
                expiry, local_day(program, since)).isoformat())
        rows = conn.execute(query.order_by(_counters.c.member_id, _counters.c.period)).all()
        if not rows:
            continue
        effects = []
        for member_id, period, stamps in rows:
            lapsed_on = expiry.first_lapsed_day(date.fromisoformat(period))
            assert lapsed_on is not None
            effects.append({
                "program_id": version.program_id, "job": JOB, "member_id": member_id,
                "effect_key": f"stamps:{rule.rule_id}:{period}",
                "detail": {"rule": rule.rule_id, "stamped_on": period, "stamps": int(stamps),
                           "lapsed_on": lapsed_on.isoformat()},
                "occurred_at": start_of_day(lapsed_on, program.timezone),
                "recorded_at": now})
        inserted = insert_if_absent(conn, _effects, effects, tables.JOB_EFFECT_KEY)
        lapsed: defaultdict[tuple[str, str], int] = defaultdict(int)
        when: dict[tuple[str, str], datetime] = {}
        for e in inserted:
            key = (e.member_id, e.detail["lapsed_on"])
            lapsed[key] += int(e.detail["stamps"])
            when[key] = e.occurred_at
        record_events(conn, [Event(
            f"stamps_expired:{version.program_id}:{rule.rule_id}:{member_id}:{day}",
            "stamps_expired", member_id, version.program_id, when[(member_id, day)],
            {"rule": rule.rule_id, "stamps": stamps, "lapsed_on": day,
             "card_size": rule.card_size})
            for (member_id, day), stamps in sorted(lapsed.items())], now)
        result.stamps += sum(lapsed.values())
        result.stamp_members += len({m for m, _ in lapsed})
