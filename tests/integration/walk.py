"""Helpers for walking a member through purchases, refunds and redemptions on a database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.records.purchase_writer import PurchaseOutcome
from loyalty_engine.services.members import show_member
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.services.redemptions import RedemptionOutcome, redeem
from loyalty_engine.services.refunds import RefundOutcome, record_refund
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

ROOT = Path(__file__).resolve().parents[2]
COFFEE = ROOT / "rules" / "bean-there-coffee.yaml"
GROCERY = ROOT / "rules" / "fresh-market-grocery.yaml"
GROCERY_YEAR = ROOT / "tests" / "fixtures" / "programs" / "grocery-year.yaml"
RECORDED_AT = datetime(2027, 6, 1, tzinfo=UTC)

Item = tuple[str, str, str, str]  # sku, category, quantity, unit price


def apply_text(engine: Engine, directory: Path, text: str) -> None:
    """Apply program YAML given as text (a file of its own in directory)."""
    path = directory / f"program-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(text, encoding="utf-8")
    apply_program_files(engine, [path], RECORDED_AT)


def apply_files(engine: Engine, *paths: Path) -> None:
    apply_program_files(engine, list(paths), RECORDED_AT)


def at(text: str) -> datetime:
    """An ISO 8601 instant; a bare date means noon in Amsterdam (UTC+1/+2)."""
    if len(text) == 10:
        text += "T12:00:00+01:00"
    return datetime.fromisoformat(text)


def total_of(items: list[Item]) -> str:
    cents = sum(int((Decimal(q) * Decimal(p) * 100).quantize(Decimal(1), ROUND_HALF_UP))
                for _, _, q, p in items)
    return f"{cents // 100}.{cents % 100:02d}"


def buy(engine: Engine, transaction_id: str, when: str, items: list[Item], *,
        member: str | None = "M-1", store: str = "AMS-01", tender: str | None = None,
        channel: str | None = None) -> PurchaseOutcome:
    body: dict[str, Any] = {
        "transaction_id": transaction_id, "store_id": store, "occurred_at": at(when),
        "currency": "EUR", "total": total_of(items),
        "items": [{"sku": s, "category": c, "quantity": q, "unit_price": p}
                  for s, c, q, p in items],
    }
    if member is not None:
        body["member_id"] = member
    if tender is not None:
        body["tender"] = tender
    if channel is not None:
        body["channel"] = channel
    return record_purchase(engine, PurchaseEvent.model_validate(body), RECORDED_AT)


def refund(engine: Engine, refund_id: str, transaction_id: str, when: str, amount: str, *,
           store: str = "AMS-01", items: list[tuple[str, str, str]] | None = None
           ) -> RefundOutcome:
    body: dict[str, Any] = {
        "refund_id": refund_id, "store_id": store, "original_transaction_id": transaction_id,
        "occurred_at": at(when), "amount": amount,
    }
    if items is not None:
        body["items"] = [{"sku": s, "quantity": q, "amount": a} for s, q, a in items]
    return record_refund(engine, RefundEvent.model_validate(body), RECORDED_AT)


def spend(engine: Engine, redemption_id: str, when: str, program: str, *,
          member: str = "M-1", **what: Any) -> RedemptionOutcome:
    request = RedemptionRequest(redemption_id=redemption_id, member_id=member,
                                program_id=program, occurred_at=at(when), **what)
    return redeem(engine, request, at(when))  # recorded as it happens, as a till online


def state(engine: Engine, member: str = "M-1") -> dict[str, Any]:
    """What a member has: balances, non-zero counters, vouchers by status, lots remaining."""
    b, c, v = tables.balances, tables.progress_counters, tables.vouchers
    lots = tables.point_lots
    with read_transaction(engine) as conn:
        return {
            "balances": {r.program_id: (r.points, r.pending) for r in conn.execute(
                select(b.c.program_id, b.c.points, b.c.pending).where(b.c.member_id == member))},
            "counters": {(r.program_id, r.counter, r.period): r.value for r in conn.execute(
                select(c.c.program_id, c.c.counter, c.c.period, c.c.value)
                .where(c.c.member_id == member, c.c.value != 0))},
            "vouchers": sorted((r.code, r.status) for r in conn.execute(
                select(v.c.code, v.c.status).where(v.c.member_id == member))),
            "lots": sorted((r.entry_id, r.remaining) for r in conn.execute(
                select(lots.c.entry_id, lots.c.remaining).where(lots.c.member_id == member))),
        }


def points(engine: Engine, program: str, member: str = "M-1") -> tuple[int, int]:
    """(spendable, pending) of a member in a program; (0, 0) without a balance row."""
    found: tuple[int, int] = state(engine, member)["balances"].get(program, (0, 0))
    return found


def stamps(engine: Engine, program: str = "bean-there", card: str = "coffee-card",
           member: str = "M-1") -> dict[str, int]:
    """A stamp card's non-zero counters by period (local date, or 'debt')."""
    return {period: value for (p, counter, period), value in state(engine, member)["counters"]
            .items() if p == program and counter == f"{card}:stamps"}


