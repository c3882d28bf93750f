"""Two writers at once against the stateful parts of the language: visits, stamp cards,
refunds and redemptions each happen exactly once, and the ledger stays exact.

On PostgreSQL the writers run side by side (member rows are locked before counters are
read); on SQLite they queue on the write lock. Either way the outcome must be the same.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import (
    LoyaltyError,
    RedemptionRejectedError,
    RefundRejectedError,
)
from loyalty_engine.services.points import activate_pending
from tests.integration.test_concurrency import _run_together

from .walk import (
    COFFEE,
    GROCERY,
    apply_files,
    assert_ledger_exact,
    at,
    buy,
    points,
    refund,
    spend,
    stamps,
    state,
)

SHOP = [("SHOP", "groceries", "1", "10.00")]
COFFEE_CUP = [("FLAT-WHITE", "coffee", "1", "3.60")]


def _attempt(job: Any) -> Any:
    """Run a job; an error a user can act on is a result, not a failure of the test."""
    try:
        return job()
    except LoyaltyError as exc:
        return exc


def test_two_tills_posting_one_members_visits_award_the_fifth_visit_once(
    db_url: str, engine: Engine
) -> None:
    apply_files(engine, COFFEE, GROCERY)
    days = [f"2026-03-{d:02d}" for d in range(2, 12)]  # ten shops in March

    def till(offset: int) -> Any:
        def post(e: Engine) -> list[int]:
            # Each till posts every shop, in its own order: every purchase twice in all.
            order = days[offset:] + days[:offset]
            return [buy(e, f"G-{day}", day, SHOP, member="M-7", store="FM-01").points
                    for day in order]
        return post

    _run_together(db_url, [till(0), till(5)])
    member = state(engine, "M-7")
    assert member["counters"][("fresh-market", "fifth-visit:visits", "2026-03")] == 10
    # 10 x 10 points and 100 for the fifth visit, once (100 euros: below the quarter bonus).
    assert points(engine, "fresh-market", member="M-7") == (100 + 100, 0)
    assert_ledger_exact(engine)


def test_two_tills_filling_one_stamp_card_issue_each_voucher_once(
    db_url: str, engine: Engine
) -> None:
    apply_files(engine, COFFEE, GROCERY)
    days = [f"2026-03-{d:02d}" for d in range(2, 20)]  # 18 coffees: two full cards

    def till(reverse: bool) -> Any:
        def post(e: Engine) -> None:
            for day in (reversed(days) if reverse else days):
                buy(e, f"C-{day}", day, COFFEE_CUP, member="M-8")
        return post

    _run_together(db_url, [till(False), till(True)])
    assert stamps(engine, member="M-8") == {}
    assert [status for _, status in state(engine, "M-8")["vouchers"]] == ["issued", "issued"]
    assert_ledger_exact(engine)


def test_two_redemptions_racing_for_the_same_points_spend_them_once(
    db_url: str, engine: Engine
) -> None:
    apply_files(engine, COFFEE, GROCERY)
    buy(engine, "G-1", "2026-03-02", [("SHOP", "groceries", "1", "100.00")], member="M-9",
        store="FM-01")
    assert points(engine, "fresh-market", member="M-9") == (100, 0)

    def redeem_60(name: str) -> Any:
        return lambda e: _attempt(lambda: spend(e, name, "2026-03-03", "fresh-market",
                                                member="M-9", points=60))

    results = _run_together(db_url, [redeem_60("RD-A"), redeem_60("RD-B")])
    refused = [r for r in results if isinstance(r, RedemptionRejectedError)]
    assert len(refused) == 1, results
    assert "40 spendable points" in str(refused[0])
    assert points(engine, "fresh-market", member="M-9") == (40, 0)
    assert_ledger_exact(engine)


@pytest.mark.parametrize("same_refund", [False, True], ids=["two-refunds", "one-refund-twice"])
def test_two_refunds_racing_for_one_purchase_never_take_back_more_than_it_earned(
    db_url: str, engine: Engine, same_refund: bool
) -> None:
    apply_files(engine, COFFEE, GROCERY)
    buy(engine, "T-1", "2026-03-02", [("BEANS", "coffee-beans", "4", "12.50")], member="M-10")
    activate_pending(engine, at("2026-03-20"))
    assert points(engine, "bean-there", member="M-10") == (100, 0)

    def refund_30(name: str) -> Any:
        return lambda e: _attempt(lambda: refund(e, name, "T-1", "2026-03-21", "30.00"))

    names = ["R-A", "R-A"] if same_refund else ["R-A", "R-B"]
    results = _run_together(db_url, [refund_30(n) for n in names])
    if same_refund:
        assert sorted(r.replayed for r in results) == [False, True]
    else:
        refused = [r for r in results if isinstance(r, RefundRejectedError)]
        assert len(refused) == 1 and "more than what remains" in str(refused[0]), results
    assert points(engine, "bean-there", member="M-10") == (40, 0)  # 100 - 60% of 100
    assert_ledger_exact(engine)


STATELESS_DEBT = """\
program: plain
name: Plain
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: ["PL-*"]
points: {refund_shortfall: debt}
rules:
  - {id: per-euro, kind: points_per_spend, points_per_unit: 1}
