"""Clubs as sold, on both databases: an upgrade at the full difference or prorated, and the
introductory fee of a member new to the club (joined by request or at the till). The
program is written here; figures are worked out by hand in the comments."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import ClubError, FeeError, PurchaseRejectedError
from loyalty_engine.services.clubs import (
    add_household_member,
    join_club,
    leave_club,
    remove_household_member,
    upgrade_club,
)
from loyalty_engine.services.fees import pay_charge

from .walk import RECORDED_AT, apply_text, at, buy

NOW = RECORDED_AT
PROGRAM = """\
program: sold-club
name: Sold Club
currency: EUR
timezone: Europe/Berlin
enrolment: open
stores: ["SC-*"]
clubs:
  - id: club
    name: Sold Club Membership
    kind: fee
    term_months: 12
    cooling_off_days: 14
    household: {{max_members: 1}}
    {upgrade_price}
    levels:
      - id: basic
        name: Basic
        fee: "60.00"
        intro_fee: "30.00"
        fee_sku: SC-FEE-BASIC
      - id: plus
        name: Plus
        fee: "120.00"
        points_price: 12000
        trial: {{months: 2, fee: "1.00"}}
      - id: premium
        name: Premium
        fee: "200.00"
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
    when: {{clubs: [club]}}
"""


def t(text: str) -> datetime:
    return at(text.replace(" ", "T") + ":00+01:00")


def setup(engine: Engine, tmp_path: Path, upgrade_price: str = "") -> None:
    apply_text(engine, tmp_path, PROGRAM.format(upgrade_price=upgrade_price))


def paid_member(engine: Engine, member: str, when: str, level: str = "basic") -> int:
    """Join and pay at once; the joining charge's amount."""
    joined = join_club(engine, member, "club", t(when), NOW, level=level)
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t(when), NOW)
    return int(joined.charge["amount_minor"])


@pytest.mark.parametrize(("upgrade_price", "amount", "message"), [
    # The term runs 4 Jan 2027 10:00 to 4 Jan 2028 10:00: 365 days. Upgrading on 5 Mar at
    # 10:00, 31 + 28 + 1 = 60 days are gone and 305 left. Plus - Basic = 120.00 - 60.00 =
    # 60.00 (the levels' fees, whatever introductory fee was paid): prorated
    # 6000 x 305 / 365 = 5013.70 -> 5014 cents.
    ("", 5014, "prorated"),
    ("upgrade_price: prorated", 5014, "prorated"),
    ("upgrade_price: full_difference", 6000, "the full difference"),  # all of 60.00
])
def test_an_upgrade_costs_the_prorated_or_the_full_difference(
        engine: Engine, tmp_path: Path, upgrade_price: str, amount: int, message: str) -> None:
    setup(engine, tmp_path, upgrade_price)
    assert paid_member(engine, "M-1", "2027-01-04 10:00") == 3000  # new: intro 30.00
    upgraded = upgrade_club(engine, "M-1", "club", "plus", t("2027-03-05 10:00"), NOW)
    assert upgraded.charge is not None
    assert (upgraded.charge["kind"], upgraded.charge["amount_minor"]) == ("upgrade", amount)
    assert upgraded.charge["detail"]["fee_difference_minor"] == 6000
    assert message in upgraded.message
    paid = pay_charge(engine, upgraded.charge["charge_id"], t("2027-03-05 10:00"), NOW)
    assert paid.membership is not None and paid.membership["level"] == "plus"


def test_the_introductory_fee_is_for_a_member_new_to_the_club(
        engine: Engine, tmp_path: Path) -> None:
    setup(engine, tmp_path)
    # New: the first paid term at 30.00; Premium has no intro_fee (nor trial): 200.00.
    assert paid_member(engine, "M-1", "2027-01-04 10:00") == 3000
    assert paid_member(engine, "M-2", "2027-01-04 10:00", "premium") == 20000
    # M-1 cancels in the cooling-off period (30.00 back) and comes back: the full 60.00.
    left = leave_club(engine, "M-1", "club", t("2027-01-05 10:00"), NOW)
    assert left.refunded is not None and left.refunded["refunded_minor"] == 3000
    again = join_club(engine, "M-1", "club", t("2027-02-01 10:00"), NOW, level="basic")
    assert again.charge is not None and again.charge["amount_minor"] == 6000
    with pytest.raises(ClubError, match="already in club"):
        join_club(engine, "M-1", "club", t("2027-02-02 10:00"), NOW, level="basic")