def assert_ledger_exact(engine: Engine) -> None:
    """Balances (spendable + pending) equal the ledger, and lots back them."""
    check = check_balances(engine)
    assert check.mismatches == [], check.mismatches


def rebate_vouchers(engine: Engine, member: str = "M-1") -> list[tuple[str, str, int]]:
    """A member's rebate vouchers as (code, status, amount in minor units), by code."""
    v = tables.vouchers
    with read_transaction(engine) as conn:
        return sorted((r.code, r.status, int(r.amount_minor or 0)) for r in conn.execute(
            select(v.c.code, v.c.status, v.c.amount_minor)
            .where(v.c.member_id == member, v.c.source == "rebate")))


def rebate_debts(engine: Engine, member: str = "M-1") -> list[tuple[str, int, int]]:
    """A member's rebate debts as (period, amount, outstanding) in minor units, in order."""
    d = tables.rebate_debts
    with read_transaction(engine) as conn:
        return [(r.period, int(r.amount_minor), int(r.outstanding_minor))
                for r in conn.execute(select(d).where(d.c.member_id == member)
                                      .order_by(d.c.id))]


def charges(engine: Engine, member: str = "M-1") -> list[tuple[int, str, str]]:
    """A member's fee charges as (id, kind, status), oldest first."""
    c = tables.fee_charges
    with read_transaction(engine) as conn:
        return [(int(r.id), r.kind, r.status) for r in conn.execute(
            select(c.c.id, c.c.kind, c.c.status).where(c.c.member_id == member)
            .order_by(c.c.id))]
HOTEL = ROOT / "tests" / "fixtures" / "programs" / "hotel-nights.yaml"


def tier_of(engine: Engine, program: str, member: str = "M-1") -> tuple[str, str | None]:
    """A member's earned tier in a program and the day its hold ends ('' and None without
    a tier row)."""
    s = tables.tier_status
    with read_transaction(engine) as conn:
        row = conn.execute(select(s.c.tier, s.c.held_until).where(
            s.c.member_id == member, s.c.program_id == program)).first()
    if row is None:
        return "", None
    return row.tier, None if row.held_until is None else row.held_until.isoformat()


def counter_total(engine: Engine, program: str, counter: str, member: str = "M-1") -> int:
    """The sum of a member's counter over every period."""
    return sum(value for (p, c, _), value in state(engine, member)["counters"].items()
               if p == program and c == counter)
def shown(engine: Engine, when: str, program: str, member: str = "M-1") -> tuple[int, int]:
    """(spendable, pending) as `members show` gives them at `when` (lots expired by then left
    out, whether or not the expire step has run); (0, 0) without a balance."""
    for balance in show_member(engine, member, at(when))["balances"]:
        if balance["program_id"] == program:
            return int(balance["points"]), int(balance["pending"])
    return 0, 0
