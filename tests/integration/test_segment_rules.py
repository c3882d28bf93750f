"""Rules acting on members' RFM snapshots, on both databases: "at-risk members earn double
points" as one rule earns double only for purchases made after the snapshot that put the
member at risk (a late-posted purchase dated before it earns single), the ledger entry
names the segment; member.rfm.r and member.tenure_days in expressions.

The snapshots are written directly (the snapshot job is another part's): what matters here
is that each purchase sees the one in force at its own time."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, insert, select

from loyalty_engine.services.importing import import_purchases
from loyalty_engine.services.members import explain_member
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction, write_transaction

from .walk import RECORDED_AT, apply_text, assert_ledger_exact, at, buy, points

AT_RISK_DOUBLE = """\
program: seg-shop
name: Segment shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
    multipliers:
      - id: at-risk-double
        when: {segments: [at_risk]}
        factor: 2
"""

COFFEE = ("LATTE", "coffee", "1", "10.00")


def snapshot(engine: Engine, member: str, taken: str, r: int, f: int, m: int,
             segment: str, program: str = "seg-shop") -> None:
    """A stored RFM snapshot taken at an instant (the local day is its as-of date)."""
    taken_at = at(taken)
    with write_transaction(engine) as conn:
        if conn.execute(select(tables.members.c.member_id)
                        .where(tables.members.c.member_id == member)).first() is None:
            conn.execute(insert(tables.members).values(
                member_id=member, created_at=datetime(2026, 1, 1, tzinfo=UTC), attributes={}))
        conn.execute(insert(tables.rfm_snapshots).values(
            member_id=member, program_id=program, as_of_date=taken_at.date(),
            taken_at=taken_at, recency_days=10, frequency=3, monetary_minor=3000, r=r, f=f,
            m=m, segment=segment, clv_minor=None, p_alive=None,
            recorded_at=taken_at))


def entries(engine: Engine, member: str = "M-1") -> dict[str, tuple[int, str]]:
    """Each purchase's earning: transaction -> (points, why)."""
    with read_transaction(engine) as conn:
        explained = explain_member(conn, member)
    return {e["transaction_id"]: (e["points"], e["why"])
            for program in explained["programs"] for e in program["entries"]
            if e["kind"] == "earn"}


def test_at_risk_members_earn_double_after_the_snapshot_that_put_them_at_risk(
        engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, AT_RISK_DOUBLE)
    snapshot(engine, "M-1", "2026-02-02T05:00:00+01:00", 4, 3, 3, "potential_loyalists")
    snapshot(engine, "M-1", "2026-03-02T05:00:00+01:00", 2, 3, 3, "at_risk")
    # Before any snapshot, under the first one, and under the at-risk one (in time order).
    buy(engine, "T1", "2026-01-20", [COFFEE])
    buy(engine, "T2", "2026-02-10", [COFFEE])
    buy(engine, "T3", "2026-03-02T05:00:00+01:00", [COFFEE])  # the very instant it was taken
    buy(engine, "T4", "2026-03-10", [COFFEE])
    # Posted late: made on 1 March, before the at-risk snapshot, so it earns single.
    buy(engine, "T5", "2026-03-01T18:00:00+01:00", [COFFEE])
    earned = entries(engine)
    # 10.00 EUR at 1 point per euro: 10, doubled to 20 only at and after 2 March 05:00.
    assert {t: p for t, (p, _) in earned.items()} == {
        "T1": 10, "T2": 10, "T3": 20, "T4": 20, "T5": 10}
    assert points(engine, "seg-shop") == (70, 0)
    assert "x2 at-risk-double" in earned["T4"][1]
    assert "because segment at_risk (RFM snapshot of 2026-03-02)" in earned["T4"][1]
    assert "segment" not in earned["T5"][1]  # its points owe nothing to a segment
    assert_ledger_exact(engine)


