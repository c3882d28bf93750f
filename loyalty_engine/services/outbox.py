"""The member events outbox: steps record what happened to a member under a natural key
(once, whoever runs it and however often); CRMs read them in id order with `since`."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, insert_rows
from loyalty_engine.store.unit_of_work import read_use_case

_events = tables.member_events

# What each kind means, for the docs and `loyalty events list --help`.
KINDS = {
    "tier_upgraded": "the member moved up a tier (a purchase, a review, an operator)",
    "tier_downgraded": "the member moved down a tier (a review, a refund, a floor's end)",
    "fee_due": "a club fee charge was raised and is due",
    "membership_lapsed": "a club membership lapsed (unpaid after grace, or eligibility ended)",
    "reward_issued": "a reward was issued: a periodic rebate voucher, or period-end bonus points",
    "voucher_expired": "a voucher the member had not used expired",
    "stamps_expired": "stamps on the member's card lapsed unused",
    "tier_will_downgrade": "the member would drop at a review coming soon (and what they lack)",
    "points_expiring_soon": "points of the member will expire soon",
    "eligibility_expiring": "a group verification will lapse soon: time to re-verify",
}


class Event(NamedTuple):
    """One event to record: its natural key, kind, member, program, when, and data."""

    key: str
    kind: str
    member_id: str
    program_id: str
    occurred_at: datetime
    data: dict[str, Any]


def record_events(conn: Connection, events: Sequence[Event], now: datetime) -> int:
    """Append events in the caller's transaction; one already recorded (same key) is
    skipped. Returns how many were new."""
    if not events:
        return 0
    convert = Converters(conn)
    # One statement may not hit the same key twice; a key too long for the column is kept
    # as its digest (still unique, still natural).
    unique = {_fit(e.key): e for e in events}
    return insert_rows(
        conn, _events,
        ("key", "kind", "member_id", "program_id", "occurred_at", "data", "recorded_at"),
        [(key, e.kind, e.member_id, e.program_id, convert.when(e.occurred_at),
          convert.json(e.data), convert.when(now)) for key, e in unique.items()],
        on_conflict=["key"],
    )


@read_use_case
def list_events(conn: Connection, since: int = 0, limit: int = 100,
                member_id: str | None = None) -> list[dict[str, Any]]:
    """Events after id `since`, oldest first, in a stable shape:
    {id, kind, member_id, program_id, occurred_at, data}."""
    query = (select(_events).where(_events.c.id > since).order_by(_events.c.id)
             .limit(limit))
    if member_id is not None:
        query = query.where(_events.c.member_id == member_id)
    return [{"id": r.id, "kind": r.kind, "member_id": r.member_id,
             "program_id": r.program_id, "occurred_at": r.occurred_at, "data": r.data}
            for r in conn.execute(query)]


KEY_LENGTH = 240  # the key column's size


def _fit(key: str) -> str:
    return key if len(key) <= KEY_LENGTH else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
