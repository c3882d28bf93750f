"""redeem / reverse_redemption on real databases: FIFO lots, vouchers, idempotency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import (
    NotFoundError,
    RedemptionConflictError,
    RedemptionRejectedError,
)
from loyalty_engine.services.points import activate_pending, expire_points
from loyalty_engine.services.redemptions import reverse_redemption
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction
from tests.integration.walk import (
    COFFEE,
    GROCERY,
    RECORDED_AT,
    Item,
    apply_files,
    assert_ledger_exact,
    at,
    buy,
    points,
    spend,
    state,
)


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table of the schema."""
    with read_transaction(engine) as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in tables.metadata.sorted_tables}


def lots(engine: Engine) -> dict[str, int]:
    """What remains of each purchase's lots, by transaction id."""
    lo, le, pu = tables.point_lots, tables.ledger_entries, tables.purchases
    with read_transaction(engine) as conn:
        return {r.transaction_id: r.remaining for r in conn.execute(
            select(pu.c.transaction_id, lo.c.remaining)
            .join(le, le.c.id == lo.c.entry_id).join(pu, pu.c.id == le.c.purchase_id))}


def voucher(engine: Engine, code: str) -> dict[str, Any]:
    v = tables.vouchers
    with read_transaction(engine) as conn:
        return dict(conn.execute(select(v).where(v.c.code == code)).mappings().one())


def ledger(engine: Engine) -> list[tuple[str, int]]:
    le = tables.ledger_entries
    with read_transaction(engine) as conn:
        return [(r.kind, r.points) for r in conn.execute(
            select(le.c.kind, le.c.points).order_by(le.c.id))]


def groceries(amount: str) -> list[Item]:
    return [("BASKET", "groceries", "1", amount)]


@pytest.fixture
def both(engine: Engine) -> Engine:
    apply_files(engine, COFFEE, GROCERY)
    return engine


@pytest.fixture
def three_lots(both: Engine) -> Engine:
    """Grocery lots of 10, 20 and 30 points (no pending days; lapse after 12 months)."""
    for transaction, when, amount in (("G1", "2027-01-11", "10.00"),
                                      ("G2", "2027-02-10", "20.00"),
                                      ("G3", "2027-03-10", "30.00")):
        buy(both, transaction, when, groceries(amount), store="FM-01")
    return both


@pytest.fixture
def coffee_points(both: Engine) -> Engine:
    """260 spendable coffee points (earned 2027-03-01, activated 2027-03-15)."""
    buy(both, "C1", "2027-03-01", [("MUG", "merch", "1", "260.00")])
    activate_pending(both, at("2027-03-15"))
    assert points(both, "bean-there") == (260, 0)
    return both


# --- first in, first out ----------------------------------------------------------------


@pytest.mark.parametrize(("order", "spends", "after"), [
    (["G1", "G2", "G3"], [25, 10], [{"G1": 0, "G2": 5, "G3": 30}, {"G1": 0, "G2": 0, "G3": 25}]),
    (["G3", "G1", "G2"], [25, 10], [{"G1": 0, "G2": 5, "G3": 30}, {"G1": 0, "G2": 0, "G3": 25}]),
    (["G1", "G2", "G3"], [10, 20, 30],
     [{"G1": 0, "G2": 20, "G3": 30}, {"G1": 0, "G2": 0, "G3": 30}, {"G1": 0, "G2": 0, "G3": 0}]),
    (["G2", "G3", "G1"], [60], [{"G1": 0, "G2": 0, "G3": 0}]),
    (["G1", "G2", "G3"], [1], [{"G1": 9, "G2": 20, "G3": 30}]),
], ids=["in-order", "recorded-out-of-order", "lot-by-lot", "all-at-once", "one-point"])
def test_spending_takes_points_from_the_oldest_lots_first(
    both: Engine, order: list[str], spends: list[int], after: list[dict[str, int]],
) -> None:
    bought = {"G1": ("2027-01-11", "10.00"), "G2": ("2027-02-10", "20.00"),
              "G3": ("2027-03-10", "30.00")}
    for transaction in order:
        when, total = bought[transaction]
        buy(both, transaction, when, groceries(total), store="FM-01")
    spent = 0
    for index, (amount, remaining) in enumerate(zip(spends, after, strict=True)):
        out = spend(both, f"RD-{index}", "2027-04-01", "fresh-market", points=amount)
        spent += amount
        assert (out.kind, out.points, out.voucher, out.reversed) == ("points", amount, None,
                                                                     False)
        assert lots(both) == remaining
        assert points(both, "fresh-market") == (60 - spent, 0)
    assert [p for kind, p in ledger(both) if kind == "redeem"] == [-s for s in spends]
    assert_ledger_exact(both)


