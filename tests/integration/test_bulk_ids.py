"""The bulk writers that take ids from the insert instead of reading or drawing them first:
ids in order and matching the rows stored, on both databases; a purchase whose key is
taken writes neither itself nor its items; the look-ups after a lock."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, text

from loyalty_engine.store import tables
from loyalty_engine.store.bulk import (
    Lookup,
    insert_returning_with_children,
    insert_with_ids,
    lock_rows_then_select,
    lock_then_look_up,
)
from loyalty_engine.store.database import write_transaction

_AT = datetime(2026, 6, 1, tzinfo=UTC)


def _member(member_id: str) -> dict[str, object]:
    return {"member_id": member_id, "attributes": {}, "created_at": _AT}


def _purchase(store: str, txn: str, member: str = "M-1") -> tuple[object, ...]:
    return (store, txn, member, "2026-05-30 07:30:00.000000", "EUR", 720, "h", "2026-06-01")


def _dated(engine: Engine, row: tuple[object, ...]) -> tuple[object, ...]:
    if engine.dialect.name == "sqlite":
        return row
    return (*row[:3], datetime(2026, 5, 30, 7, 30, tzinfo=UTC), *row[4:7],
            datetime(2026, 6, 1, tzinfo=UTC))


def test_appended_rows_get_their_ids_in_order_across_statements(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(tables.members.insert(), [_member("M-1")])
        # More rows than one SQLite statement binds: three statements' worth.
        purchases = [_dated(engine, _purchase("S-1", f"T-{i}")) for i in range(12_000)]
        ids = insert_with_ids(conn, tables.purchases, (
            "store_id", "transaction_id", "member_id", "occurred_at", "currency",
            "total_minor", "body_hash", "recorded_at"), purchases)
        stored = dict(conn.execute(text("SELECT transaction_id, id FROM purchases")).all())
    assert len(ids) == len(set(ids)) == 12_000
    assert [stored[f"T-{i}"] for i in range(12_000)] == ids


def test_a_taken_key_writes_neither_the_purchase_nor_its_items(engine: Engine) -> None:
    columns = ("store_id", "transaction_id", "member_id", "occurred_at", "currency",
               "total_minor", "body_hash", "recorded_at")
    items = ("member_id", "line_no", "sku", "category", "quantity_milli", "unit_price_minor",
             "amount_minor")
    with write_transaction(engine) as conn:
        conn.execute(tables.members.insert(), [_member("M-1")])
        first = insert_returning_with_children(
            conn, tables.purchases, columns, [_dated(engine, _purchase("S-1", "T-1"))],
            ["store_id", "transaction_id"], ("id", "store_id", "transaction_id"),
            tables.purchase_items, items,
            [("S-1", "T-1", "M-1", 1, "A", "c", 1000, 5, 5)], "purchase_id")
        again = insert_returning_with_children(
            conn, tables.purchases, columns,
            [_dated(engine, _purchase("S-1", "T-1")), _dated(engine, _purchase("S-1", "T-2"))],
            ["store_id", "transaction_id"], ("id", "store_id", "transaction_id"),
            tables.purchase_items, items,
            [("S-1", "T-1", "M-1", 2, "B", "c", 1000, 5, 5),
             ("S-1", "T-2", "M-1", 1, "C", "c", 1000, 5, 5)], "purchase_id")
        stored = conn.execute(text(
            "SELECT p.transaction_id, i.line_no, i.sku, i.purchase_id = p.id FROM purchases p "
            "JOIN purchase_items i ON i.purchase_id = p.id ORDER BY 1, 2")).all()
    assert [r[1:] for r in first] == [("S-1", "T-1")]
    assert [r[1:] for r in again] == [("S-1", "T-2")]  # T-1 was taken: not returned
    assert [tuple(r) for r in stored] == [("T-1", 1, "A", True), ("T-2", 1, "C", True)]


def test_look_ups_after_a_lock_see_each_table(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(tables.members.insert(), [_member("M-1"),
                                               _member("M-2")])
        found = lock_then_look_up(conn, "a key", [
            Lookup(tables.members, ("member_id",), ("M-1",), ("member_id",)),
            Lookup(tables.members, ("member_id",), ("nobody",), ("member_id",)),
            Lookup(tables.enrolments, ("member_id",), ("M-1",), ("program_id",))])
        counters = lock_rows_then_select(conn, tables.members, "member_id", ["M-1", "M-2"],
                                         tables.members, ("member_id",))
    assert found == [[("M-1",)], [], []]
    assert sorted(counters) == [("M-1",), ("M-2",)]
