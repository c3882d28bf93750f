"""The member events outbox, as CRMs read it: in id order after `since` (steps append the
events under their natural key through `records/events.py`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_use_case

_events = tables.member_events

# What each kind means, for the docs and `loyalty events list --help`.
KINDS = {
    "segment_changed": "the RFM snapshot moved the member to another segment (data: program, "
                       "from, to, as_of, r, f, m)",
    "tier_upgraded": "the member moved up a tier (a purchase, a review, an operator)",
    "tier_downgraded": "the member moved down a tier (a review, a refund, a floor's end)",
    "fee_due": "a club fee charge was raised and is due",
    "membership_lapsed": "a club membership lapsed (unpaid after grace, or eligibility ended)",
    "reward_issued": "a reward was issued: a periodic rebate voucher, or period-end bonus points",
    "voucher_expired": "a voucher the member had not used expired",
    "stamps_expired": "stamps on the member's card lapsed unused",
    "tier_will_downgrade": "the member would drop at a review coming soon (and what they lack)",
    "points_expiring_soon": "points of the member will expire soon",
    "balance_lapsed": "the member's whole points balance lapsed after months without activity",
    "balance_lapsing_soon": "the member's whole points balance will lapse soon without activity",
    "eligibility_expiring": "a group verification will lapse soon: time to re-verify",
}


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