@pytest.mark.parametrize(("member", "line", "accepted"), [
    ("N-1", "30.00", True),   # new to the club: the introductory 30.00
    ("N-2", "60.00", False),  # new, but paying the full fee: refused, it is 30.00
    ("M-1", "60.00", True),   # a former member (cancelled): the full 60.00
    ("M-1", "30.00", False),  # a former member cannot pay the intro price
])
def test_the_till_takes_the_introductory_fee_only_from_new_members(
        engine: Engine, tmp_path: Path, member: str, line: str, accepted: bool) -> None:
    setup(engine, tmp_path)
    paid_member(engine, "M-1", "2027-01-04 10:00")
    leave_club(engine, "M-1", "club", t("2027-01-05 10:00"), NOW)
    items = [("SC-FEE-BASIC", "fees", "1", line), ("GOODS", "groceries", "1", "10.00")]
    if accepted:
        # The fee line never earns; the 10.00 of goods earns 10 as a member.
        assert buy(engine, "T1", "2027-02-01", items, member=member,
                   store="SC-01").points == 10
    else:
        expected = "30.00" if member.startswith("N") else "60.00"
        with pytest.raises(PurchaseRejectedError,
                           match=rf"pays {line} EUR but the Basic fee .* is {expected} EUR"):
            buy(engine, "T1", "2027-02-01", items, member=member, store="SC-01")


def test_a_discounted_trial_waits_for_its_payment_and_refunds_nothing(
        engine: Engine, tmp_path: Path) -> None:
    setup(engine, tmp_path)
    joined = join_club(engine, "M-1", "club", t("2027-01-04 10:00"), NOW, level="plus")
    assert joined.membership["status"] == "pending"
    assert joined.charge is not None and (joined.charge["kind"], joined.charge["amount_minor"],
                                          joined.charge["status"]) == ("trial", 100, "due")
    with pytest.raises(FeeError, match="is a trial; it is paid in money, not points"):
        pay_charge(engine, joined.charge["charge_id"], t("2027-01-05 10:00"), NOW,
                   in_points=True)
    # Paid on 6 Jan: the two months run from the payment, to 6 Mar at the same time.
    paid = pay_charge(engine, joined.charge["charge_id"], t("2027-01-06 10:00"), NOW)
    assert paid.membership is not None
    assert (paid.membership["status"], paid.membership["term_start"],
            paid.membership["term_end"]) == ("active", t("2027-01-06 10:00"),
                                             t("2027-03-06 10:00"))
    assert buy(engine, "P1", "2027-01-07", [("GOODS", "groceries", "1", "10.00")],
               member="M-1", store="SC-01").points == 10  # a member's point per euro
    with pytest.raises(ClubError, match="is on a trial of level 'plus'"):
        upgrade_club(engine, "M-1", "club", "premium", t("2027-01-07 10:00"), NOW)
    # Leaving two days in, inside the 14 days of cooling-off: the 1.00 is not refunded.
    left = leave_club(engine, "M-1", "club", t("2027-01-08 10:00"), NOW)
    assert left.refunded is None and "nothing is refunded" in left.message
    assert left.membership["auto_renew"] is False
    assert left.membership["term_end"] == t("2027-03-06 10:00")


def test_a_former_household_member_is_not_new_to_the_club(
        engine: Engine, tmp_path: Path) -> None:
    setup(engine, tmp_path)
    assert paid_member(engine, "M-1", "2027-01-04 10:00") == 3000  # new: intro 30.00
    add_household_member(engine, "M-1", "club", "S-1", t("2027-01-05 10:00"), NOW)
    remove_household_member(engine, "M-1", "club", "S-1", t("2027-02-01 10:00"), NOW)
    # S-1 shared a membership of the club: on their own they pay the full 60.00.
    assert paid_member(engine, "S-1", "2027-02-02 10:00") == 6000
    assert paid_member(engine, "N-1", "2027-02-02 10:00") == 3000  # new: 30.00
