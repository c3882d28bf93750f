"""Points that pay club fees: spent first-in-first-out from spendable lots through the
ledger, and put back into the same lots when the fee is refunded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine import ledger
from loyalty_engine.domain.errors import FeeError


def pay_fee_points(conn: Connection, charge: Any, version_id: int, points: int,
                   at: datetime, now: datetime) -> dict[str, int]:
    """Spend `points` of the member's spendable points on a charge; returns lot -> points.
    As for a redemption, lots must be active at the payment and not expired when it is
    recorded (services/redemptions.py says why)."""
    return ledger.spend(conn, ledger.Spend(
        charge.member_id, charge.program_id, version_id, "fee", points, at,
        {"charge_id": charge.id, "club": charge.club_id, "level": charge.level},
        f"fee:{charge.id}", f"club:{charge.club_id}"), now,
        lambda available: FeeError(
            f"member {charge.member_id!r} has {available} spendable points in "
            f"{charge.program_id!r}; charge {charge.id} costs {points} points"))


def refund_fee_points(conn: Connection, charge: Any, at: datetime, now: datetime) -> int:
    """Give a refunded charge's points back to their lots (those not expired by `at`)."""
    consumed = {int(k): int(v) for k, v in (charge.detail or {}).get("from_lots", {}).items()}
    return ledger.restore(conn, ledger.Restore(
        charge.member_id, charge.program_id,
        int((charge.detail or {}).get("program_version_id", 0)), "fee_refund", consumed, at,
        f"fee_refund:{charge.id}",
        lambda restored: {"charge_id": charge.id,
                          "to_lots": {str(k): v for k, v in consumed.items()},
                          "restored": restored},
        f"club:{charge.club_id}"), now)
