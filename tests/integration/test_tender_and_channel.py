"""Tender and channel on both databases: stored with the purchase, shown with the member,
read from import files (an unknown one reported at file:line with the field), and a refund
that takes back what an app purchase earned."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, select

from loyalty_engine.services.importing import CSV_COLUMNS, import_purchases
from loyalty_engine.services.members import show_member
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

from .walk import RECORDED_AT, apply_files, buy, points, refund

ROOT = Path(__file__).resolve().parents[2]
STARS = ROOT / "tests" / "fixtures" / "programs" / "coffee-stars.yaml"
LATTE = ("LATTE", "coffee", "1", "4.00")


def _stored(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    p = tables.purchases
    with read_transaction(engine) as conn:
        return {r.transaction_id: (r.tender, r.channel) for r in conn.execute(
            select(p.c.transaction_id, p.c.tender, p.c.channel))}


def test_tender_and_channel_are_stored_and_shown(engine: Engine) -> None:
    apply_files(engine, STARS)
    buy(engine, "T1", "2026-02-02", [LATTE], tender="app", channel="app")
    buy(engine, "T2", "2026-02-03", [LATTE], tender="cash")
    buy(engine, "T3", "2026-02-04", [LATTE])
    assert _stored(engine) == {"T1": ("app", "app"), "T2": ("cash", None), "T3": (None, None)}
    shown = show_member(engine, "M-1", RECORDED_AT)
    assert [(p["transaction_id"], p["tender"], p["channel"])
            for p in shown["recent_purchases"]] == [
        ("T3", None, None), ("T2", "cash", None), ("T1", "app", "app")]
    # T1: 4.00 paid in the app, 2 stars per euro = 8, and 5 for ordering ahead in the app;
    # T2 and T3: 4 stars each (1 per euro). 13 + 4 + 4 = 21.
    assert points(engine, "coffee-stars") == (21, 0)


def test_import_files_carry_tender_and_channel(engine: Engine, tmp_path: Path) -> None:
    apply_files(engine, STARS)
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({
        "transaction_id": "J1", "store_id": "AMS-01", "member_id": "M-1",
        "occurred_at": "2026-02-02T09:00:00+01:00", "currency": "EUR", "total": "4.00",
        "tender": "app", "channel": "web",
        "items": [{"sku": "LATTE", "category": "coffee", "unit_price": "4.00"}]}) + "\n",
        encoding="utf-8")
    assert import_purchases(engine, jsonl, RECORDED_AT).errors == []
    header = ",".join([*CSV_COLUMNS, "tender", "channel"])
    csv = tmp_path / "p.csv"
    csv.write_text("\n".join([
        header,
        "C1,AMS-01,M-1,2026-02-03T09:00:00+01:00,EUR,6.00,LATTE,coffee,1,4.00,app,store",
        "C1,AMS-01,M-1,2026-02-03T09:00:00+01:00,EUR,6.00,SCONE,pastry,1,2.00,app,store",
        "C2,AMS-01,M-1,2026-02-03T10:00:00+01:00,EUR,4.00,LATTE,coffee,1,4.00,,",
    ]) + "\n", encoding="utf-8")
    report = import_purchases(engine, csv, RECORDED_AT)
    assert report.errors == [] and report.committed
    assert _stored(engine) == {"J1": ("app", "web"), "C1": ("app", "store"), "C2": (None, None)}
    # J1: 4.00 x 2 = 8. C1: latte 4.00 x 2 = 8, scone 2.00 x 2 x 1.5 (breakfast bonus) = 6;
    # 14. C2: 4 (1 per euro). 8 + 14 + 4 = 26.
    assert points(engine, "coffee-stars") == (26, 0)


def test_an_unknown_tender_in_an_import_is_reported_at_its_line(engine: Engine,
                                                                 tmp_path: Path) -> None:
    apply_files(engine, STARS)
    header = ",".join([*CSV_COLUMNS, "tender"])
    csv = tmp_path / "bad.csv"
    csv.write_text("\n".join([
        header,
        "C1,AMS-01,M-1,2026-02-03T09:00:00+01:00,EUR,4.00,LATTE,coffee,1,4.00,app",
        "C2,AMS-01,M-1,2026-02-03T10:00:00+01:00,EUR,4.00,LATTE,coffee,1,4.00,apple",
        "C3,AMS-01,M-1,2026-02-03T11:00:00+01:00,EUR,6.00,LATTE,coffee,1,4.00,app",
        "C3,AMS-01,M-1,2026-02-03T11:00:00+01:00,EUR,6.00,SCONE,pastry,1,2.00,card",
    ]) + "\n", encoding="utf-8")
    report = import_purchases(engine, csv, RECORDED_AT)
    assert not report.committed
    reasons = {e.line: e.reason for e in report.errors}
    assert reasons == {
        3: "tender: Input should be 'card', 'app', 'cash', 'gift_card' or 'points'",
        4: "line 5: tender differ(s) from the first row of the same transaction"}
    assert _stored(engine) == {}


def test_a_refund_takes_back_what_the_purchase_earned_whatever_the_tender(
        engine: Engine) -> None:
    apply_files(engine, STARS)
    # 10.00 of coffee paid in the app on Mon 2 Feb: 2 stars per euro = 20.
    buy(engine, "T1", "2026-02-02", [("LATTE", "coffee", "2", "5.00")], tender="app")
    assert points(engine, "coffee-stars") == (20, 0)
    # Half of it back (the refund says nothing of the tender): 20 x 5.00 / 10.00 = 10 back.
    outcome = refund(engine, "R1", "T1", "2026-02-03", "5.00")
    assert outcome.points == {"coffee-stars": 10}
    assert points(engine, "coffee-stars") == (10, 0)
