"""Operator basics on both databases: manual adjustments through the ledger, member search,
the GDPR export and erasure (books exact before and after)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import (
    AdjustmentConflictError,
    AdjustmentRejectedError,
    MemberErasedError,
    MemberError,
    NotFoundError,
)
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.services.adjustments import Adjustment, adjust_points
from loyalty_engine.services.enrolment import enrol_member, set_consent
from loyalty_engine.services.members import explain_member, list_members
from loyalty_engine.services.privacy import erase_member, export_member, member_tables
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction
from tests.integration.helpers import BEAN_THERE, NOW, ROOT, event

EXPIRY_SHOP = ROOT / "tests" / "fixtures" / "programs" / "expiry-shop.yaml"
AT = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def _adjustment(points: int, adjustment_id: str = "A-1", *, member_id: str = "M-1",
                program_id: str = "bean-there", reason: str = "coffee spilt on the till",
                kind: str = "goodwill", actor: str = "alice") -> Adjustment:
    return Adjustment(adjustment_id, member_id, program_id, points, reason, kind, actor, AT)


def _books(engine: Engine) -> dict[str, object]:
    """Every number the accounts rest on: balances, ledger and lots per (member, program),
    and the program totals."""
    with read_transaction(engine) as conn:
        b, led, lots = tables.balances, tables.ledger_entries, tables.point_lots
        return {
            "balances": sorted(tuple(r) for r in conn.execute(
                select(b.c.member_id, b.c.program_id, b.c.points, b.c.pending,
                       b.c.lifetime_earned))),
            "ledger": sorted(tuple(r) for r in conn.execute(
                select(led.c.member_id, led.c.program_id, func.sum(led.c.points))
                .group_by(led.c.member_id, led.c.program_id))),
            "lots": sorted(tuple(r) for r in conn.execute(
                select(lots.c.entry_id, lots.c.member_id, lots.c.remaining, lots.c.expires_at))),
            "program_totals": sorted(tuple(r) for r in conn.execute(
                select(b.c.program_id, func.sum(b.c.points)).group_by(b.c.program_id))),
            "purchases": sorted(tuple(r) for r in conn.execute(
                select(tables.purchases.c.id, tables.purchases.c.member_id,
                       tables.purchases.c.total_minor))),
        }


def _audit(engine: Engine) -> list[tuple[str, str, str | None, str]]:
    a = tables.audit_records
    with read_transaction(engine) as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(a.c.actor, a.c.action, a.c.member_id, a.c.reason).order_by(a.c.id))]


@pytest.fixture
def shop(engine: Engine) -> Engine:
    apply_program_files(engine, [BEAN_THERE], NOW)
    # 7 points (7.20 EUR) on 2026-03-14 and 17 on 2026-03-20 (8.95 EUR of beans at x2).
    record_purchase(engine, event("T-1"), NOW)
    record_purchase(engine, event("T-2", occurred_at="2026-03-20T18:00:00+01:00",
                                  items=[("BEANS", "coffee-beans", "1", "8.95")]), NOW)
    return engine


def test_a_credit_is_a_lot_in_the_ledger_explained_and_audited(shop: Engine) -> None:
    outcome = adjust_points(shop, _adjustment(50), NOW)
    assert (outcome.points, outcome.balance, outcome.replayed) == (50, 7 + 17 + 50, False)
    assert check_balances(shop).mismatches == []
    program = explain_member(shop, "M-1")["programs"][0]
    entry = program["entries"][-1]
    assert (entry["kind"], entry["points"]) == ("adjust", 50)
    assert entry["why"] == ("manual adjustment A-1 (goodwill credit) by alice: coffee spilt "
                            "on the till")
    assert program["points"] == 74
    assert _audit(shop) == [("alice", "points_adjusted", "M-1", "coffee spilt on the till")]


def test_a_credit_expires_as_the_program_says(engine: Engine) -> None:
    apply_program_files(engine, [EXPIRY_SHOP], NOW)
    enrol_member(engine, "M-1", {}, {}, AT, NOW, "expiry-shop")
    adjust_points(engine, _adjustment(30, program_id="expiry-shop"), NOW)
    with read_transaction(engine) as conn:
        lot = conn.execute(select(tables.point_lots.c.points, tables.point_lots.c.expires_at)
                           ).one()
    # Three months after 2026-06-01 12:00 Amsterdam (10:00 UTC).
    assert lot.points == 30
    assert lot.expires_at == datetime(2026, 9, 1, 10, 0, tzinfo=UTC)


def test_a_debit_spends_the_oldest_lots_and_never_below_zero(shop: Engine) -> None:
    outcome = adjust_points(shop, _adjustment(-10, kind="correction",
                                              reason="T-2 was counted twice"), NOW)
    assert outcome.balance == 14
    with read_transaction(shop) as conn:
        remaining = [r for (r,) in conn.execute(
            select(tables.point_lots.c.remaining).order_by(tables.point_lots.c.earned_at))]
    assert remaining == [0, 14]  # 7 from the first lot, then 3 from the second
    why = explain_member(shop, "M-1")["programs"][0]["entries"][-1]["why"]
    assert why.endswith("(correction) by alice: T-2 was counted twice; taken from lot 1 (7), "
                        "lot 2 (3)")
    before = _books(shop)
    with pytest.raises(AdjustmentRejectedError, match=r"has 14 spendable points.*below zero"):
        adjust_points(shop, _adjustment(-15, "A-2"), NOW)
    assert _books(shop) == before
    assert len(_audit(shop)) == 1  # the refused debit left no record either
    assert check_balances(shop).mismatches == []


def test_an_adjustment_is_made_once_per_id(shop: Engine) -> None:
    adjust_points(shop, _adjustment(5), NOW)
    again = adjust_points(shop, _adjustment(5), NOW)
    assert again.replayed and again.balance == 29
    with pytest.raises(AdjustmentConflictError, match="A-1"):
        adjust_points(shop, _adjustment(6), NOW)
    assert len(_audit(shop)) == 1


@pytest.mark.parametrize(("points", "reason", "kind", "member", "message"), [
    (5, "  ", "goodwill", "M-1", "needs a reason"),
    (0, "why", "goodwill", "M-1", "0 points"),
    (5, "why", "bribe", "M-1", "not an adjustment kind"),
    (5, "why", "goodwill", "M-404", "no member"),
])
def test_an_adjustment_that_cannot_be_is_refused(shop: Engine, points: int, reason: str,
                                                 kind: str, member: str, message: str) -> None:
    before = _books(shop)
    with pytest.raises(AdjustmentRejectedError, match=message):
        adjust_points(shop, _adjustment(points, reason=reason, kind=kind, member_id=member),
                      NOW)
    assert _books(shop) == before


def test_members_are_searched_filtered_sorted_and_counted(shop: Engine) -> None:
    enrol_member(shop, "M-2", {"email": "Ann@Example.com"}, {}, AT, NOW, "bean-there")
    enrol_member(shop, "X-100%", {"city": "Utrecht"}, {}, AT, NOW)
    adjust_points(shop, _adjustment(40, member_id="M-2"), NOW)
    page = list_members(shop)
    assert page.total == 3 and [r.member_id for r in page.rows] == ["M-1", "M-2", "X-100%"]
    assert page.rows[0].balances == {"bean-there": (24, 0)}
    found = list_members(shop, search="ann@EX")
    assert (found.total, [r.member_id for r in found.rows]) == (1, ["M-2"])
    # % and _ are matched literally, not as wildcards.
    assert [r.member_id for r in list_members(shop, search="0%").rows] == ["X-100%"]
    assert list_members(shop, search="_").total == 0
    enrolled = list_members(shop, program="bean-there", sort="points:desc")
    assert [(r.member_id, r.balances) for r in enrolled.rows] == [
        ("M-2", {"bean-there": (40, 0)}), ("M-1", {"bean-there": (24, 0)})]
    second = list_members(shop, sort="member_id:desc", limit=1, offset=1)
    assert (second.total, [r.member_id for r in second.rows]) == (3, ["M-2"])
    assert next(r.member_id for r in list_members(shop, sort="purchases:desc").rows) == "M-1"
    with pytest.raises(MemberError, match="needs a program"):
        list_members(shop, sort="points")
    with pytest.raises(MemberError, match="not a sort order"):
        list_members(shop, sort="name")


def test_the_export_holds_every_table_with_a_member_id(shop: Engine) -> None:
    enrol_member(shop, "M-1", {"email": "m1@example.com"}, {"marketing": True}, AT, NOW)
    adjust_points(shop, _adjustment(5), NOW)
    holding = {name for name, t in tables.metadata.tables.items() if "member_id" in t.c}
    assert {t.name for t in member_tables()} == holding
    data = export_member(shop, "M-1", NOW)
    assert set(data["tables"]) == holding | {"api_responses"}
    assert data["tables"]["members"][0]["attributes"] == {"email": "m1@example.com"}
    for name, rows in (("member_consents", 1), ("enrolments", 1), ("purchases", 2),
                       ("purchase_items", 2), ("ledger_entries", 3), ("point_lots", 3),
                       ("balances", 1), ("audit_records", 1)):
        assert len(data["tables"][name]) == rows, name
    assert all(r["member_id"] == "M-1" for name, rows in data["tables"].items()
               if name != "api_responses" for r in rows)
    with pytest.raises(NotFoundError):
        export_member(shop, "M-404", NOW)


def test_erasure_removes_personal_data_and_keeps_the_books_exact(shop: Engine,
                                                                 tmp_path: Path) -> None:
    enrol_member(shop, "M-1", {"email": "m1@example.com", "name": "Ann"},
                 {"marketing": True}, AT, NOW)
    adjust_points(shop, _adjustment(-4, kind="correction"), NOW)
    before = _books(shop)
    result = erase_member(shop, "M-1", "dpo", "request 2026-117", NOW + timedelta(hours=1))
    assert result["removed"]["attributes"] == ["email", "name"]
    assert result["removed"]["consents"] == 1
    assert _books(shop) == before
    assert check_balances(shop).mismatches == []
    data = export_member(shop, "M-1", NOW)["tables"]
    assert data["members"][0]["attributes"] == {}
    assert data["members"][0]["erased_at"] is not None
    assert data["member_consents"] == []
    assert _audit(shop)[-1] == ("dpo", "member_erased", "M-1", "request 2026-117")
    # The id takes no new personal data, enrolment or adjustment; erasing again is a no-op.
    with pytest.raises(MemberErasedError, match="was erased"):
        enrol_member(shop, "M-1", {"email": "x@example.com"}, {}, AT, NOW)
    with pytest.raises(MemberErasedError):
        set_consent(shop, "M-1", "marketing", True, AT)
    with pytest.raises(AdjustmentRejectedError, match="erased"):
        adjust_points(shop, _adjustment(5, "A-9"), NOW)
    again = erase_member(shop, "M-1", "dpo", "again", NOW + timedelta(hours=2))
    assert again["already_erased"] and len(_audit(shop)) == 2
    assert list_members(shop).rows[0].erased
