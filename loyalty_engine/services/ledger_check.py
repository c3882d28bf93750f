"""Proving the cached balances and lots agree with the ledger they are derived from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

_balances = tables.balances
_ledger = tables.ledger_entries
_lots = tables.point_lots


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """How many balances were compared and the ones that disagree."""

    checked: int
    mismatches: list[dict[str, Any]]


def check_balances(engine: Engine) -> BalanceCheck:
    """Compare every balance with the ledger sum and the lots' remaining points (3 queries)."""
    with read_transaction(engine) as conn:
        ledger = {
            (m, p): (int(total), int(earned))
            for m, p, total, earned in conn.execute(
                select(_ledger.c.member_id, _ledger.c.program_id, func.sum(_ledger.c.points),
                       func.sum(_ledger.c.points).filter(_ledger.c.kind == "earn"))
                .group_by(_ledger.c.member_id, _ledger.c.program_id)
            )
        }
        lots = {
            (m, p): int(remaining)
            for m, p, remaining in conn.execute(
                select(_lots.c.member_id, _lots.c.program_id, func.sum(_lots.c.remaining))
                .group_by(_lots.c.member_id, _lots.c.program_id)
            )
        }
        balances = conn.execute(
            select(_balances.c.member_id, _balances.c.program_id, _balances.c.points,
                   _balances.c.lifetime_earned)
        ).all()
    mismatches = []
    seen = set()
    for member_id, program_id, points, lifetime in balances:
        key = (member_id, program_id)
        seen.add(key)
        total, earned = ledger.get(key, (0, 0))
        remaining = lots.get(key, 0)
        if (points, lifetime, remaining) != (total, earned or 0, total):
            mismatches.append({"member_id": member_id, "program_id": program_id,
                               "balance": points, "ledger": total, "lots_remaining": remaining,
                               "lifetime_earned": lifetime, "ledger_earned": earned or 0})
    for key in ledger.keys() - seen:
        mismatches.append({"member_id": key[0], "program_id": key[1], "balance": None,
                           "ledger": ledger[key][0]})
    return BalanceCheck(len(balances), mismatches)
