"""What the relationship measures count, on both databases: a program's members' purchases
in its currency and stores, its counted lines only, net of refunds by the as-of instant
(pro rata; a purchase refunded in full counts nowhere), each on its local day in the
program's zone across the daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from loyalty_engine.records.counted_purchases import counted_lines, counted_purchases, offsets
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store.database import read_transaction

from .walk import apply_text, buy, refund

# The small shop of the analytics tests (one euro one point; tobacco excluded).
PROGRAM = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
           / "corner-shop.yaml").read_text(encoding="utf-8")
COFFEE = ("LATTE", "coffee", "1", "4.00")
TOBACCO = ("CIGS", "tobacco", "1", "6.00")


def _rows(engine: Engine, as_of: datetime) -> tuple[list[tuple[object, ...]],
                                                   list[tuple[object, ...]]]:
    with read_transaction(engine) as conn:
        program = load_catalog(conn).versions("corner-shop")[-1].program
        purchases = counted_purchases(conn, program, as_of)
        lines = counted_lines(conn, program, as_of)
        return ([tuple(r) for r in conn.execute(
                    select(purchases.c.member_id, purchases.c.local_day, purchases.c.net_minor)
                    .order_by(purchases.c.purchase_id))],
                [tuple(r) for r in conn.execute(
                    select(lines.c.purchase_id, lines.c.category, lines.c.net_minor)
                    .order_by(lines.c.purchase_id, lines.c.category))])


def test_counted_spend_net_of_refunds_on_local_days(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, PROGRAM)
    # 1: 23:30 local on 28 March 2026 (UTC+1) is 22:30 UTC: local day the 28th.
    buy(engine, "T1", "2026-03-28T23:30:00+01:00", [COFFEE, TOBACCO])
    # 2: 00:30 local on 29 March (after 02:00 the clocks go to UTC+2): 23:30 UTC on the 28th.
    buy(engine, "T2", "2026-03-29T00:30:00+01:00", [COFFEE, COFFEE])
    # 3: 00:30 local on 25 October 2026 (UTC+2): 22:30 UTC on the 24th, local the 25th.
    buy(engine, "T3", "2026-10-25T00:30:00+02:00", [COFFEE], member="M-2")
    buy(engine, "T4", "2026-11-02", [COFFEE], member="M-2")  # refunded in full below
    buy(engine, "T5", "2026-11-03", [TOBACCO], member="M-2")  # nothing counted
    buy(engine, "T6", "2026-11-04", [COFFEE], member="M-3", store="RTM-01")  # not its store
    refund(engine, "R1", "T2", "2026-04-01", "3.00")  # 3.00 of 8.00 back: 8.00 x 5/8 = 5.00
    refund(engine, "R4", "T4", "2026-11-05", "4.00")
    before_refunds = datetime(2026, 3, 31, tzinfo=UTC)
    late = datetime(2026, 12, 1, tzinfo=UTC)
    # T1 counts its coffee only (the tobacco is excluded): 4.00.
    assert _rows(engine, late)[0] == [
        ("M-1", "2026-03-28", 400), ("M-1", "2026-03-29", 500), ("M-2", "2026-10-25", 400)]
    # As of 31 March neither refund had happened, and T3 and later had not been made.
    assert _rows(engine, before_refunds)[0] == [
        ("M-1", "2026-03-28", 400), ("M-1", "2026-03-29", 800)]
    # Lines: T2's two coffee lines of 4.00 each lose 4.00 x 3/8 = 1.50 each.
    lines = _rows(engine, late)[1]
    assert [(category, net) for _, category, net in lines] == [
        ("coffee", 400), ("coffee", 250), ("coffee", 250), ("coffee", 400)]


def test_the_zone_offsets_change_on_the_minute() -> None:
    zone = ZoneInfo("Europe/Amsterdam")
    found = offsets(zone, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    assert [(at.isoformat(), seconds) for at, seconds in found[1:]] == [
        ("2026-03-29T01:00:00+00:00", 7200), ("2026-10-25T01:00:00+00:00", 3600)]
    assert found[0][1] == 3600
    assert len(offsets(ZoneInfo("Asia/Tokyo"), datetime(2020, 1, 1, tzinfo=UTC),
                       datetime(2026, 1, 1, tzinfo=UTC))) == 1
