"""Earning: an entry and a lot per earning, pending or spendable, debts repaid first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.ledger.balances import BalanceChanges
from loyalty_engine.ledger.debts import Repayment, outstanding, write_repayments
from loyalty_engine.ledger.entries import Entry, Times, append
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import insert_rows

_lots = tables.point_lots
LOT_COLUMNS = ("entry_id", "member_id", "program_id", "earned_at", "points", "remaining",
               "expires_at", "pending_until")


@dataclass(frozen=True, slots=True)
class Earning:
    """Points earned at `at`: a purchase's award, a job's bonus, an operator's credit."""

    member_id: str
    program_id: str
    version_id: int
    points: int
    at: datetime
    expires_at: datetime | None
    reason: dict[str, Any] | str  # str: JSON text already
    rule_id: str = ""
    purchase_id: int | None = None
    pending_until: datetime | None = None  # held (not spendable) until then
    kind: str = "earn"  # "adjust": an operator's credit, not counted as lifetime earned
    ref: str | None = None  # the natural key of an earning outside a purchase
    # An activity (a purchase's points, in a program with inactivity expiry): moves the
    # balance's lapse deadline on to lapses_at.
    active: bool = False
    lapses_at: datetime | None = None


def earn(conn: Connection, earnings: Sequence[Earning], now: datetime,
         balances: BalanceChanges | None = None) -> list[int]:
    """Write earnings for any number of members: the entries (one insert), their debts read
    (one select), one lot each holding what repaying debts (oldest first) left, the
    repayments, and the balances (flushed here unless the caller passes its own
    BalanceChanges to flush later). Returns the entry ids, in order."""
    if not earnings:
        return []
    times = Times(conn)
    ids = append(conn, [Entry(e.member_id, e.program_id, e.version_id, e.kind, e.points, e.at,
                              e.reason, e.ref, e.rule_id, e.purchase_id) for e in earnings],
                 now, times)
    owed = outstanding(conn, sorted({e.member_id for e in earnings}))
    changes = BalanceChanges() if balances is None else balances
    lots = []
    repaid: list[Repayment] = []
    for eid, e in zip(ids, earnings, strict=True):
        remaining = e.points
        for debt in owed.get((e.member_id, e.program_id), ()):
            if remaining == 0:
                break
            taken = min(remaining, debt.outstanding)
            if taken <= 0:
                continue
            debt.outstanding -= taken
            remaining -= taken
            repaid.append(Repayment(debt, eid, taken, e.member_id, e.program_id,
                                    e.version_id, e.at))
            if debt.in_balance:
                # The balance already showed the debt: repaying it gives those points back.
                changes.add(e.member_id, e.program_id, points=taken)
        lots.append((eid, e.member_id, e.program_id, times(e.at), e.points, remaining,
                     times(e.expires_at), times(e.pending_until)))
        pending = e.pending_until is not None
        # Lifetime earned counts earnings only (db check compares it with the earn entries).
        changes.add(e.member_id, e.program_id, points=0 if pending else remaining,
                    pending=remaining if pending else 0,
                    lifetime=e.points if e.kind == "earn" else 0)
        if e.active:
            changes.active(e.member_id, e.program_id, e.at, e.lapses_at)
    insert_rows(conn, _lots, LOT_COLUMNS, lots)
    write_repayments(conn, repaid, now, times)
    if balances is None:
        changes.flush(conn, now)
    return ids