def test_a_batch_sees_each_snapshot_at_its_own_time(engine: Engine, tmp_path: Path) -> None:
    """An import: one batch whose purchases straddle two snapshots, and a member whose only
    snapshot is older than the batch (loaded as the one in force at its first purchase)."""
    apply_text(engine, tmp_path, AT_RISK_DOUBLE.replace(
        "when: {segments: [at_risk]}", "when: {segments: [at_risk, cant_lose]}"))
    snapshot(engine, "M-1", "2026-02-02T05:00:00+01:00", 1, 3, 3, "at_risk")
    snapshot(engine, "M-1", "2026-03-02T05:00:00+01:00", 4, 3, 3, "potential_loyalists")
    snapshot(engine, "M-1", "2026-04-06T05:00:00+02:00", 1, 5, 3, "cant_lose")
    snapshot(engine, "M-2", "2025-12-01T05:00:00+01:00", 2, 5, 5, "cant_lose")

    def line(transaction: str, member: str, when: str) -> str:
        return json.dumps({
            "transaction_id": transaction, "store_id": "AMS-01", "member_id": member,
            "occurred_at": at(when).isoformat(), "currency": "EUR", "total": "10.00",
            "items": [{"sku": "LATTE", "category": "coffee", "unit_price": "10.00"}]})

    path = tmp_path / "purchases.jsonl"
    path.write_text("\n".join([line("B1", "M-1", "2026-02-20"), line("B2", "M-1", "2026-03-20"),
                               line("B3", "M-2", "2026-02-25"), line("B4", "M-2", "2026-03-25")])
                    + "\n", encoding="utf-8")
    report = import_purchases(engine, path, RECORDED_AT)
    assert report.errors == [] and report.committed
    # M-1: at risk on 20 February (double), a potential loyalist on 20 March (single); the
    # cant_lose snapshot of April is later than every purchase. M-2: can't-lose since
    # December for both.
    assert {t: p for t, (p, _) in entries(engine, "M-1").items()} == {"B1": 20, "B2": 10}
    assert {t: p for t, (p, _) in entries(engine, "M-2").items()} == {"B3": 20, "B4": 20}


RFM_AND_TENURE = """\
program: seg-shop
name: Segment shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
language: 2
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
  - id: recent-again
    kind: fixed_bonus
    points: 7
    when: "member.rfm.r >= 4 && member.segment != ''"
  - id: first-anniversary
    kind: fixed_bonus
    points: 100
    when: "member.tenure_days >= 365"
"""


def test_rfm_scores_and_tenure_in_expressions(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, RFM_AND_TENURE)
    with write_transaction(engine) as conn:
        conn.execute(insert(tables.members).values(
            member_id="M-1", created_at=datetime(2025, 1, 1, tzinfo=UTC), attributes={}))
        # Enrolled on 10 March 2025 at 23:30 UTC: 11 March local (Amsterdam, UTC+1).
        conn.execute(insert(tables.enrolments).values(
            member_id="M-1", program_id="seg-shop",
            enrolled_at=datetime(2025, 3, 10, 23, 30, tzinfo=UTC), source="api"))
    snapshot(engine, "M-1", "2026-03-02T05:00:00+01:00", 5, 2, 2, "potential_loyalists")
    buy(engine, "T1", "2026-03-01", [COFFEE])  # r 0 (no snapshot yet); 355 days enrolled
    buy(engine, "T2", "2026-03-10", [COFFEE])  # r 5; 364 days (11 March 2025 -> 10 March)
    buy(engine, "T3", "2026-03-11", [COFFEE])  # r 5; 365 days
    by_rule: dict[str, dict[str, int]] = {}
    with read_transaction(engine) as conn:
        for transaction, rule, value in conn.execute(
                select(tables.purchases.c.transaction_id, tables.ledger_entries.c.rule_id,
                       tables.ledger_entries.c.points)
                .join(tables.purchases,
                      tables.purchases.c.id == tables.ledger_entries.c.purchase_id)):
            by_rule.setdefault(transaction, {})[rule] = value
    assert by_rule == {
        "T1": {"per-euro": 10},
        "T2": {"per-euro": 10, "recent-again": 7},
        "T3": {"per-euro": 10, "recent-again": 7, "first-anniversary": 100}}
    with read_transaction(engine) as conn:
        reasons = [r for (r,) in conn.execute(
            select(tables.ledger_entries.c.reason)
            .where(tables.ledger_entries.c.rule_id == "recent-again"))]
    assert [r["because"] for r in reasons] == [
        {"segment": "potential_loyalists", "segment_as_of": date(2026, 3, 2).isoformat()}] * 2
