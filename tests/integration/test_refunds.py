"""record_refund on real databases: exact pro-rata reversal, shortfalls, stamps, errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import RefundConflictError, RefundRejectedError
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.services.points import activate_pending, expire_points
from loyalty_engine.services.refunds import record_refund
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction
from tests.integration.walk import (
    COFFEE,
    GROCERY,
    RECORDED_AT,
    Item,
    apply_files,
    apply_text,
    assert_ledger_exact,
    at,
    buy,
    points,
    refund,
    spend,
    stamps,
    state,
    total_of,
)

# --- small readers of what the database holds ------------------------------------------


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the schema."""
    with read_transaction(engine) as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in tables.metadata.sorted_tables}


def ledger(engine: Engine, program: str | None = None) -> list[tuple[str, int]]:
    """(kind, points) of every ledger entry, in the order written."""
    le = tables.ledger_entries
    query = select(le.c.kind, le.c.points).order_by(le.c.id)
    if program is not None:
        query = query.where(le.c.program_id == program)
    with read_transaction(engine) as conn:
        return [(r.kind, r.points) for r in conn.execute(query)]


def debts(engine: Engine) -> list[tuple[str, int, int, bool]]:
    """(program, points, outstanding, in_balance) of every point debt, oldest first."""
    d = tables.point_debts
    with read_transaction(engine) as conn:
        return [(r.program_id, r.points, r.outstanding, bool(r.in_balance)) for r in conn.execute(
            select(d.c.program_id, d.c.points, d.c.outstanding, d.c.in_balance).order_by(d.c.id))]


def vouchers(engine: Engine) -> dict[str, str]:
    """Every voucher's status by code."""
    v = tables.vouchers
    with read_transaction(engine) as conn:
        return {r.code: r.status for r in conn.execute(select(v.c.code, v.c.status))}


