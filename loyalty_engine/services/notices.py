"""Advance notices to members, as outbox events: points about to expire, a tier that will
drop at the next review, a group verification about to lapse. Each is recorded once per
occasion (its natural key), however often the step runs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select, true

from loyalty_engine import ledger
from loyalty_engine.domain.periods import start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.services.groups import reverifications_due
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.tiers import at_risk
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import write_use_case

_lots = tables.point_lots
_balances = tables.balances


@dataclass(slots=True)
class NoticeResult:
    """New notices recorded, by kind."""

    recorded: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"recorded": self.recorded}


@write_use_case
def send_notices(conn: Connection, as_of: datetime, now: datetime,
                 days: int = 30, program_id: str | None = None, *,
                 versions: list[VersionInForce] | None = None) -> NoticeResult:
    """Record the notices due `days` ahead of as_of: points_expiring_soon (per member,
    program and expiry date), tier_will_downgrade (per member and review day: who would
    drop at a review within `days`), eligibility_expiring (per verification). versions:
    the programs' versions to work on (the scheduler's job passes the planner's)."""
    horizon = as_of + timedelta(days=days)
    events: list[Event] = []
    if versions is None:
        catalog = load_catalog(conn)
        zones = {pid: catalog.versions(pid)[-1].program.timezone for pid in catalog.program_ids}
    else:
        zones = {v.program_id: v.program.timezone for v in versions}
    # Tier warnings and re-verifications come from the set-based reads that serve
    # `tiers at-risk` and `members reverify-due`.
    for row in at_risk(conn, as_of, program_id, versions=versions):
        review = start_of_day(row["review_day"], zones[row["program_id"]])
        if review > horizon:
            continue
        events.append(Event(
            f"tier_warning:{row['program_id']}:{row['member_id']}:{row['review_day']}",
            "tier_will_downgrade", row["member_id"], row["program_id"], as_of,
            {"tier": row["tier"], "would_drop_to": row["would_drop_to"],
             "review_day": row["review_day"].isoformat(), "measure": row["measure"],
             "credit": row["credit"], "lacks": row["lacks"], "currency": row["currency"],
             # A ladder of several measures: what each lacks ("3 nights or 12,000 points").
             **({"lacking": row["lacking"], "short": row["short"]} if "lacking" in row
                else {})}))
    for row in reverifications_due(conn, as_of, versions=versions):
        if program_id is not None and row["program_id"] != program_id:
            continue
        events.append(Event(
            f"reverify:{row['program_id']}:{row['group_id']}:{row['member_id']}:"
            f"{row['verified_until'].isoformat()}",
            "eligibility_expiring", row["member_id"], row["program_id"], as_of,
            {"group": row["group_id"], "verified_until": row["verified_until"].isoformat()}))
    expiring: defaultdict[tuple[str, str, datetime], int] = defaultdict(int)
    for member_id, lot_program, expires_at, points in conn.execute(
        select(_lots.c.member_id, _lots.c.program_id, _lots.c.expires_at,
               func.sum(_lots.c.remaining))
        .where(and_(_lots.c.expires_at.is_not(None), _lots.c.expires_at > as_of,
                    _lots.c.expires_at <= horizon, _lots.c.remaining > 0,
                    # One lapsing earlier with its balance has the balance's notice.
                    ledger.expiry_column() == _lots.c.expires_at,
                    true() if program_id is None else _lots.c.program_id == program_id))
        .group_by(_lots.c.member_id, _lots.c.program_id, _lots.c.expires_at)
    ):
        expiring[(member_id, lot_program, expires_at)] += int(points)
    for (member_id, lot_program, expires_at), points in sorted(expiring.items()):
        events.append(Event(
            f"expiring:{lot_program}:{member_id}:{expires_at.isoformat()}",
            "points_expiring_soon", member_id, lot_program, as_of,
            {"points": points, "expires_at": expires_at.isoformat()}))
    # Whole balances that will lapse without activity: one set-based read of balances.
    for member_id, lot_program, lapses_at, points in conn.execute(
        select(_balances.c.member_id, _balances.c.program_id, _balances.c.lapses_at,
               _balances.c.points + _balances.c.pending)
        .where(and_(_balances.c.lapses_at > as_of, _balances.c.lapses_at <= horizon,
                    _balances.c.points + _balances.c.pending > 0,
                    true() if program_id is None else _balances.c.program_id == program_id))
        .order_by(_balances.c.program_id, _balances.c.member_id)
    ):
        events.append(Event(
            f"lapsing:{lot_program}:{member_id}:{lapses_at.isoformat()}",
            "balance_lapsing_soon", member_id, lot_program, as_of,
            {"points": int(points), "lapses_at": lapses_at.isoformat()}))
    result = NoticeResult()
    for kind in sorted({e.kind for e in events}):
        result.recorded[kind] = record_events(
            conn, [e for e in events if e.kind == kind], now)
    return result

