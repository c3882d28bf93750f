"""Point debts: points a refund could not take back, recorded, and repaid by later earnings."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from loyalty_engine.ledger.entries import Entry, Times, append
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import Converters, chunked, insert_rows

_debts = tables.point_debts

# Up to this many members, a batch asks for their debts at once rather than first whether
# anybody owes points at all (one statement instead of two for a till's purchase).
_FEW = 16


@dataclass(slots=True)
class Debt:
    """An unpaid debt as read for repayment; outstanding shrinks as earnings repay it."""

    debt_id: int
    outstanding: int
    in_balance: bool  # the balance already shows it (negative_balance policy)


@dataclass(frozen=True, slots=True)
class NewDebt:
    """Points a refund could not take back: owed by the member."""

    member_id: str
    program_id: str
    refund_id: int
    points: int  # what the refund took back in all
    outstanding: int  # of which owed
    in_balance: bool


@dataclass(frozen=True, slots=True)
class Repayment:
    """Points of one new earning entry that went to a debt."""

    debt: Debt
    entry_id: int
    points: int
    member_id: str
    program_id: str
    version_id: int
    at: datetime


def record_debts(conn: Connection, debts: Sequence[NewDebt], now: datetime) -> None:
    """Record new debts, one statement (the refund has already booked the balance)."""
    if not debts:
        return
    when = Converters(conn).when(now)
    insert_rows(
        conn, _debts,
        ("member_id", "program_id", "refund_id", "points", "outstanding", "in_balance",
         "created_at"),
        [(d.member_id, d.program_id, d.refund_id, d.points, d.outstanding, d.in_balance, when)
         for d in debts])


def outstanding(conn: Connection, member_ids: Sequence[str]
                ) -> dict[tuple[str, str], list[Debt]]:
    """Unpaid debts of these members per (member, program), oldest first; locked on
    PostgreSQL, where two earnings of one member must not both repay the same debt
    (members are not locked when no program in force keeps counters)."""
    found: dict[tuple[str, str], list[Debt]] = defaultdict(list)
    if not member_ids:
        return found
    if len(member_ids) <= _FEW:
        # A till's purchase: one plain statement on the driver (no probe first).
        rows: Any = _few(conn, list(member_ids))
    elif conn.execute(select(_debts.c.id).where(_debts.c.outstanding > 0).limit(1)
                      ).first() is None:
        return found  # the usual case of a big batch: nobody owes points
    else:
        rows = []
        for part in chunked(list(member_ids)):
            query = (select(_debts.c.id, _debts.c.member_id, _debts.c.program_id,
                            _debts.c.outstanding, _debts.c.in_balance)
                     .where(_debts.c.member_id.in_(part), _debts.c.outstanding > 0)
                     .order_by(_debts.c.id))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            rows.extend(conn.execute(query).all())
    for debt_id, member_id, program_id, owed, in_balance in rows:
        found[(member_id, program_id)].append(Debt(int(debt_id), int(owed), bool(in_balance)))
    return found


def _few(conn: Connection, member_ids: list[str]) -> list[tuple[Any, ...]]:
    raw: Any = conn.connection.dbapi_connection
    columns = "id, member_id, program_id, outstanding, in_balance"
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" for _ in member_ids)
        cursor: Any = raw.cursor()
        try:
            return list(cursor.execute(
                f"SELECT {columns} FROM point_debts WHERE member_id IN ({marks}) "
                "AND outstanding > 0 ORDER BY id", member_ids))
        finally:
            cursor.close()
    with raw.cursor() as pg:
        pg.execute(f"SELECT {columns} FROM point_debts WHERE member_id = ANY(%s) "
                   "AND outstanding > 0 ORDER BY id FOR UPDATE", (member_ids,))
        rows: list[tuple[Any, ...]] = pg.fetchall()
        return rows


def write_repayments(conn: Connection, repayments: Sequence[Repayment], now: datetime,
                     times: Times | None = None) -> None:
    """Debts shrink by what repaid them (one executemany); a debt the balance did not show
    yet is taken with a `debt` entry of its own, under its natural key."""
    if not repayments:
        return
    append(conn, [
        Entry(r.member_id, r.program_id, r.version_id, "debt", -r.points, r.at,
              {"debt_id": r.debt.debt_id, "repaid_from_entry": r.entry_id},
              f"debt:{r.debt.debt_id}:{r.entry_id}")
        for r in repayments if not r.debt.in_balance], now, times)
    repaid: defaultdict[int, int] = defaultdict(int)
    for r in repayments:
        repaid[r.debt.debt_id] += r.points
    conn.execute(
        _debts.update().where(_debts.c.id == bindparam("debt"))
        .values(outstanding=_debts.c.outstanding - bindparam("repaid")),
        [{"debt": debt_id, "repaid": points} for debt_id, points in sorted(repaid.items())])
