"""Shared helpers for the integration tests: program files, purchase events, row counts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy import event as sa_event

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.tables import Balance, LedgerEntry, PointLot

ROOT = Path(__file__).resolve().parents[2]
BEAN_THERE = ROOT / "tests" / "fixtures" / "rules" / "bean-there-basic.yaml"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

TABLES = (
    "members", "programs", "program_versions", "enrolments", "purchases", "purchase_items",
    "ledger_entries", "point_lots", "balances",
)


def program_yaml(
    program: str = "test-shop",
    *,
    points_per_unit: str = "1",
    rounding: str = "floor",
    currency: str = "EUR",
    minimum_purchase: str = "0",
    multipliers: dict[str, str] | None = None,
    exclude_categories: tuple[str, ...] = (),
    name: str = "Test Shop",
) -> str:
    """A one-rule points_per_spend program file."""
    lines = [
        f"program: {program}",
        f"name: {name}",
        f"currency: {currency}",
        "timezone: Europe/Amsterdam",
        "enrolment: open",
    ]
    if exclude_categories:
        lines += ["exclude:", f"  categories: [{', '.join(exclude_categories)}]"]
    lines += [
        "rules:",
        "  - id: per-unit",
        "    kind: points_per_spend",
        f'    points_per_unit: "{points_per_unit}"',
        f"    rounding: {rounding}",
        f'    minimum_purchase: "{minimum_purchase}"',
    ]
    if multipliers:
        lines.append("    category_multipliers:")
        lines += [f'      {cat}: "{m}"' for cat, m in multipliers.items()]
    return "\n".join(lines) + "\n"


def write_program(directory: Path, filename: str, content: str) -> Path:
    path = directory / filename
    path.write_text(content, encoding="utf-8")
    return path


def purchase_body(
    transaction_id: str,
    *,
    store_id: str = "AMS-01",
    member_id: str | None = "M-1",
    occurred_at: str = "2026-03-14T09:30:00+01:00",
    currency: str = "EUR",
    items: list[tuple[str, str, str, str]] | None = None,
    total: str | None = None,
) -> dict[str, Any]:
    """A purchase event as JSON-ready data; items are (sku, category, quantity, unit_price)."""
    items = items if items is not None else [("FLAT-WHITE", "coffee", "2", "3.60")]
    if total is None:
        cents = 0
        for _, _, quantity, price in items:
            cents += int((Decimal(quantity) * Decimal(price) * 100)
                         .quantize(Decimal(1), rounding=ROUND_HALF_UP))
        total = f"{cents // 100}.{cents % 100:02d}"
    body: dict[str, Any] = {
        "transaction_id": transaction_id,
        "store_id": store_id,
        "occurred_at": occurred_at,
        "currency": currency,
        "total": total,
        "items": [
            {"sku": sku, "category": cat, "quantity": qty, "unit_price": price}
            for sku, cat, qty, price in items
        ],
    }
    if member_id is not None:
        body["member_id"] = member_id
    return body


def event(transaction_id: str, **kwargs: Any) -> PurchaseEvent:
    return PurchaseEvent.model_validate(purchase_body(transaction_id, **kwargs))


def write_jsonl(path: Path, records: list[dict[str, Any] | str]) -> Path:
    """One line per record; strings are written verbatim (for malformed lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def count(engine: Engine, table: str) -> int:
    with read_transaction(engine) as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def counts(engine: Engine) -> dict[str, int]:
    """Row count of every table of the schema."""
    with read_transaction(engine) as conn:
        return {
            t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def balance(engine: Engine, member_id: str, program_id: str) -> int | None:
    """The cached balance, or None when the member has no balance row for the program."""
    table = Balance.__table__
    with read_transaction(engine) as conn:
        return conn.execute(
            select(table.c.points).where(table.c.member_id == member_id,
                                         table.c.program_id == program_id)
        ).scalar_one_or_none()


def ledger_sums(engine: Engine) -> dict[tuple[str, str], tuple[int, int | None, int]]:
    """Per (member, program): (ledger sum, balance, lots remaining), all computed separately."""
    ledger, lots, balances = LedgerEntry.__table__, PointLot.__table__, Balance.__table__
    with read_transaction(engine) as conn:
        by_ledger = {
            (m, p): int(s) for m, p, s in conn.execute(
                select(ledger.c.member_id, ledger.c.program_id, func.sum(ledger.c.points))
                .group_by(ledger.c.member_id, ledger.c.program_id))
        }
        by_lots = {
            (m, p): int(s) for m, p, s in conn.execute(
                select(lots.c.member_id, lots.c.program_id, func.sum(lots.c.remaining))
                .group_by(lots.c.member_id, lots.c.program_id))
        }
        by_balance = {
            (m, p): int(s) for m, p, s in conn.execute(
                select(balances.c.member_id, balances.c.program_id, balances.c.points))
        }
    keys = by_ledger.keys() | by_lots.keys() | {k for k, v in by_balance.items() if v}
    return {k: (by_ledger.get(k, 0), by_balance.get(k), by_lots.get(k, 0)) for k in keys}


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine sends while the block runs (through SQLAlchemy; the
    bulk paths that use the driver directly are not seen)."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
