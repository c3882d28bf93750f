"""Proving the cached balances and lots agree with the ledger they are derived from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from loyalty_engine.ledger.lots import HELD
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_use_case

_balances = tables.balances
_ledger = tables.ledger_entries
_lots = tables.point_lots
_debts = tables.point_debts


@dataclass(frozen=True, slots=True)
class BalanceCheck:
    """How many balances were compared and the ones that disagree."""

    checked: int
    mismatches: list[dict[str, Any]]


@read_use_case
def check_balances(conn: Connection) -> BalanceCheck:
    """Compare every balance with the ledger and the lots (4 queries).

    For each member and program: spendable + pending == sum(ledger); pending == what
    pending lots hold; lots' remaining less debts the balance already shows == sum(ledger);
    lifetime earned == sum of earn entries.
    """
    ledger = {
        (m, p): (int(total), int(earned or 0))  # no earn entry: adjustments only
        for m, p, total, earned in conn.execute(
            select(_ledger.c.member_id, _ledger.c.program_id, func.sum(_ledger.c.points),
                   func.sum(_ledger.c.points).filter(_ledger.c.kind == "earn"))
            .group_by(_ledger.c.member_id, _ledger.c.program_id)
        )
    }
    lots = {
        (m, p): (int(remaining), int(pending or 0))
        for m, p, remaining, pending in conn.execute(
            select(_lots.c.member_id, _lots.c.program_id, func.sum(_lots.c.remaining),
                   func.sum(_lots.c.remaining).filter(HELD))
            .group_by(_lots.c.member_id, _lots.c.program_id)
        )
    }
    owed = {
        (m, p): int(outstanding)
        for m, p, outstanding in conn.execute(
            select(_debts.c.member_id, _debts.c.program_id, func.sum(_debts.c.outstanding))
            .where(_debts.c.in_balance.is_(True))
            .group_by(_debts.c.member_id, _debts.c.program_id)
        )
    }
    balances = conn.execute(
        select(_balances.c.member_id, _balances.c.program_id, _balances.c.points,
               _balances.c.pending, _balances.c.lifetime_earned)
    ).all()
    mismatches = []
    seen = set()
    for member_id, program_id, points, pending, lifetime in balances:
        key = (member_id, program_id)
        seen.add(key)
        total, earned = ledger.get(key, (0, 0))
        remaining, pending_lots = lots.get(key, (0, 0))
        shown_debt = owed.get(key, 0)
        if (points + pending, pending, lifetime, remaining - shown_debt) != (
            total, pending_lots, earned or 0, total
        ):
            mismatches.append({"member_id": member_id, "program_id": program_id,
                               "balance": points, "pending": pending, "ledger": total,
                               "lots_remaining": remaining, "pending_lots": pending_lots,
                               "debt_in_balance": shown_debt, "lifetime_earned": lifetime,
                               "ledger_earned": earned or 0})
    for key in ledger.keys() - seen:
        mismatches.append({"member_id": key[0], "program_id": key[1], "balance": None,
                           "ledger": ledger[key][0]})
    return BalanceCheck(len(balances), mismatches)