def test_pending_points_cannot_be_spent_until_activated(both: Engine) -> None:
    buy(both, "C1", "2027-03-01", [("CAKE", "food", "1", "20.00")])
    assert points(both, "bean-there") == (0, 20)
    # Not even after the return window: only activate_pending makes them spendable.
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        spend(both, "RD-1", "2027-03-20", "bean-there", points=10)
    assert activate_pending(both, at("2027-03-15T11:59:59+01:00")).points == 0
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        spend(both, "RD-1", "2027-03-20", "bean-there", points=10)
    assert activate_pending(both, at("2027-03-15")).points == 20
    assert spend(both, "RD-1", "2027-03-20", "bean-there", points=10).points == 10
    assert points(both, "bean-there") == (10, 0)
    assert_ledger_exact(both)


# G1's 10 points lapse at 2028-01-11 12:00 Amsterdam; G2's 20 and G3's 30 later.
@pytest.mark.parametrize(("when", "amount", "refused", "after"), [
    ("2028-01-11T11:59:59+01:00", 60, None, {"G1": 0, "G2": 0, "G3": 0}),
    ("2028-01-11T12:00:00+01:00", 60, "has 50 spendable points", None),
    ("2028-01-11T12:00:00+01:00", 25, None, {"G1": 10, "G2": 0, "G3": 25}),
    ("2028-02-10T12:00:00+01:00", 31, "has 30 spendable points", None),
    ("2028-03-10T12:00:00+01:00", 1, "has 0 spendable points", None),
], ids=["before-expiry", "at-expiry-too-many", "at-expiry-skips-lapsed-lot",
        "second-lot-lapsed", "all-lapsed"])
def test_expired_lots_cannot_be_spent(
    three_lots: Engine, when: str, amount: int, refused: str | None,
    after: dict[str, int] | None,
) -> None:
    rows = row_counts(three_lots)
    if refused is not None:
        with pytest.raises(RedemptionRejectedError, match=refused):
            spend(three_lots, "RD-1", when, "fresh-market", points=amount)
        assert row_counts(three_lots) == rows
    else:
        spend(three_lots, "RD-1", when, "fresh-market", points=amount)
        assert lots(three_lots) == after
    assert_ledger_exact(three_lots)


# --- reward vouchers -------------------------------------------------------------------


def test_buying_a_reward_issues_a_voucher_valid_for_its_valid_days(
    coffee_points: Engine,
) -> None:
    out = spend(coffee_points, "RD-1", "2027-03-16T10:00:00+01:00", "bean-there",
                reward="five-euro-off")
    assert (out.kind, out.points, out.voucher) == ("reward", 250, "R-RD-1")
    assert points(coffee_points, "bean-there") == (10, 0)
    got = voucher(coffee_points, "R-RD-1")
    issued = at("2027-03-16T10:00:00+01:00")
    assert {k: got[k] for k in ("member_id", "program_id", "reward_id", "kind",
                                "amount_minor", "source", "status", "redeemed_by")} == {
        "member_id": "M-1", "program_id": "bean-there", "reward_id": "five-euro-off",
        "kind": "fixed_amount", "amount_minor": 500, "source": "points", "status": "issued",
        "redeemed_by": None}
    assert got["issued_at"] == issued
    assert got["valid_until"] == issued + timedelta(days=90)
    assert ledger(coffee_points) == [("earn", 260), ("redeem", -250)]
    assert_ledger_exact(coffee_points)