def assert_restored(before: dict[str, Any], after: dict[str, Any]) -> None:
    """After a full refund the member has exactly what they had before the purchase: the
    purchase's own lots are empty and the vouchers it issued are void; all else is equal
    (a balance of (0, 0) equals having none)."""
    def nonzero(balances: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        return {p: b for p, b in balances.items() if b != (0, 0)}

    assert nonzero(after["balances"]) == nonzero(before["balances"])
    assert after["counters"] == before["counters"]
    assert set(before["lots"]) <= set(after["lots"])
    assert {r for _, r in set(after["lots"]) - set(before["lots"])} <= {0}
    assert set(before["vouchers"]) <= set(after["vouchers"])
    assert {s for _, s in set(after["vouchers"]) - set(before["vouchers"])} <= {"void"}


@pytest.fixture
def both(engine: Engine) -> Engine:
    """A database with both example programs applied."""
    apply_files(engine, COFFEE, GROCERY)
    return engine


LATTE = ("LATTE", "coffee", "1", "3.00")


def lattes(n: int) -> list[Item]:
    return [("LATTE", "coffee", str(n), "3.00")]


def groceries(amount: str) -> list[Item]:
    return [("BASKET", "groceries", "1", amount)]


# --- a full refund undoes everything ---------------------------------------------------

# (store, history [(transaction, date, items)], the purchase (date, items),
#  points it earns, vouchers it issues)
FULL_CASES = {
    "coffee-tuesday-double-and-beans": (
        "AMS-01", [("H1", "2027-03-01", lattes(4))],
        ("2027-03-02", [*lattes(2), ("BEANS", "coffee-beans", "1", "8.00")]), 44, 0),
    "coffee-completes-a-card": (
        "AMS-01", [("H1", "2027-03-01", lattes(4))],
        ("2027-03-08", lattes(6)), 18, 1),
    "coffee-completes-two-cards": (
        "AMS-01", [("H1", "2027-03-01", lattes(4))],
        ("2027-03-08", lattes(14)), 42, 2),
    "grocery-fifth-visit-and-threshold": (
        "FM-01", [(f"H{i}", f"2027-04-0{i}", groceries("45.00")) for i in range(1, 5)],
        ("2027-04-05", groceries("30.00")), 630, 0),
    "grocery-first-purchase": (
        "FM-01", [], ("2027-04-05", groceries("30.00")), 30, 0),
}


@pytest.mark.parametrize(("store", "history", "purchase", "earned", "issued"),
                         list(FULL_CASES.values()), ids=list(FULL_CASES))
def test_full_refund_restores_balances_counters_and_vouchers(
    both: Engine, store: str, history: list[tuple[str, str, list[Item]]],
    purchase: tuple[str, list[Item]], earned: int, issued: int,
) -> None:
    for transaction, when, items in history:
        buy(both, transaction, when, items, store=store)
    before = state(both)
    when, items = purchase
    bought = buy(both, "T-1", when, items, store=store)
    assert bought.points == earned
    made = sorted(set(vouchers(both)) - {c for c, _ in before["vouchers"]})
    assert len(made) == issued
    amount = total_of(items)
    total = int(amount.replace(".", ""))
    out = refund(both, "R-1", "T-1", "2027-05-20", amount, store=store)
    assert (out.amount_minor, out.refunded_minor, out.total_minor) == (total, total, total)
    assert sum(out.points.values()) == earned
    assert out.debts == {} and out.vouchers_reissued == []
    assert sorted(out.vouchers_voided) == made
    assert_restored(before, state(both))
    assert all(vouchers(both)[code] == "void" for code in made)
    assert_ledger_exact(both)


# --- partial refunds add up to the full one --------------------------------------------

# (store, history, purchase items, refund parts, points back per part,
#  stamps back per part)
PARTIAL_CASES = {
    "7-points-in-thirds": (
        "AMS-01", [], [("CAKE", "food", "1", "7.00")], ["2.33", "2.33", "2.34"],
        [2, 3, 2], [0, 0, 0]),
    "7-points-in-halves": (
        "AMS-01", [], [("CAKE", "food", "1", "7.00")], ["3.50", "3.50"], [4, 3], [0, 0]),
    "a-cent-then-the-rest": (
        "AMS-01", [], [("CAKE", "food", "1", "7.00")], ["0.01", "6.99"], [0, 7], [0, 0]),
    "stamps-in-thirds": (
        "AMS-01", [], lattes(3), ["3.00", "3.00", "3.00"], [3, 3, 3], [1, 1, 1]),
    "stamps-in-uneven-halves": (
        "AMS-01", [], lattes(3), ["4.00", "5.00"], [4, 5], [1, 2]),
    "grocery-bonuses-in-thirds": (
        "FM-01", [(f"H{i}", f"2027-04-0{i}", groceries("45.00")) for i in range(1, 5)],
        groceries("30.00"), ["10.00", "10.00", "10.00"],
        # per part: 30 x 1/3 + 100 (5th visit) x 1/3 + 500 (threshold) x 1/3, cumulative
        # half-up: 10+33+167, 10+34+166, 10+33+167
        [210, 210, 210], [0, 0, 0]),
}


@pytest.mark.parametrize(("store", "history", "items", "parts", "back", "stamps_back"),
                         list(PARTIAL_CASES.values()), ids=list(PARTIAL_CASES))
def test_partial_refunds_add_up_to_exactly_the_full_reversal(
    both: Engine, store: str, history: list[tuple[str, str, list[Item]]], items: list[Item],
    parts: list[str], back: list[int], stamps_back: list[int],
) -> None:
    program = "bean-there" if store.startswith("AMS") else "fresh-market"
    for transaction, when, bought in history:
        buy(both, transaction, when, bought, store=store)
    before = state(both)
    earned = buy(both, "T-1", "2027-04-05", items, store=store).points
    assert sum(back) == earned
    bought_state = state(both)
    counts = {k: v for k, v in bought_state["counters"].items()
              if k[1].endswith((":visits", ":awarded"))}
    for index, amount in enumerate(parts):
        out = refund(both, f"R-{index}", "T-1", "2027-04-06", amount, store=store)
        assert out.points.get(program, 0) == back[index]
        assert out.stamps.get(f"{program}/coffee-card", 0) == stamps_back[index]
        now = state(both)
        if index < len(parts) - 1:
            # counts (visits, threshold awarded) are taken back only by the full refund
            assert {k: v for k, v in now["counters"].items() if k in counts} == counts
        assert_ledger_exact(both)
    assert_restored(before, state(both))
    assert sum(p for kind, p in ledger(both, program) if kind == "refund") == -earned


def test_refund_by_items_takes_back_the_items_share(both: Engine) -> None:
    buy(both, "T-1", "2027-05-03", [*lattes(2), ("CAKE", "food", "1", "4.00")])
    out = refund(both, "R-1", "T-1", "2027-05-04", "3.00", items=[("LATTE", "1", "3.00")])
    assert (out.points, out.stamps) == ({"bean-there": 3}, {"bean-there/coffee-card": 1})
    out = refund(both, "R-2", "T-1", "2027-05-04", "7.00",
                 items=[("LATTE", "1", "3.00"), ("CAKE", "1", "4.00")])
    assert out.points == {"bean-there": 7}
    assert points(both, "bean-there") == (0, 0)
    assert stamps(both) == {}
    assert_ledger_exact(both)


# --- pending points, shortfalls and debts ----------------------------------------------


def test_refund_before_activation_takes_pending_points_not_spendable_ones(
    both: Engine,
) -> None:
    buy(both, "T-0", "2027-02-01", [("CAKE", "food", "1", "12.00")])
    activate_pending(both, at("2027-02-20"))
    bought = buy(both, "T-1", "2027-03-01", [("CAKE", "food", "1", "10.00")])
    assert points(both, "bean-there") == (12, 10)
    out = refund(both, "R-1", "T-1", "2027-03-03", "5.00")
    assert out.points == {"bean-there": 5} and out.debts == {}
    assert points(both, "bean-there") == (12, 5)
    lots = dict(state(both)["lots"])
    assert sorted(lots.values()) == [5, 12]
    activate_pending(both, at("2027-03-15"))
    assert points(both, "bean-there") == (17, 0)
    assert bought.points == 10
    assert_ledger_exact(both)


def test_spent_points_refunded_make_the_coffee_balance_negative(both: Engine) -> None:
    buy(both, "T-1", "2027-03-01", [("MUG", "merch", "1", "260.00")])
    activate_pending(both, at("2027-03-15"))
    spend(both, "RD-1", "2027-03-16", "bean-there", points=250)
    assert points(both, "bean-there") == (10, 0)
    out = refund(both, "R-1", "T-1", "2027-03-17", "260.00")
    assert (out.points, out.debts) == ({"bean-there": 260}, {"bean-there": 250})
    assert points(both, "bean-there") == (-250, 0)
    assert debts(both) == [("bean-there", 260, 250, True)]
    assert ledger(both) == [("earn", 260), ("redeem", -250), ("refund", -260)]
    assert_ledger_exact(both)
    # New points repay what the balance already shows: no ledger entry of their own.
    buy(both, "T-2", "2027-03-22", [("MUG", "merch", "1", "100.00")])
    assert points(both, "bean-there") == (-150, 0)
    assert debts(both) == [("bean-there", 260, 150, True)]
    assert_ledger_exact(both)
    buy(both, "T-3", "2027-03-29", [("MUG", "merch", "1", "200.00")])
    assert points(both, "bean-there") == (0, 50)
    assert debts(both) == [("bean-there", 260, 0, True)]
    assert [k for k, _ in ledger(both)] == ["earn", "redeem", "refund", "earn", "earn"]
    assert_ledger_exact(both)


def test_spent_points_refunded_are_a_grocery_debt_repaid_by_the_next_purchases(
    both: Engine,
) -> None:
    buy(both, "T-1", "2027-04-01", groceries("150.00"), store="FM-01")
    spend(both, "RD-1", "2027-04-02", "fresh-market", points=120)
    out = refund(both, "R-1", "T-1", "2027-04-03", "150.00", store="FM-01")
    assert (out.points, out.debts) == ({"fresh-market": 30}, {"fresh-market": 120})
    assert points(both, "fresh-market") == (0, 0)
    assert debts(both) == [("fresh-market", 150, 120, False)]
    assert_ledger_exact(both)
    buy(both, "T-2", "2027-04-05", groceries("50.00"), store="FM-01")
    assert points(both, "fresh-market") == (0, 0)
    assert debts(both) == [("fresh-market", 150, 70, False)]
    assert_ledger_exact(both)
    buy(both, "T-3", "2027-04-06", groceries("100.00"), store="FM-01")
    assert points(both, "fresh-market") == (30, 0)
    assert debts(both) == [("fresh-market", 150, 0, False)]
    assert ledger(both) == [("earn", 150), ("redeem", -120), ("refund", -30),
                            ("earn", 50), ("debt", -50), ("earn", 100), ("debt", -70)]
    assert_ledger_exact(both)


# --- stamps ----------------------------------------------------------------------------


def test_refund_after_the_card_voucher_was_used_leaves_a_stamp_debt(both: Engine) -> None:
    buy(both, "T-1", "2027-03-01", lattes(9))
    [code] = vouchers(both)
    assert stamps(both) == {}
    spend(both, "RD-1", "2027-03-02", "bean-there", voucher=code)
    out = refund(both, "R-1", "T-1", "2027-03-03", "27.00")
    assert out.stamps == {"bean-there/coffee-card": 9}
    assert (out.vouchers_voided, out.vouchers_reissued) == ([], [])
    assert vouchers(both) == {code: "redeemed"}
    assert stamps(both) == {"debt": -9}
    buy(both, "T-2", "2027-03-08", lattes(4))
    assert stamps(both) == {"debt": -5}
    buy(both, "T-3", "2027-03-15", lattes(7))
    assert stamps(both) == {"2027-03-15": 2}
    buy(both, "T-4", "2027-03-22", lattes(7))
    assert stamps(both) == {}
    assert sorted(vouchers(both).values()) == ["issued", "redeemed"]
    assert_ledger_exact(both)


def test_partial_refund_voids_the_unused_card_and_issues_it_again_if_still_full(
    both: Engine,
) -> None:
    buy(both, "T-0", "2027-03-01", lattes(4))
    buy(both, "T-1", "2027-03-08", lattes(6))  # 10 stamps: a card and one over
    [code] = vouchers(both)
    assert stamps(both) == {"2027-03-08": 1}
    out = refund(both, "R-1", "T-1", "2027-03-09", "3.00", items=[("LATTE", "1", "3.00")])
    assert out.vouchers_voided == [code]
    [again] = out.vouchers_reissued
    assert vouchers(both) == {code: "void", again: "issued"}
    assert stamps(both) == {}
    # A second latte back: the card is no longer full, so the new voucher is void too.
    out = refund(both, "R-2", "T-1", "2027-03-09", "3.00", items=[("LATTE", "1", "3.00")])
    assert (out.vouchers_voided, out.vouchers_reissued) == ([again], [])
    assert stamps(both) == {"2027-03-01": 4, "2027-03-08": 4}
    assert_ledger_exact(both)


# --- counts: thresholds and visits -----------------------------------------------------


@pytest.mark.parametrize(("amount", "back", "later_earns"), [
    ("60.00", 560, 600),  # full: 60 + 500; the flag is cleared, a later purchase earns it
    ("30.00", 280, 100),  # half: 30 + 250; the flag stays, no second bonus this quarter
], ids=["full", "partial"])
def test_threshold_bonus_is_reversed_pro_rata_and_its_flag_only_by_a_full_refund(
    both: Engine, amount: str, back: int, later_earns: int,
) -> None:
    buy(both, "T-1", "2027-04-01", groceries("150.00"), store="FM-01")
    assert buy(both, "T-2", "2027-04-02", groceries("60.00"), store="FM-01").points == 560
    assert state(both)["counters"][("fresh-market", "quarterly-200:awarded", "2027-Q2")] == 1
    out = refund(both, "R-1", "T-2", "2027-04-03", amount, store="FM-01")
    assert out.points == {"fresh-market": back}
    awarded = state(both)["counters"].get(("fresh-market", "quarterly-200:awarded", "2027-Q2"))
    assert awarded == (None if amount == "60.00" else 1)
    assert buy(both, "T-3", "2027-04-04", groceries("100.00"), store="FM-01").points == (
        later_earns)
    assert_ledger_exact(both)


def _five_visits(engine: Engine) -> None:
    for day in range(1, 6):
        buy(engine, f"T-{day}", f"2027-04-0{day}", groceries("10.00"), store="FM-01")


def test_fifth_visit_bonus_stays_with_purchase_five_when_purchase_three_is_refunded(
    both: Engine,
) -> None:
    _five_visits(both)
    assert points(both, "fresh-market") == (150, 0)
    out = refund(both, "R-3", "T-3", "2027-04-06", "10.00", store="FM-01")
    assert out.points == {"fresh-market": 10}
    assert points(both, "fresh-market") == (140, 0)
    assert ledger(both).count(("earn", 100)) == 1
    assert ("refund", -100) not in ledger(both)
    assert state(both)["counters"][("fresh-market", "fifth-visit:visits", "2027-04")] == 4
    assert_ledger_exact(both)


def test_fifth_visit_bonus_is_not_earned_twice_in_a_month_after_a_refund(
    both: Engine,
) -> None:
    _five_visits(both)
    refund(both, "R-3", "T-3", "2027-04-06", "10.00", store="FM-01")
    sixth = buy(both, "T-6", "2027-04-07", groceries("10.00"), store="FM-01")
    assert_ledger_exact(both)
    assert [a.rule_id for a in sixth.awards] == ["points-per-euro"]


# --- idempotency and conflicts ---------------------------------------------------------


def test_replayed_refund_returns_the_first_outcome_and_changes_nothing(both: Engine) -> None:
    buy(both, "T-0", "2027-03-01", lattes(4))
    buy(both, "T-1", "2027-03-08", lattes(6))
    first = refund(both, "R-1", "T-1", "2027-03-09", "3.00", items=[("LATTE", "1", "3.00")])
    rows, held = row_counts(both), state(both)
    again = refund(both, "R-1", "T-1", "2027-03-09T12:00:00+01:00", "3.0",
                   items=[("LATTE", "1.000", "3")])
    assert again.replayed is True and first.replayed is False
    first.replayed = True
    assert again == first
    assert (row_counts(both), state(both)) == (rows, held)
    assert_ledger_exact(both)


@pytest.mark.parametrize("change", [
    {"amount": "4.00"},
    {"when": "2027-03-10"},
    {"items": [("LATTE", "1", "3.00")]},
    {"transaction_id": "T-0"},
], ids=["amount", "date", "items", "purchase"])
def test_same_refund_id_with_another_body_is_a_conflict(
    both: Engine, change: dict[str, Any],
) -> None:
    buy(both, "T-0", "2027-03-01", lattes(4))
    buy(both, "T-1", "2027-03-08", lattes(6))
    refund(both, "R-1", "T-1", "2027-03-09", "3.00")
    rows, held = row_counts(both), state(both)
    args = {"transaction_id": "T-1", "when": "2027-03-09", "amount": "3.00", **change}
    with pytest.raises(RefundConflictError, match=r"'R-1'.*different contents"):
        refund(both, "R-1", args["transaction_id"], args["when"], args["amount"],
               items=args.get("items"))
    assert (row_counts(both), state(both)) == (rows, held)
    assert_ledger_exact(both)


# --- refusals write nothing ------------------------------------------------------------

# (refund arguments, error, message)
REFUSALS = {
    "more-than-remains": (
        {"amount": "7.01"}, RefundRejectedError,
        r"7\.01 EUR is more than what remains of the purchase \(7\.00 of 10\.00\)"),
    "no-such-purchase": (
        {"transaction_id": "T-404"}, RefundRejectedError, "there is no purchase 'T-404'"),
    "purchase-of-another-store": (
        {"store": "AMS-02"}, RefundRejectedError, "there is no purchase 'T-1' of store"),
    "dated-before-the-purchase": (
        {"when": "2027-03-01T11:59:59+01:00"}, RefundRejectedError,
        "dated before the purchase"),
    "sku-not-in-the-purchase": (
        {"amount": "1.00", "items": [("MUFFIN", "1", "1.00")]}, RefundRejectedError,
        "SKU 'MUFFIN' is not in the purchase"),
    "more-of-a-sku-than-bought": (
        {"amount": "6.00", "items": [("LATTE", "2", "6.00")]}, RefundRejectedError,
        "SKU 'LATTE' come to 3, more than the 2 bought"),
    "items-not-adding-up-to-amount": (
        {"amount": "4.00", "items": [("LATTE", "1", "3.00")]}, ValidationError,
        "does not equal the sum"),
    "zero-amount": ({"amount": "0.00"}, ValidationError, "more than zero"),
    "more-decimals-than-the-currency": (
        {"amount": "1.005"}, RefundRejectedError, "1.005 has more decimals than EUR allows"),
}


@pytest.mark.parametrize(("change", "error", "message"), list(REFUSALS.values()),
                         ids=list(REFUSALS))
def test_refusals_are_clear_and_write_nothing(
    both: Engine, change: dict[str, Any], error: type[Exception], message: str,
) -> None:
    buy(both, "T-1", "2027-03-01", [*lattes(2), ("CAKE", "food", "1", "4.00")])
    refund(both, "R-0", "T-1", "2027-03-02", "3.00", items=[("LATTE", "1", "3.00")])
    rows, held = row_counts(both), state(both)
    args = {"transaction_id": "T-1", "when": "2027-03-02", "amount": "3.00",
            "store": "AMS-01", **change}
    with pytest.raises(error, match=message):
        refund(both, "R-1", args["transaction_id"], args["when"], args["amount"],
               store=args["store"], items=args.get("items"))
    assert (row_counts(both), state(both)) == (rows, held)
    # The refund id is still free: a valid refund under it goes through.
    assert refund(both, "R-1", "T-1", "2027-03-02", "7.00").points == {"bean-there": 7}
    assert_ledger_exact(both)


def test_refund_of_an_anonymous_purchase_is_recorded_and_changes_no_balance(
    both: Engine,
) -> None:
    buy(both, "T-0", "2027-03-01", lattes(4))
    buy(both, "T-ANON", "2027-03-02", lattes(9), member=None)
    rows, held = row_counts(both), state(both)
    out = refund(both, "R-1", "T-ANON", "2027-03-03", "27.00")
    assert (out.member_id, out.points, out.debts, out.stamps) == (None, {}, {}, {})
    assert out.refunded_minor == out.total_minor == 2700
    assert row_counts(both) == {**rows, "refunds": rows["refunds"] + 1}
    assert state(both) == held
    again = refund(both, "R-1", "T-ANON", "2027-03-03", "27.00")
    assert again.replayed is True
    with pytest.raises(RefundRejectedError, match="more than what remains"):
        refund(both, "R-2", "T-ANON", "2027-03-03", "0.01")
    assert_ledger_exact(both)


def test_refund_at_another_store_names_the_purchases_store(both: Engine) -> None:
    buy(both, "T-1", "2027-03-01", lattes(3))
    event = RefundEvent(refund_id="R-1", store_id="UTR-01", original_store_id="AMS-01",
                        original_transaction_id="T-1", occurred_at=at("2027-03-02"),
                        amount=Decimal("9.00"))
    out = record_refund(both, event, RECORDED_AT)
    assert (out.store_id, out.points, out.stamps) == (
        "UTR-01", {"bean-there": 9}, {"bean-there/coffee-card": 3})
    assert record_refund(both, event, RECORDED_AT).replayed is True
    # Without original_store_id the refunding store's own purchases are searched.
    with pytest.raises(RefundRejectedError, match="no purchase 'T-1' of store 'UTR-01'"):
        refund(both, "R-2", "T-1", "2027-03-02", "1.00", store="UTR-01")
    assert points(both, "bean-there") == (0, 0)
    assert_ledger_exact(both)


# --- program versions ------------------------------------------------------------------

SHOP = """\
program: corner-shop
name: Corner Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: ["CS-*"]
points:
  refund_shortfall: {policy}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: {per_euro}
"""


@pytest.mark.parametrize(("first", "second", "balance", "in_balance"), [
    ("debt", "negative_balance", 0, False),
    ("negative_balance", "debt", -15, True),
])
def test_refund_reverses_under_the_version_that_awarded_the_purchase(
    engine: Engine, tmp_path: Path, first: str, second: str, balance: int, in_balance: bool,
) -> None:
    apply_text(engine, tmp_path, SHOP.format(policy=first, per_euro=1))
    buy(engine, "T-1", "2027-05-10", groceries("20.00"), store="CS-01")
    spend(engine, "RD-1", "2027-05-11", "corner-shop", points=15)
    # Version 2 takes effect on 2027-06-01: ten points a euro and the other policy.
    apply_text(engine, tmp_path, SHOP.format(policy=second, per_euro=10))
    out = refund(engine, "R-1", "T-1", "2027-06-10", "20.00", store="CS-01")
    assert out.debts == {"corner-shop": 15}
    assert out.points == {"corner-shop": 20 if in_balance else 5}
    assert points(engine, "corner-shop") == (balance, 0)
    assert debts(engine) == [("corner-shop", 20, 15, in_balance)]
    le, versions = tables.ledger_entries, tables.program_versions
    with read_transaction(engine) as conn:
        version = conn.execute(
            select(versions.c.version).join(le, le.c.program_version_id == versions.c.id)
            .where(le.c.kind == "refund")).scalar_one()
    assert version == 1
    assert_ledger_exact(engine)
    # A purchase under version 2 earns ten a euro and repays the debt first.
    assert buy(engine, "T-2", "2027-06-12", groceries("2.00"), store="CS-01").points == 20
    assert points(engine, "corner-shop") == (5, 0)
    assert_ledger_exact(engine)


# --- refunds of points that have lapsed ------------------------------------------------


@pytest.mark.parametrize("job_first", [True, False], ids=["expired-then-refund",
                                                          "refund-then-expired"])
def test_refund_after_the_purchases_points_expired_does_not_take_them_twice(
    both: Engine, job_first: bool,
) -> None:
    buy(both, "T-1", "2027-01-11", groceries("30.00"), store="FM-01")  # lapses 2028-01-11
    buy(both, "T-2", "2027-06-10", groceries("40.00"), store="FM-01")
    if job_first:
        expire_points(both, at("2028-01-20"))
    refund(both, "R-1", "T-1", "2028-02-01", "30.00", store="FM-01")
    expire_points(both, at("2028-02-02"))
    assert_ledger_exact(both)
    # T-1's 30 points are gone once (by expiry); T-2's 40 stay.
    assert points(both, "fresh-market") == (40, 0)


@pytest.mark.parametrize(
    ("returned", "points_back", "stamps_back"),
    [
        # The gift card earned nothing (excluded): giving it back takes nothing back.
        ([("GIFT-CARD", "1", "50.00")], {}, {}),
        # The coffee earned all 5 points and the stamp: giving it back takes them all.
        ([("FLAT-WHITE", "1", "5.00")], {"bean-there": 5}, {"bean-there/coffee-card": 1}),
    ],
    ids=["excluded-item", "earning-item"],
)
def test_a_refund_of_listed_items_reverses_what_those_items_earned(
    both: Engine, returned: list[tuple[str, str, str]], points_back: dict[str, int],
    stamps_back: dict[str, int],
) -> None:
    buy(both, "T-1", "2027-05-03", [("FLAT-WHITE", "coffee", "1", "5.00"),
                                    ("GIFT-CARD", "gift-cards", "1", "50.00")])
    amount = returned[0][2]
    out = refund(both, "R-1", "T-1", "2027-05-04", amount, items=returned)
    assert (out.points, out.stamps) == (points_back, stamps_back)
    assert_ledger_exact(both)
