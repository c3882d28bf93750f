"""Stored history read back as events, for a replay (services/simulation.py): purchases with
their lines, refunds and redemptions of a program's stores up to an instant, and the rows a
replay copies as they are (programs, versions, members, consents, explicit enrolments).

Set-based: one query per table, whatever the number of members; nothing is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, and_, func, select, true

from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.domain.purchases import LineItem, Purchase
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.store import tables

_purchases = tables.purchases
_items = tables.purchase_items
_refunds = tables.refunds
_redemptions = tables.redemptions
_ledger = tables.ledger_entries


@dataclass(frozen=True, slots=True)
class StoredPurchase:
    """A stored purchase as the writer takes it, with when it was recorded."""

    live_id: int
    purchase: Purchase
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredRefund:
    """A stored refund as the refund use case takes it."""

    event: RefundEvent
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class StoredRedemption:
    """A stored redemption as the redemption use case takes it; reversed_at and reversal_at
    (the date its reversal put in the ledger) when it was reversed."""

    request: RedemptionRequest
    recorded_at: datetime
    reversed_at: datetime | None
    reversal_at: datetime | None


def _member_filter(column: Any, members: frozenset[str] | None) -> Any:
    return true() if members is None else column.in_(sorted(members))


def stored_purchases(conn: Connection, until: datetime, covers: Callable[[str], bool],
                     members: frozenset[str] | None) -> list[StoredPurchase]:
    """Members' purchases up to `until` (inclusive) at the stores `covers` accepts, in time
    order (then recording order); anonymous purchases earn nothing and are left out."""
    where = and_(_purchases.c.occurred_at <= until, _purchases.c.member_id.is_not(None),
                 _member_filter(_purchases.c.member_id, members))
    lines: defaultdict[int, list[LineItem]] = defaultdict(list)
    for pid, line_no, sku, category, quantity, price, amount in conn.execute(
        select(_items.c.purchase_id, _items.c.line_no, _items.c.sku, _items.c.category,
               _items.c.quantity_milli, _items.c.unit_price_minor, _items.c.amount_minor)
        .join(_purchases, _purchases.c.id == _items.c.purchase_id).where(where)
        .order_by(_items.c.purchase_id, _items.c.line_no)
    ):
        lines[pid].append(LineItem(line_no, sku, category, int(quantity), int(price),
                                   int(amount)))
    found = []
    for row in conn.execute(select(_purchases).where(where)
                            .order_by(_purchases.c.occurred_at, _purchases.c.id)):
        if not covers(row.store_id):
            continue
        found.append(StoredPurchase(row.id, Purchase(
            row.store_id, row.transaction_id, row.member_id, row.occurred_at, row.currency,
            int(row.total_minor), tuple(lines.get(row.id, ())), row.body_hash, row.tender,
            row.channel), row.recorded_at))
    return found


def stored_refunds(conn: Connection, until: datetime,
                   purchase_ids: set[int]) -> list[StoredRefund]:
    """Refunds up to `until` of the purchases given (their live ids), in time order, as the
    events that made them (amounts back in major units, lines as given)."""
    found = []
    for row in conn.execute(
        select(_refunds, _purchases.c.store_id.label("purchase_store"),
               _purchases.c.transaction_id, _purchases.c.currency)
        .join(_purchases, _purchases.c.id == _refunds.c.purchase_id)
        .where(_refunds.c.occurred_at <= until)
        .order_by(_refunds.c.occurred_at, _refunds.c.id)
    ):
        if row.purchase_id not in purchase_ids:
            continue
        exponent = currency_exponent(row.currency)
        lines = (row.items or {}).get("lines")
        body: dict[str, Any] = {
            "refund_id": row.refund_id, "store_id": row.store_id,
            "original_transaction_id": row.transaction_id,
            "occurred_at": row.occurred_at,
            "amount": Decimal(format_minor(int(row.amount_minor), exponent)),
        }
        if row.purchase_store != row.store_id:
            body["original_store_id"] = row.purchase_store
        if lines is not None:
            body["items"] = [{"sku": line["sku"],
                              "quantity": Decimal(int(line["quantity_milli"])) / 1000,
                              "amount": Decimal(format_minor(int(line["amount_minor"]),
                                                             exponent))}
                             for line in lines]
        found.append(StoredRefund(RefundEvent.model_validate(body), row.recorded_at))
    return found


def stored_redemptions(conn: Connection, program_id: str, until: datetime,
                       members: frozenset[str] | None) -> list[StoredRedemption]:
    """A program's redemptions up to `until`, in time order, as the requests that made them
    (with their reversal, if any, and the date it carried in the ledger)."""
    reversal_at = {ref.removeprefix("unredeem:"): at for ref, at in conn.execute(
        select(_ledger.c.ref, _ledger.c.occurred_at).where(
            _ledger.c.kind == "unredeem", _ledger.c.program_id == program_id,
            _member_filter(_ledger.c.member_id, members)))}
    found = []
    for row in conn.execute(
        select(_redemptions).where(
            _redemptions.c.program_id == program_id, _redemptions.c.occurred_at <= until,
            _member_filter(_redemptions.c.member_id, members))
        .order_by(_redemptions.c.occurred_at, _redemptions.c.recorded_at,
                  _redemptions.c.redemption_id)
    ):
        what: dict[str, Any] = ({"points": int(row.points)} if row.kind == "points" else
                                {"reward": row.reward_id} if row.kind == "reward" else
                                {"voucher": row.voucher_code})
        request = RedemptionRequest(redemption_id=row.redemption_id, member_id=row.member_id,
                                    program_id=row.program_id, occurred_at=row.occurred_at,
                                    **what)
        found.append(StoredRedemption(request, row.recorded_at, row.reversed_at,
                                      reversal_at.get(row.redemption_id)))
    return found


def copied_rows(conn: Connection, program_id: str | None,
                members: Iterable[str]) -> dict[Table, list[dict[str, Any]]]:
    """What a replay copies as it is: the program's row and stored versions, the members
    (attributes as they are now), their consents and explicit enrolments, and their club
    memberships, household stints, fee charges and group verifications in the program as
    they stand now (dated rows: a membership counts from its start to its end)."""
    wanted = set(members)
    copied: dict[Table, list[dict[str, Any]]] = {}
    copied[tables.programs] = [dict(r._mapping) for r in conn.execute(
        select(tables.programs).where(tables.programs.c.program_id == program_id))]
    copied[tables.program_versions] = [dict(r._mapping) for r in conn.execute(
        select(tables.program_versions).where(tables.program_versions.c.program_id == program_id)
        .order_by(tables.program_versions.c.id))]
    households = _by_members(conn, tables.household_members, sorted(wanted),
                             tables.household_members.c.program_id == program_id)
    # A household's primary is copied with its secondaries (the stint names them).
    wanted |= {row["primary_member_id"] for row in households}
    ordered = sorted(wanted)
    copied[tables.members] = _by_members(conn, tables.members, ordered, true())
    copied[tables.member_consents] = _by_members(conn, tables.member_consents, ordered, true())
    for table, extra in ((tables.enrolments, tables.enrolments.c.source != "auto"),
                         (tables.club_memberships, true()), (tables.fee_charges, true()),
                         (tables.group_verifications, true())):
        copied[table] = _by_members(conn, table, ordered,
                                    and_(table.c.program_id == program_id, extra))
    copied[tables.household_members] = households
    return copied


def _by_members(conn: Connection, table: Table, members: list[str],
                where: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(members), 5000):
        rows += [dict(r._mapping) for r in conn.execute(select(table).where(
            table.c.member_id.in_(members[start:start + 5000]), where))]
    return rows


def ledger_by_rule(conn: Connection, program_id: str, start: datetime, end: datetime,
                   members: frozenset[str] | None
                   ) -> dict[tuple[str, str, str], int]:
    """Points of the program's ledger entries dated in [start, end], by (member, rule,
    kind): what the self-check compares."""
    return {(m, r, k): int(p) for m, r, k, p in conn.execute(
        select(_ledger.c.member_id, _ledger.c.rule_id, _ledger.c.kind,
               func.sum(_ledger.c.points))
        .where(_ledger.c.program_id == program_id, _ledger.c.occurred_at >= start,
               _ledger.c.occurred_at <= end, _member_filter(_ledger.c.member_id, members))
        .group_by(_ledger.c.member_id, _ledger.c.rule_id, _ledger.c.kind))}


def voucher_origins(conn: Connection, codes: Iterable[str]
                    ) -> dict[str, tuple[int | None, str | None, str]]:
    """The vouchers named: code -> (purchase id, rule id, source), for redemptions that use
    a stamp card's voucher (its code carries the purchase's id)."""
    wanted = sorted(set(codes))
    v = tables.vouchers
    found: dict[str, tuple[int | None, str | None, str]] = {}
    for start in range(0, len(wanted), 5000):
        for code, purchase_id, rule_id, source in conn.execute(
            select(v.c.code, v.c.purchase_id, v.c.rule_id, v.c.source)
            .where(v.c.code.in_(wanted[start:start + 5000]))
        ):
            found[code] = (purchase_id, rule_id, source)
    return found
