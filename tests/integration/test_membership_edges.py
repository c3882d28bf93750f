"""Edges of tiers, clubs and fees that a review found wrong once: upgrades after a renewal,
fee lines returned in part or from an old membership, payments dated before the join,
late-posted purchases and consents, returns on review day, set-based renewals, and CLI
input out of range. Figures come from rules/big-box-warehouse.yaml (basic 60.00,
executive 120.00, 12-month terms, 14 days of cooling-off) and rules/glow-beauty.yaml
(0 / 350 / 1000 EUR on the calendar year, hold_next_period, refunds immediate).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import FeeError, RefundRejectedError
from loyalty_engine.services.clubs import advance_clubs, join_club, leave_club, upgrade_club
from loyalty_engine.services.enrolment import member_clubs, set_consent
from loyalty_engine.services.fees import charges_of, pay_charge
from loyalty_engine.services.importing import import_purchases
from loyalty_engine.services.tiers import review_tiers, show_tiers
from tests.integration.helpers import statements

from .walk import (
    COFFEE,
    RECORDED_AT,
    ROOT,
    apply_files,
    apply_text,
    at,
    buy,
    points,
    refund,
    total_of,
)

BIG_BOX = ROOT / "rules" / "big-box-warehouse.yaml"
GLOW = ROOT / "rules" / "glow-beauty.yaml"
LOYALTY = str(ROOT / ".venv" / "bin" / "loyalty")
NOW = RECORDED_AT
CLUB = "warehouse"


def t(text: str) -> Any:
    """A local winter instant: '2027-01-04 10:00' -> 2027-01-04T10:00:00+01:00."""
    return at(text.replace(" ", "T") + ":00+01:00")


def join_and_pay(engine: Engine, member: str, when: str) -> None:
    joined = join_club(engine, member, CLUB, t(when), NOW)
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t(when), NOW)


def beauty_tier(engine: Engine, day: str) -> str:
    [found] = show_tiers(engine, "M-1", at(day), program_id="glow-beauty")
    tier: str = found["tier"]
    return tier



def purchase_line(tx: str, member: str, day: str, items: list[tuple[str, str, str, str]]
                  ) -> str:
    return json.dumps({
        "transaction_id": tx, "store_id": "BB-01", "member_id": member,
        "occurred_at": at(day).isoformat(), "currency": "EUR", "total": total_of(items),
        "items": [{"sku": s, "category": c, "quantity": q, "unit_price": p}
                  for s, c, q, p in items]})


# --- 1. money ---------------------------------------------------------------------------------

def test_upgrade_after_a_renewal_is_prorated_over_the_current_term(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    join_and_pay(engine, "M-1", "2027-01-04 10:00")
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)  # renewal charge for 2028
    [renewal] = charges_of(engine, "M-1", "due")
    pay_charge(engine, renewal["charge_id"], t("2027-12-12 10:00"), NOW)
    # The term now runs 4 Jan 2028 - 4 Jan 2029 (366 days); 365 of them are left on 5 Jan:
    # (120.00 - 60.00) x 365 / 366 = 59.836 -> 5,984. Actual: prorated over 2027-2029: 2,996.
    up = upgrade_club(engine, "M-1", CLUB, "executive", t("2028-01-05 10:00"), NOW)
    assert up.charge is not None
    assert up.charge["amount_minor"] == 5984


def test_half_a_fee_line_back_is_not_the_whole_fee(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    buy(engine, "T1", "2027-01-04", [("BB-FEE-BASIC", "fees", "1", "60.00"),
                                     ("GOODS", "groceries", "1", "100.00")], store="BB-01")
    try:
        refund(engine, "R1", "T1", "2027-01-05", "30.00", store="BB-01",
               items=[("BB-FEE-BASIC", "1", "30.00")])
    except RefundRejectedError:
        return  # refusing half a membership fee is a fair answer too
    [charge] = charges_of(engine, "M-1", None)
    # 30.00 went back; the charge claims 60.00 was refunded (and the membership ended).
    assert charge["refunded_minor"] == 3000


def test_cooling_off_applies_when_the_payment_is_dated_before_the_join(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    # The operator records the join at 10:05 and the PSP's payment time, 10:00.
    joined = join_club(engine, "M-1", CLUB, t("2027-01-04 10:05"), NOW)
    assert joined.charge is not None
    try:
        pay_charge(engine, joined.charge["charge_id"], t("2027-01-04 10:00"), NOW)
    except FeeError:
        return  # refusing a payment before the charge existed is a fair answer too
    # Two days later, well inside the 14 days: cancelled and refunded.
    # Actual: "the cooling-off period is over"; active, the charge stays paid.
    left = leave_club(engine, "M-1", CLUB, t("2027-01-06 10:00"), NOW)
    assert left.membership["status"] == "cancelled"
    assert [c["status"] for c in charges_of(engine, "M-1", None)] == ["refunded"]


def test_a_rejected_fee_purchase_does_not_make_the_next_one_earn(engine: Engine,
                                                                  tmp_path: Path) -> None:
    apply_files(engine, BIG_BOX)
    path = tmp_path / "till.jsonl"
    path.write_text(
        # The fee line is 50.00, the basic fee 60.00: rejected.
        purchase_line("T1", "M-1", "2027-01-04", [("BB-FEE-BASIC", "fees", "1", "50.00"),
                                                  ("GOODS", "groceries", "1", "100.00")])
        + "\n" + purchase_line("T2", "M-1", "2027-01-05", [("GOODS", "groceries", "1",
                                                            "100.00")]) + "\n",
        encoding="utf-8")
    report = import_purchases(engine, path, NOW, skip_invalid=True)
    assert (report.recorded, len(report.errors)) == (1, 1)
    # M-1 never became a member: only members earn. Actual: T2 earned 100 points.
    assert points(engine, "big-box") == (0, 0)


def test_returning_an_old_fee_purchase_leaves_the_new_membership_alone(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    buy(engine, "P1", "2027-01-04", [("BB-FEE-BASIC", "fees", "1", "60.00"),
                                     ("GOODS", "groceries", "1", "100.00")], store="BB-01")
    advance_clubs(engine, t("2028-02-10 10:00"), NOW)  # renewal unpaid: lapsed
    join_and_pay(engine, "M-1", "2028-03-01 10:00")  # a new membership, paid 60.00
    refund(engine, "R1", "P1", "2028-03-05", "160.00", store="BB-01")
    # Actual: the 2028 membership is cancelled while its 60.00 charge stays paid.
    [current] = [c for c in charges_of(engine, "M-1", None) if c["term_start"] >= t(
        "2028-03-01 10:00")]
    assert current["status"] == "paid"
    [club] = member_clubs(engine, "M-1", NOW)["clubs"]
    assert club["status"] == "active"


# --- 2. tiers ---------------------------------------------------------------------------------

def test_a_return_on_new_years_day_keeps_a_held_tier(engine: Engine) -> None:
    apply_files(engine, GLOW)
    # 1,230 EUR in 2026: Radiant, held through 2027.
    buy(engine, "T1", "2026-03-01", [("SKU", "makeup", "1", "1200.00")], store="GB-01")
    buy(engine, "T2", "2026-12-20", [("SKU", "makeup", "1", "30.00")], store="GB-01")
    # A return at noon on 1 January; 2026 still holds 1,200 EUR.
    refund(engine, "R1", "T2", "2027-01-01", "30.00", store="GB-01")
    # The nightly job reviews 1 January that evening.
    review_tiers(engine, at("2027-01-01T23:00:00+01:00"), NOW, program_id="glow-beauty")
    # Actual: Blush (the refund dropped it to the enrolment base; the review replays it).
    assert beauty_tier(engine, "2027-01-02") == "radiant"


def test_a_coffee_refund_leaves_the_beauty_tier_alone(engine: Engine, tmp_path: Path) -> None:
    apply_files(engine, GLOW, COFFEE)
    buy(engine, "T1", "2027-03-01", [("SKU", "makeup", "1", "1200.00")], store="GB-01")
    # From 1 June (RECORDED_AT) Radiant needs 2,000 EUR; M-1 keeps Radiant until a review.
    apply_text(engine, tmp_path, GLOW.read_text(encoding="utf-8").replace('"1000.00"',
                                                                          '"2000.00"'))
    buy(engine, "C1", "2027-06-10", [("LATTE", "coffee", "1", "4.00")], store="AMS-01")
    assert beauty_tier(engine, "2027-06-10") == "radiant"
    back = refund(engine, "R1", "C1", "2027-06-11", "4.00", store="AMS-01")
    # Actual: {'glow-beauty': 'glow'}.
    assert back.tiers == {}
    assert beauty_tier(engine, "2027-06-11") == "radiant"


# --- 3. time: standing is read as it is now, not as it was when the purchase happened ------

def test_a_purchase_from_before_the_membership_does_not_earn(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    join_and_pay(engine, "M-1", "2027-03-01 10:00")
    # A February receipt reaches the engine after the member joined (a till offline, an
    # import). Only members earn; M-1 was none on 15 February. Actual: 100 points.
    late = buy(engine, "T0", "2027-02-15", [("GOODS", "groceries", "1", "100.00")],
               store="BB-01")
    assert late.points == 0


def test_a_friday_before_the_consent_earns_no_marketing_bonus(engine: Engine) -> None:
    apply_files(engine, COFFEE)
    buy(engine, "C0", "2027-01-04", [("LATTE", "coffee", "1", "4.00")])  # joins bean-club
    set_consent(engine, "M-1", "marketing", True, at("2027-06-01"))
    # Friday 5 March, posted after the consent of 1 June: no consent then, no +10.
    late = buy(engine, "C1", "2027-03-05", [("LATTE", "coffee", "1", "4.00")])
    assert late.points == 4  # actual: 14


# --- 4. set-based -----------------------------------------------------------------------------

def _advance_statements(engine: Engine, first: int, members: int) -> int:
    for n in range(first, first + members):
        join_and_pay(engine, f"M-{n:03d}", "2027-01-04 10:00")
    with statements(engine) as seen:
        done = advance_clubs(engine, t("2027-12-10 10:00"), NOW)
    assert done.renewals == members
    return len(seen)


def test_renewal_statements_do_not_grow_with_members(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    small = _advance_statements(engine, 0, 3)
    large = _advance_statements(engine, 100, 30)  # a later term of other members only
    assert large == small, (small, large)  # actual: 15 vs 69


# --- 5. CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["fees", "pay", "99999999999999999999"],
    ["clubs", "advance", "--as-of", "9999-12-31T23:00:00+00:00"],
], ids=["huge-charge-id", "as-of-year-9999"])
def test_cli_out_of_range_input_is_one_sentence(engine: Engine, db_url: str,
                                                args: list[str]) -> None:
    apply_files(engine, BIG_BOX)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    done = subprocess.run([LOYALTY, "--database", db_url, *args], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr and "database error" not in done.stderr, (
        done.stderr)
