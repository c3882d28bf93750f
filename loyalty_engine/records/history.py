"""Stored history read back as events, for a replay (services/simulation.py): purchases with
their lines, refunds and redemptions of a program's stores up to an instant, and the rows a
replay copies as they are (programs, versions, members, consents, explicit enrolments).

Set-based: one query per table, whatever the number of members. Nothing live is written;
`install_version` writes only to a replay's throw-away database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Table, and_, delete, func, select, true

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


def purchase_span(conn: Connection, covers: Callable[[str], bool],
                  members: frozenset[str] | None) -> tuple[datetime, datetime] | None:
    """The first and last of the purchases a replay would replay (stored_purchases'
    filters: members' purchases, of the members given, at the stores `covers` accepts);
    None without any. Anonymous purchases earn nothing and do not count."""
    p = _purchases
    first = last = None
    for store_id, earliest, latest in conn.execute(
        select(p.c.store_id, func.min(p.c.occurred_at), func.max(p.c.occurred_at))
        .where(p.c.member_id.is_not(None), _member_filter(p.c.member_id, members))
        .group_by(p.c.store_id)
    ):
        if covers(store_id):
            first = earliest if first is None else min(first, earliest)
            last = latest if last is None else max(last, latest)
    return None if first is None or last is None else (first, last)


def not_replayed(conn: Connection, program_id: str, end: datetime,
                 members: frozenset[str] | None) -> dict[str, int]:
    """What the live history holds that a replay does not redo (docs/simulate.md): manual
    adjustments up to `end` and manual tiers; only the kinds there are."""
    def count(table: Any, *where: Any) -> int:
        return int(conn.execute(
            select(func.count()).select_from(table)
            .where(table.c.program_id == program_id,
                   _member_filter(table.c.member_id, members), *where)).scalar_one())

    status = tables.tier_status
    found = {
        "adjustments": count(_ledger, _ledger.c.kind == "adjust", _ledger.c.occurred_at <= end),
        "manual_tiers": count(status, status.c.manual_tier.is_not(None)),
    }
    return {k: v for k, v in found.items() if v}


def install_version(conn: Connection, program_id: str, name: str, content_hash: str,
                    source_path: str, source_text: str, start: datetime,
                    as_new: bool) -> None:
    """In a replay's database: the program (created when as_new) gets a version in force
    from `start`, numbered after the stored ones; the stored versions that would take
    effect at or after `start` are removed first."""
    versions = tables.program_versions
    if as_new:
        conn.execute(tables.programs.insert().values(
            program_id=program_id, name=name, created_at=start))
    conn.execute(delete(versions).where(versions.c.program_id == program_id,
                                        versions.c.effective_from >= start))
    latest = conn.execute(select(func.max(versions.c.version))
                          .where(versions.c.program_id == program_id)).scalar()
    conn.execute(versions.insert().values(
        program_id=program_id, version=int(latest or 0) + 1, content_hash=content_hash,
        effective_from=start, applied_at=start, source_path=source_path,
        source_text=source_text))


def vouchers_issued(conn: Connection, program_id: str, start: datetime, end: datetime,
                    members: frozenset[str] | None) -> dict[str, tuple[int, int]]:
    """The program's vouchers issued in [start, end] by source: (count, amount_minor)."""
    v = tables.vouchers
    return {source: (int(count), int(amount)) for source, count, amount in conn.execute(
        select(v.c.source, func.count(), func.coalesce(func.sum(v.c.amount_minor), 0))
        .where(v.c.program_id == program_id, v.c.issued_at >= start, v.c.issued_at <= end,
               _member_filter(v.c.member_id, members))
        .group_by(v.c.source))}


def fee_revenue(conn: Connection, program_id: str, start: datetime, end: datetime,
                members: frozenset[str] | None) -> int:
    """Club fees paid in [start, end], net of what was refunded of them, in minor units."""
    f = tables.fee_charges
    return int(conn.execute(
        select(func.coalesce(func.sum(f.c.amount_minor - func.coalesce(f.c.refunded_minor, 0)),
                             0))
        .where(f.c.program_id == program_id, f.c.paid_at >= start, f.c.paid_at <= end,
               _member_filter(f.c.member_id, members))).scalar_one())


def tiers_of(conn: Connection, program_id: str,
             members: frozenset[str] | None) -> dict[str, str]:
    """member -> their stored tier in the program ('' below the lowest)."""
    t = tables.tier_status
    return {m: tier for m, tier in conn.execute(
        select(t.c.member_id, t.c.tier).where(t.c.program_id == program_id,
                                              _member_filter(t.c.member_id, members)))}


def hold_job(conn: Connection, program_id: str, job: str, until: datetime) -> None:
    """In a replay's database: mark the job as run up to `until`, so that no tick before
    then runs it (a replay's ticks are not strict: a job ahead of them is skipped)."""
    conn.execute(tables.scheduler_watermarks.insert().values(
        program_id=program_id, job=job, ran_to=until, runs=0, updated_at=until))
