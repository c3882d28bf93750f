"""Wallet totals read and written, and the members a file's lines name: the SQL of the
share-of-wallet import and reports (services/wallet.py), on the caller's Connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Select, cast, func, select

from loyalty_engine.analytics.wallet import WalletPeriod, WalletTotal
from loyalty_engine.records.counted_purchases import counted_lines
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    IN_CHUNK,
    Converters,
    chunked,
    insert_rows,
    select_by_keys,
)

_wallets = tables.wallet_totals
_members = tables.members
_enrolments = tables.enrolments
TotalKey = tuple[str, str, str]  # member, category, period
_WALLET_WRITE = ("member_id", "category", "period", "currency", "amount_minor", "source",
                 "recorded_at")


def known_members(conn: Connection, member_ids: set[str]) -> dict[str, bool]:
    """Of the ids given, those that are members: id -> whether their data was erased (a
    few statements of up to IN_CHUNK ids each, whatever the file's size)."""
    found: dict[str, bool] = {}
    ordered = sorted(member_ids)
    for part in chunked(ordered, IN_CHUNK):
        for member_id, erased_at in conn.execute(
                select(_members.c.member_id, _members.c.erased_at)
                .where(_members.c.member_id.in_(part))):
            found[member_id] = erased_at is not None
    return found


def stored_totals(conn: Connection, keys: Sequence[TotalKey]
                  ) -> dict[TotalKey, tuple[str, int]]:
    """The totals held under these keys: key -> (currency, amount in minor units)."""
    found: dict[TotalKey, tuple[str, int]] = {}
    for part in chunked(list(keys), IN_CHUNK):
        for member_id, category, period, currency, amount in select_by_keys(
                conn, _wallets, ("member_id", "category", "period"), list(part),
                ("member_id", "category", "period", "currency", "amount_minor")):
            found[(member_id, category, period)] = (currency, int(amount))
    return found


def upsert_totals(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """New totals inserted, changed ones replaced: one statement per batch."""
    when = Converters(conn).when
    values = [tuple(when(r[c]) if c == "recorded_at" else r[c] for c in _WALLET_WRITE)
              for r in rows]
    for part in chunked(values, IN_CHUNK // len(_WALLET_WRITE)):
        insert_rows(conn, _wallets, _WALLET_WRITE, part,
                    on_conflict=["member_id", "category", "period"],
                    update={"currency": "excluded.currency",
                            "amount_minor": "excluded.amount_minor",
                            "source": "excluded.source",
                            "recorded_at": "excluded.recorded_at"})


def enrolled(program: CompiledProgram, as_of: datetime,
             member_id: str | None = None) -> Select[Any]:
    """The ids of the program's members enrolled by as_of (of one member when given), as
    a query to run or to select within."""
    query = select(_enrolments.c.member_id).where(
        _enrolments.c.program_id == program.program_id, _enrolments.c.enrolled_at <= as_of)
    return query if member_id is None else query.where(_enrolments.c.member_id == member_id)


def enrolled_ids(conn: Connection, program: CompiledProgram, as_of: datetime,
                 member_id: str | None = None) -> list[str]:
    """enrolled's ids, in order."""
    return list(conn.execute(enrolled(program, as_of, member_id)
                             .order_by(_enrolments.c.member_id)).scalars())


def wallet_totals(conn: Connection, program: CompiledProgram, as_of: datetime,
                  period: WalletPeriod | None, member_id: str | None = None
                  ) -> tuple[list[WalletTotal], dict[tuple[str, str], dict[str, int]], int]:
    """The program members' wallet totals in its currency (of one period, or one member,
    when given), by member, category and period; the program's counted spend by (member,
    category) and local month ('YYYY-MM') for the members with such totals; and how many
    totals were in other currencies. Two statements: the totals, and one grouped pass over
    the counted lines by member, category and local month."""
    where: list[ColumnElement[bool]] = [
        _wallets.c.member_id.in_(enrolled(program, as_of, member_id))]
    if period is not None:
        where.append(_wallets.c.period == period.key)
    totals, other = [], 0
    for row in conn.execute(
            select(_wallets.c.member_id, _wallets.c.category, _wallets.c.period,
                   _wallets.c.currency, _wallets.c.amount_minor).where(*where)
            .order_by(_wallets.c.member_id, _wallets.c.category, _wallets.c.period)):
        if row.currency != program.currency:
            other += 1
            continue
        totals.append(WalletTotal(row.member_id, row.category, row.period, row.currency,
                                  int(row.amount_minor)))
    spend: dict[tuple[str, str], dict[str, int]] = {}
    if not totals:
        return totals, spend, other
    lines = counted_lines(conn, program, as_of)
    month = func.substr(lines.c.local_day, 1, 7)
    query = (select(lines.c.member_id, lines.c.category, month.label("month"),
                    cast(func.sum(lines.c.net_minor), BigInteger).label("spend"))
             .where(lines.c.member_id.in_(
                 select(_wallets.c.member_id).where(*where,
                                                    _wallets.c.currency == program.currency)))
             .group_by(lines.c.member_id, lines.c.category, month))
    if period is not None:
        query = query.where(month.in_(period.months))
    for member, category, month_key, minor in conn.execute(query):
        spend.setdefault((member, category), {})[month_key] = int(minor)
    return totals, spend, other