"""


def test_two_purchases_racing_to_repay_one_debt_repay_it_once(
    db_url: str, engine: Engine, tmp_path: Any
) -> None:
    # A program without counters: members are not locked, so the debt rows must be.
    from .walk import apply_text

    apply_text(engine, tmp_path, STATELESS_DEBT)
    big = [("SHOP", "groceries", "1", "100.00")]
    buy(engine, "P-1", "2026-03-02", big, member="M-11", store="PL-1")
    spend(engine, "RD-1", "2026-03-03", "plain", member="M-11", points=100)
    assert refund(engine, "R-1", "P-1", "2026-03-04", "100.00", store="PL-1").debts == {
        "plain": 100}

    def post(tx: str) -> Any:
        return lambda e: buy(e, tx, "2026-03-05", big, member="M-11", store="PL-1")

    _run_together(db_url, [post("P-2"), post("P-3")])
    assert points(engine, "plain", member="M-11") == (100, 0)  # 200 earned, 100 repaid
    assert_ledger_exact(engine)


def test_the_expiry_step_beside_redemptions_neither_deadlocks_nor_loses_points(
    db_url: str, engine: Engine, tmp_path: Any
) -> None:
    from loyalty_engine.services.points import expire_points

    from .walk import apply_text

    apply_text(engine, tmp_path, STATELESS_DEBT.replace(
        "points: {refund_shortfall: debt}", "points: {expiry: {end_of: month}}"))
    members = [f"E-{n:02d}" for n in range(12)]
    for member in members:
        buy(engine, f"{member}-1", "2026-03-02", [("SHOP", "groceries", "1", "10.00")],
            member=member, store="PL-1")
        buy(engine, f"{member}-2", "2026-04-02", [("SHOP", "groceries", "1", "10.00")],
            member=member, store="PL-1")

    def redeem_all(e: Engine) -> list[Any]:
        # Dated in March: each takes 5 points from the lot that lapses at the end of March.
        return [_attempt(lambda m=m: spend(e, f"RD-{m}", "2026-03-20", "plain", member=m,
                                           points=5))
                for m in reversed(members)]

    results = _run_together(db_url, [redeem_all, lambda e: expire_points(e, at("2026-04-01"))])
    refused = [r for r in results[0] if isinstance(r, LoyaltyError)]
    expired = results[1]
    # A redemption either ran before the step (5 of the March lot spent, 5 lapse) or after
    # it (nothing spendable in March any more): either way 10 points per member are gone.
    assert expired.points + 5 * (len(members) - len(refused)) == 10 * len(members)
    for member in members:
        assert points(engine, "plain", member=member) == (10, 0)
    assert_ledger_exact(engine)