def test_using_a_voucher_marks_it_redeemed_and_a_second_use_is_refused(
    coffee_points: Engine,
) -> None:
    spend(coffee_points, "RD-1", "2027-03-16", "bean-there", reward="five-euro-off")
    used = spend(coffee_points, "RD-2", "2027-03-20", "bean-there", voucher="R-RD-1")
    assert (used.kind, used.points, used.voucher) == ("voucher", 0, "R-RD-1")
    got = voucher(coffee_points, "R-RD-1")
    assert (got["status"], got["redeemed_by"]) == ("redeemed", "RD-2")
    assert points(coffee_points, "bean-there") == (10, 0)
    rows = row_counts(coffee_points)
    with pytest.raises(RedemptionRejectedError, match="'R-RD-1' is redeemed"):
        spend(coffee_points, "RD-3", "2027-03-21", "bean-there", voucher="R-RD-1")
    assert row_counts(coffee_points) == rows
    assert_ledger_exact(coffee_points)


# The voucher R-RD-1 of M-1 is bought 2027-03-16 12:00 Amsterdam (11:00 UTC), valid 90 days.
@pytest.mark.parametrize(("member", "program", "code", "when", "refused"), [
    ("M-1", "bean-there", "R-RD-1", "2027-06-14T12:59:59+02:00", None),
    ("M-1", "bean-there", "R-RD-1", "2027-06-14T13:00:00+02:00", "'R-RD-1' expired at"),
    ("M-1", "bean-there", "R-RD-1", "2027-07-01", "'R-RD-1' expired at"),
    ("M-2", "bean-there", "R-RD-1", "2027-03-20", "'M-2' has no voucher 'R-RD-1'"),
    ("M-1", "fresh-market", "R-RD-1", "2027-03-20", "'M-1' has no voucher 'R-RD-1'"),
    ("M-1", "bean-there", "R-NOPE", "2027-03-20", "'M-1' has no voucher 'R-NOPE'"),
], ids=["last-second", "at-expiry", "long-expired", "other-member", "other-program",
        "unknown-code"])
def test_voucher_use_is_refused_when_expired_or_not_the_members(
    coffee_points: Engine, member: str, program: str, code: str, when: str,
    refused: str | None,
) -> None:
    buy(coffee_points, "C2", "2027-03-02", [("CAKE", "food", "1", "5.00")], member="M-2")
    buy(coffee_points, "G1", "2027-03-02", groceries("5.00"), store="FM-01")
    spend(coffee_points, "RD-1", "2027-03-16", "bean-there", reward="five-euro-off")
    rows = row_counts(coffee_points)
    if refused is None:
        spend(coffee_points, "RD-2", when, program, member=member, voucher=code)
        assert voucher(coffee_points, "R-RD-1")["status"] == "redeemed"
    else:
        with pytest.raises(RedemptionRejectedError, match=refused):
            spend(coffee_points, "RD-2", when, program, member=member, voucher=code)
        assert row_counts(coffee_points) == rows
        assert voucher(coffee_points, "R-RD-1")["status"] == "issued"
    assert_ledger_exact(coffee_points)


def test_a_stamp_card_voucher_can_be_used_once(both: Engine) -> None:
    buy(both, "C1", "2027-03-01", [("LATTE", "coffee", "9", "3.00")])
    [(code, status)] = state(both)["vouchers"]
    assert status == "issued"
    assert voucher(both, code)["valid_until"] == at("2027-03-01") + timedelta(days=60)
    spend(both, "RD-1", "2027-03-02", "bean-there", voucher=code)
    with pytest.raises(RedemptionRejectedError, match="is redeemed"):
        spend(both, "RD-2", "2027-03-02", "bean-there", voucher=code)
    assert state(both)["vouchers"] == [(code, "redeemed")]
    assert_ledger_exact(both)


# --- idempotency -----------------------------------------------------------------------


@pytest.mark.parametrize("what", [{"points": 25}, {"reward": "ten-euro-off"}],
                         ids=["points", "reward"])
