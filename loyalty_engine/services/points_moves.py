"""Points that pay club fees: taken first-in-first-out from spendable lots with a ledger
entry, and put back into the same lots when the fee is refunded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.services.errors import FeeError
from loyalty_engine.services.lots import (
    adjust_balance,
    restore_points,
    spendable_points,
    take_points,
)
from loyalty_engine.services.rows import LEDGER_COLUMNS
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, allocate_ids, insert_rows

_ledger = tables.ledger_entries


def pay_fee_points(conn: Connection, charge: Any, version_id: int, points: int,
                   at: datetime, now: datetime) -> dict[str, int]:
    """Spend `points` of the member's spendable points on a charge; returns lot -> points.
    As for a redemption, lots must be active at the payment and not expired when it is
    recorded (services/redemptions.py says why)."""
    unexpired_at = max(at, now)
    available = spendable_points(conn, charge.member_id, charge.program_id, at, unexpired_at)
    if points > available:
        raise FeeError(f"member {charge.member_id!r} has {available} spendable points in "
                       f"{charge.program_id!r}; charge {charge.id} costs {points} points")
    taken = take_points(conn, charge.member_id, charge.program_id, points, at,
                        spendable_only=True, unexpired_at=unexpired_at)
    consumed = {str(t.entry_id): t.points for t in taken}
    _entry(conn, charge, version_id, "fee", -points, at, now,
           {"charge_id": charge.id, "club": charge.club_id, "level": charge.level,
            "from_lots": consumed}, f"fee:{charge.id}")
    adjust_balance(conn, charge.member_id, charge.program_id, -points, 0, now)
    return consumed


def refund_fee_points(conn: Connection, charge: Any, at: datetime, now: datetime) -> int:
    """Give a refunded charge's points back to their lots (those not expired by `at`)."""
    consumed = {int(k): int(v) for k, v in (charge.detail or {}).get("from_lots", {}).items()}
    restored = restore_points(conn, consumed, at)
    version_id = int((charge.detail or {}).get("program_version_id", 0))
    _entry(conn, charge, version_id, "fee_refund", restored, at, now,
           {"charge_id": charge.id, "to_lots": {str(k): v for k, v in consumed.items()},
            "restored": restored}, f"fee_refund:{charge.id}")
    adjust_balance(conn, charge.member_id, charge.program_id, restored, 0, now)
    return restored


def _entry(conn: Connection, charge: Any, version_id: int, kind: str, points: int,
           at: datetime, now: datetime, reason: dict[str, Any], ref: str) -> None:
    convert = Converters(conn)
    entry_id = allocate_ids(conn, _ledger, 1)[0]
    insert_rows(conn, _ledger, LEDGER_COLUMNS,
                [(entry_id, charge.member_id, charge.program_id, version_id, kind, points,
                  None, f"club:{charge.club_id}", convert.when(at), convert.when(now),
                  convert.json(reason), ref)])
