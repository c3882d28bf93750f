"""record_purchase: points awarded exactly once per (store_id, transaction_id), with reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text

from loyalty_engine.domain.errors import (
    ProgramApplyError,
    PurchaseConflictError,
    PurchaseRejectedError,
)
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.records.purchase_writer import Award
from loyalty_engine.services.members import explain_member, list_members, show_member
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.tables import PurchaseItem
from tests.integration.helpers import (
    BEAN_THERE,
    NOW,
    balance,
    count,
    counts,
    event,
    ledger_sums,
    program_yaml,
    write_program,
)


@pytest.fixture
def bean_there(engine: Engine) -> Engine:
    apply_program_files(engine, [BEAN_THERE], NOW)
    return engine


def test_purchase_awards_points(bean_there: Engine) -> None:
    outcome = record_purchase(bean_there, event("T-1"), NOW)
    assert outcome.replayed is False
    assert (outcome.store_id, outcome.transaction_id, outcome.member_id) == (
        "AMS-01", "T-1", "M-1")
    assert outcome.awards == (Award("bean-there", 1, "points-per-euro", 7),)
    assert balance(bean_there, "M-1", "bean-there") == 7
    with read_transaction(bean_there) as conn:
        items = conn.execute(select(PurchaseItem.__table__)).mappings().all()
    assert [(i["sku"], i["quantity_milli"], i["unit_price_minor"], i["amount_minor"])
            for i in items] == [("FLAT-WHITE", 2000, 360, 720)]


def test_replay_returns_the_original_outcome_and_writes_nothing(bean_there: Engine) -> None:
    first = record_purchase(bean_there, event("T-1"), NOW)
    before = counts(bean_there)
    again = record_purchase(bean_there, event("T-1"), NOW)
    assert again.replayed is True
    assert again.purchase_id == first.purchase_id
    assert again.awards == first.awards
    assert again.points == 7
    assert counts(bean_there) == before
    assert balance(bean_there, "M-1", "bean-there") == 7


def test_replay_with_equivalent_formatting_is_a_replay(bean_there: Engine) -> None:
    first = record_purchase(bean_there, event("T-1", total="7.20"), NOW)
    # Same instant in another offset, same amounts written differently.
    same = event("T-1", occurred_at="2026-03-14T08:30:00Z", total="7.2",
                 items=[("FLAT-WHITE", "coffee", "2.000", "3.6")])
    again = record_purchase(bean_there, same, NOW)
    assert (again.replayed, again.purchase_id, again.awards) == (True, first.purchase_id,
                                                                 first.awards)
    assert count(bean_there, "purchases") == 1


def test_replay_after_a_program_change_keeps_the_original_awards(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    first = record_purchase(engine, event("T-1", occurred_at="2026-07-01T10:00:00+00:00"), NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="10"))
    apply_program_files(engine, [path], NOW, effective_from=datetime(2026, 7, 2, tzinfo=UTC))
    again = record_purchase(engine, event("T-1", occurred_at="2026-07-01T10:00:00+00:00"), NOW)
    assert again.replayed is True
    assert again.awards == first.awards == (Award("test-shop", 1, "per-unit", 7),)
    assert balance(engine, "M-1", "test-shop") == 7


def test_a_version_cannot_take_effect_before_purchases_already_evaluated(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="1"))
    apply_program_files(engine, [path], NOW)
    record_purchase(engine, event("T-1", occurred_at="2026-07-01T10:00:00+00:00"), NOW)
    write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="10"))
    with pytest.raises(ProgramApplyError, match="already evaluated under version 1"):
        apply_program_files(engine, [path], NOW,
                            effective_from=datetime(2026, 6, 15, tzinfo=UTC))
    # Nothing was stored: a later purchase at the same instant still earns under version 1.
    later = record_purchase(engine, event("T-2", occurred_at="2026-07-01T10:00:00+00:00"), NOW)
    assert later.awards == (Award("test-shop", 1, "per-unit", 7),)


@pytest.mark.parametrize("change", [
    {"total": "3.60", "items": [("FLAT-WHITE", "coffee", "1", "3.60")]},
    {"member_id": "M-2"},
    {"member_id": None},
    {"occurred_at": "2026-03-14T09:31:00+01:00"},
    {"items": [("CAPPUCCINO", "coffee", "2", "3.60")]},
])
def test_same_key_with_different_body_is_a_conflict(bean_there: Engine, change: dict) -> None:
    record_purchase(bean_there, event("T-1"), NOW)
    before = counts(bean_there)
    with pytest.raises(PurchaseConflictError) as info:
        record_purchase(bean_there, event("T-1", **change), NOW)
    assert (info.value.store_id, info.value.transaction_id) == ("AMS-01", "T-1")
    assert "'T-1'" in str(info.value) and "'AMS-01'" in str(info.value)
    assert counts(bean_there) == before
    assert balance(bean_there, "M-1", "bean-there") == 7


def test_same_transaction_id_at_another_store_is_another_purchase(bean_there: Engine) -> None:
    a = record_purchase(bean_there, event("T-1", store_id="AMS-01"), NOW)
    b = record_purchase(bean_there, event("T-1", store_id="UTR-01",
                                          items=[("LATTE", "coffee", "1", "4.10")]), NOW)
    assert not a.replayed and not b.replayed
    assert a.purchase_id != b.purchase_id
    assert (a.points, b.points) == (7, 4)
    assert count(bean_there, "purchases") == 2
    assert balance(bean_there, "M-1", "bean-there") == 11


def test_anonymous_purchase_is_stored_and_earns_nothing(bean_there: Engine) -> None:
    outcome = record_purchase(bean_there, event("T-ANON", member_id=None), NOW)
    assert (outcome.member_id, outcome.awards, outcome.replayed) == (None, (), False)
    c = counts(bean_there)
    assert (c["purchases"], c["purchase_items"]) == (1, 1)
    assert (c["members"], c["ledger_entries"], c["balances"], c["enrolments"]) == (0, 0, 0, 0)
    again = record_purchase(bean_there, event("T-ANON", member_id=None), NOW)
    assert (again.replayed, again.purchase_id) == (True, outcome.purchase_id)


def test_unknown_member_is_created_and_enrolled_in_the_open_program(bean_there: Engine) -> None:
    record_purchase(bean_there, event("T-1", member_id="NEW-7",
                                      occurred_at="2026-03-14T09:30:00+01:00"), NOW)
    member = show_member(bean_there, "NEW-7", NOW)
    assert [(e["program_id"], e["source"]) for e in member["enrolments"]] == [
        ("bean-there", "auto")]
    assert member["enrolments"][0]["enrolled_at"].isoformat() == "2026-03-14T08:30:00+00:00"
    assert [(b["program_id"], b["points"], b["lifetime_earned"]) for b in member["balances"]] == [
        ("bean-there", 7, 7)]
    assert [(r["transaction_id"], r["total_minor"], r["occurred_at"])
            for r in member["recent_purchases"]] == [
        ("T-1", 720, datetime(2026, 3, 14, 8, 30, tzinfo=UTC))]
    assert member["attributes"] == {}


def test_member_below_minimum_spend_is_enrolled_with_zero_balance(bean_there: Engine) -> None:
    outcome = record_purchase(
        bean_there, event("T-1", items=[("ESPRESSO", "coffee", "1", "1.99")]), NOW)
    assert outcome.awards == ()
    member = show_member(bean_there, "M-1", NOW)
    assert [e["program_id"] for e in member["enrolments"]] == ["bean-there"]
    assert balance(bean_there, "M-1", "bean-there") == 0
    assert count(bean_there, "ledger_entries") == 0
    assert check_balances(bean_there).mismatches == []


def test_wrong_currency_is_rejected_and_nothing_stored(bean_there: Engine) -> None:
    before = counts(bean_there)
    with pytest.raises(PurchaseRejectedError, match="USD") as info:
        record_purchase(bean_there, event("T-USD", currency="USD", member_id="M-NEW"), NOW)
    assert "bean-there" in str(info.value)
    assert counts(bean_there) == before
    # The key is still free: the right purchase can be posted afterwards.
    assert record_purchase(bean_there, event("T-USD", member_id="M-NEW"), NOW).points == 7


def test_exclusions_multipliers_and_rounding_reach_ledger_and_balance(bean_there: Engine) -> None:
    items = [
        ("FLAT-WHITE", "coffee", "1", "3.60"),             # 3.60 x1
        ("BEANS-HOUSE-250G", "coffee-beans", "1", "8.95"),  # 8.95 x2
        ("GIFT-CARD-25", "gift-cards", "1", "25.00"),       # excluded category
        ("DEPOSIT-BOTTLE", "drinks", "2", "0.15"),          # excluded sku
    ]
    outcome = record_purchase(bean_there, event("T-1", items=items), NOW)
    # (3.60 + 2 x 8.95) = 21.50 -> floor -> 21
    assert outcome.awards == (Award("bean-there", 1, "points-per-euro", 21),)
    [program] = explain_member(bean_there, "M-1")["programs"]
    assert (program["program_id"], program["points"], program["pending"]) == (
        "bean-there", 21, 0)
    [entry] = program["entries"]
    assert (entry["points"], entry["rule_id"], entry["version"], entry["kind"]) == (
        21, "points-per-euro", 1, "earn")
    # Said as a sentence, worked by hand: 3.60 + 8.95 + 25.00 + 0.30 bought, of which the
    # gift card and the deposit are excluded; the beans count twice.
    assert entry["why"] == ("1 point(s) per EUR on 12.55 EUR; 2 excluded item(s) not counted; "
                            "x2 on coffee-beans (8.95 EUR); rounded down")
    reason = entry["reason"]
    assert reason["eligible_spend_minor"] == 1255
    assert reason["excluded_items"] == 2
    assert reason["rounding"] == "floor"
    assert reason["multipliers"] == {"coffee-beans": {"spend_minor": 895, "multiplier": "2"}}
    assert entry["total_minor"] == 360 + 895 + 2500 + 30
    assert balance(bean_there, "M-1", "bean-there") == 21
    lots = show_member(bean_there, "M-1", NOW)["lots"]
    assert [(lot["points"], lot["remaining"]) for lot in lots] == [(21, 21)]


def test_only_excluded_items_earn_nothing(bean_there: Engine) -> None:
    outcome = record_purchase(
        bean_there, event("T-1", items=[("GIFT-CARD-25", "gift-cards", "4", "25.00")]), NOW)
    assert outcome.awards == ()
    assert balance(bean_there, "M-1", "bean-there") == 0


@pytest.mark.parametrize(("rounding", "expected"), [
    # spends: 2.50 at 1.5/EUR = 3.75; 3.00 at 1.5 = 4.5; 1.00 at 1.5 = 1.5; 1.70 at 1.5 = 2.55
    ("floor", [3, 4, 1, 2]),
    ("ceiling", [4, 5, 2, 3]),
    ("half_up", [4, 5, 2, 3]),
    ("half_even", [4, 4, 2, 3]),
])
def test_rounding_modes_reach_the_ledger(
    engine: Engine, tmp_path: Path, rounding: str, expected: list[int]
) -> None:
    path = write_program(tmp_path, "shop.yaml",
                         program_yaml(points_per_unit="1.5", rounding=rounding))
    apply_program_files(engine, [path], NOW)
    spends = ["2.50", "3.00", "1.00", "1.70"]
    got = [
        record_purchase(engine, event(f"T-{i}", items=[("X", "misc", "1", s)]), NOW).points
        for i, s in enumerate(spends)
    ]
    assert got == expected
    [program] = explain_member(engine, "M-1")["programs"]
    entries = program["entries"]
    assert [e["points"] for e in entries] == expected
    assert {e["reason"]["rounding"] for e in entries} == {rounding}
    assert balance(engine, "M-1", "test-shop") == sum(expected)


def test_line_amounts_round_half_up_to_the_cent(engine: Engine, tmp_path: Path) -> None:
    path = write_program(tmp_path, "shop.yaml", program_yaml(points_per_unit="100"))
    apply_program_files(engine, [path], NOW)
    # 0.333 kg at 2.99/kg = 0.99567 -> 1.00; 1.5 at 0.05 = 0.075 -> 0.08
    items = [("CHEESE", "deli", "0.333", "2.99"), ("BAG", "misc", "1.5", "0.05")]
    outcome = record_purchase(engine, event("T-1", items=items, total="1.08"), NOW)
    assert outcome.points == 108
    assert balance(engine, "M-1", "test-shop") == 108


def test_two_programs_award_separately_and_balances_check_out(
    engine: Engine, tmp_path: Path
) -> None:
    other = write_program(tmp_path, "other.yaml",
                          program_yaml("bakery-club", points_per_unit="0.5", rounding="ceiling"))
    apply_program_files(engine, [BEAN_THERE, other], NOW)
    outcome = record_purchase(engine, event("T-1"), NOW)
    assert sorted(outcome.awards) == sorted([
        Award("bean-there", 1, "points-per-euro", 7), Award("bakery-club", 1, "per-unit", 4)])
    record_purchase(engine, event("T-2", member_id="M-2"), NOW)
    record_purchase(engine, event("T-1"), NOW)
    assert balance(engine, "M-1", "bean-there") == 7
    assert balance(engine, "M-1", "bakery-club") == 4
    result = check_balances(engine)
    assert result.checked == 4
    assert result.mismatches == []
    assert all(led == bal == lots for led, bal, lots in ledger_sums(engine).values())


def test_check_balances_reports_a_tampered_balance(bean_there: Engine) -> None:
    record_purchase(bean_there, event("T-1"), NOW)
    assert check_balances(bean_there).mismatches == []
    with bean_there.begin() as conn:
        conn.execute(text("UPDATE balances SET points = points + 5"))
    [mismatch] = check_balances(bean_there).mismatches
    assert (mismatch["member_id"], mismatch["balance"], mismatch["ledger"]) == ("M-1", 12, 7)


def test_members_list_shows_points_purchases_and_last_visit(bean_there: Engine) -> None:
    record_purchase(bean_there, event("T-1", occurred_at="2026-03-14T09:30:00+01:00"), NOW)
    record_purchase(bean_there, event("T-2", occurred_at="2026-03-20T18:00:00+01:00",
                                      items=[("BEANS", "coffee-beans", "1", "8.95")]), NOW)
    record_purchase(bean_there, event("T-3", member_id="M-2"), NOW)
    record_purchase(bean_there, event("T-4", member_id=None), NOW)
    record_purchase(bean_there, event("T-1", occurred_at="2026-03-14T09:30:00+01:00"), NOW)
    rows = [(m.member_id, m.balances["bean-there"][0], m.purchases, m.last_purchase_at)
            for m in list_members(bean_there).rows]
    assert rows == [
        ("M-1", 7 + 17, 2, datetime(2026, 3, 20, 17, 0, tzinfo=UTC)),
        ("M-2", 7, 1, datetime(2026, 3, 14, 8, 30, tzinfo=UTC)),
    ]