def test_replay_returns_the_same_outcome_and_changes_nothing(
    three_lots: Engine, what: dict[str, Any],
) -> None:
    if "reward" in what:
        buy(three_lots, "G4", "2027-04-01", groceries("199.00"), store="FM-01")
        buy(three_lots, "G5", "2027-07-01", groceries("199.00"), store="FM-01")
        buy(three_lots, "G6", "2027-07-02", groceries("199.00"), store="FM-01")
        buy(three_lots, "G7", "2027-07-03", groceries("199.00"), store="FM-01")
    first = spend(three_lots, "RD-1", "2027-08-01", "fresh-market", **what)
    rows, held = row_counts(three_lots), state(three_lots)
    again = spend(three_lots, "RD-1", "2027-08-01T12:00:00+01:00", "fresh-market", **what)
    assert (first.replayed, again.replayed) == (False, True)
    first.replayed = True
    assert again == first
    assert (row_counts(three_lots), state(three_lots)) == (rows, held)
    assert_ledger_exact(three_lots)


@pytest.mark.parametrize("change", [
    {"points": 26},
    {"when": "2027-04-02"},
    {"points": None, "reward": "ten-euro-off"},
    {"member": "M-2"},
    {"program": "bean-there"},
], ids=["points", "date", "kind", "member", "program"])
def test_same_redemption_id_with_another_body_is_a_conflict(
    three_lots: Engine, change: dict[str, Any],
) -> None:
    buy(three_lots, "G9", "2027-03-11", groceries("5.00"), store="FM-01", member="M-2")
    buy(three_lots, "C1", "2027-03-01", [("CAKE", "food", "1", "5.00")])
    spend(three_lots, "RD-1", "2027-04-01", "fresh-market", points=25)
    rows, held = row_counts(three_lots), state(three_lots)
    args: dict[str, Any] = {"when": "2027-04-01", "program": "fresh-market",
                            "member": "M-1", "points": 25, **change}
    what = {k: args[k] for k in ("points", "reward") if args.get(k) is not None}
    with pytest.raises(RedemptionConflictError, match="'RD-1'"):
        spend(three_lots, "RD-1", args["when"], args["program"], member=args["member"], **what)
    assert (row_counts(three_lots), state(three_lots)) == (rows, held)
    assert_ledger_exact(three_lots)


# --- refusals write nothing ------------------------------------------------------------


@pytest.mark.parametrize(("member", "program", "what", "refused"), [
    ("M-1", "fresh-market", {"points": 61}, "'M-1' has 60 spendable points in "
     "'fresh-market'; 61 are needed"),
    ("M-1", "fresh-market", {"reward": "ten-euro-off"}, "has 60 spendable points.*1000 are "
     "needed"),
    ("M-2", "bean-there", {"reward": "free-coffee"}, "'free-coffee' cannot be bought with "
     "points"),
    ("M-1", "fresh-market", {"reward": "gold-bar"}, "has no reward 'gold-bar'"),
    ("M-2", "fresh-market", {"points": 1}, "'M-2' is not enrolled in program 'fresh-market'"),
    ("M-404", "fresh-market", {"points": 1}, "there is no member 'M-404'"),
], ids=["more-than-spendable", "reward-too-dear", "reward-not-for-sale", "unknown-reward",
        "not-enrolled", "unknown-member"])
def test_refused_redemptions_write_nothing(
    three_lots: Engine, member: str, program: str, what: dict[str, Any], refused: str,
) -> None:
    buy(three_lots, "C1", "2027-03-01", [("CAKE", "food", "1", "5.00")], member="M-2")
    rows, held = row_counts(three_lots), state(three_lots)
    with pytest.raises(RedemptionRejectedError, match=refused):
        spend(three_lots, "RD-1", "2027-04-01", program, member=member, **what)
    assert (row_counts(three_lots), state(three_lots)) == (rows, held)
    # The id is still free.
    assert spend(three_lots, "RD-1", "2027-04-01", "fresh-market", points=60).points == 60
    assert_ledger_exact(three_lots)


# --- reversal --------------------------------------------------------------------------


def test_reversal_puts_points_back_into_the_same_lots_and_is_idempotent(
    three_lots: Engine,
) -> None:
    spend(three_lots, "RD-1", "2027-04-01", "fresh-market", points=25)  # G1 10, G2 15
    spend(three_lots, "RD-2", "2027-04-02", "fresh-market", points=20)  # G2 5, G3 15
    assert lots(three_lots) == {"G1": 0, "G2": 0, "G3": 15}
    out = reverse_redemption(three_lots, "RD-1", RECORDED_AT)
    assert (out.reversed, out.replayed, out.points) == (True, False, 25)
    assert lots(three_lots) == {"G1": 10, "G2": 15, "G3": 15}
    assert points(three_lots, "fresh-market") == (40, 0)
    assert ledger(three_lots)[-1] == ("unredeem", 25)
    assert_ledger_exact(three_lots)
    rows, held = row_counts(three_lots), state(three_lots)
    again = reverse_redemption(three_lots, "RD-1", RECORDED_AT)
    assert (again.reversed, again.replayed) == (True, True)
    # Posting the reversed redemption again is a replay too: it spends nothing.
    replay = spend(three_lots, "RD-1", "2027-04-01", "fresh-market", points=25)
    assert (replay.reversed, replay.replayed) == (True, True)
    assert (row_counts(three_lots), state(three_lots)) == (rows, held)
    # Later spending is first-in-first-out again over the refilled lots.
    spend(three_lots, "RD-3", "2027-04-03", "fresh-market", points=12)
    assert lots(three_lots) == {"G1": 0, "G2": 13, "G3": 15}
    assert_ledger_exact(three_lots)


def test_reversing_an_unknown_redemption_is_not_found(three_lots: Engine) -> None:
    with pytest.raises(NotFoundError, match="'RD-404'"):
        reverse_redemption(three_lots, "RD-404", RECORDED_AT)


def test_reward_reversal_is_refused_while_its_voucher_is_used(coffee_points: Engine) -> None:
    spend(coffee_points, "RD-1", "2027-03-16", "bean-there", reward="five-euro-off")
    spend(coffee_points, "RD-2", "2027-03-20", "bean-there", voucher="R-RD-1")
    rows, held = row_counts(coffee_points), state(coffee_points)
    with pytest.raises(RedemptionRejectedError, match=r"'R-RD-1'.* is redeemed; reverse the "
                       "redemption that used it first"):
        reverse_redemption(coffee_points, "RD-1", RECORDED_AT)
    assert (row_counts(coffee_points), state(coffee_points)) == (rows, held)
    # Undo the use first: the voucher is usable again, then the purchase can be undone.
    assert reverse_redemption(coffee_points, "RD-2", RECORDED_AT).reversed is True
    assert voucher(coffee_points, "R-RD-1")["status"] == "issued"
    assert points(coffee_points, "bean-there") == (10, 0)
    assert reverse_redemption(coffee_points, "RD-1", RECORDED_AT).points == 250
    assert voucher(coffee_points, "R-RD-1")["status"] == "void"
    assert points(coffee_points, "bean-there") == (260, 0)
    assert state(coffee_points)["lots"] == [(1, 260)]
    with pytest.raises(RedemptionRejectedError, match="'R-RD-1' is void"):
        spend(coffee_points, "RD-3", "2027-03-21", "bean-there", voucher="R-RD-1")
    assert_ledger_exact(coffee_points)


def test_reversal_into_an_expired_lot_does_not_break_the_expiry_step(
    three_lots: Engine,
) -> None:
    spend(three_lots, "RD-1", "2027-04-01", "fresh-market", points=25)  # G1 10, G2 15
    expire_points(three_lots, at("2028-02-11"))  # G1 and G2 lapse: G2's 5 expire
    assert points(three_lots, "fresh-market") == (30, 0)
    reverse_redemption(three_lots, "RD-1", RECORDED_AT)
    expire_points(three_lots, at("2028-02-12"))
    # The restored 25 points belong to lapsed lots: they are not spendable, and expire.
    assert lots(three_lots) == {"G1": 0, "G2": 0, "G3": 30}
    assert points(three_lots, "fresh-market") == (30, 0)
    assert_ledger_exact(three_lots)
