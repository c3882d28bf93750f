"""Household members of a fee club, on both databases (tests/fixtures/programs/
warehouse-household.yaml: Basic 60.00 with one household member, Executive 120.00 with two
and a 2 % yearly rebate to the primary, capped at 1,250.00; a point per euro while the
membership is active or in grace; renewal raised 30 days ahead, 30 days of grace, 14 days
of cooling-off). Berlin winter instants are +01:00, summer ones +02:00.

One fee, each member with their own id; a secondary has the membership's benefits from
being added until removed or the primary's membership ends, each purchase judged at its own
time; the secondary's eligible spend counts for the primary's rebate."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import ClubError, PurchaseRejectedError
from loyalty_engine.services.clubs import (
    add_household_member,
    advance_clubs,
    join_club,
    leave_club,
    remove_household_member,
)
from loyalty_engine.services.enrolment import member_clubs
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.rebates import issue_rebates
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

from .walk import (
    RECORDED_AT,
    apply_files,
    assert_ledger_exact,
    at,
    buy,
    points,
    rebate_vouchers,
    refund,
    state,
)

FAMILY = (Path(__file__).resolve().parents[1] / "fixtures" / "programs"
          / "warehouse-household.yaml")
NOW = RECORDED_AT
PROGRAM = "big-box-family"
CLUB = "warehouse"


def t(text: str) -> datetime:
    """'2027-01-04 10:00' in winter time (+01:00); a text with an offset is taken as is."""
    text = text.replace(" ", "T")
    return at(text if "+" in text else text + ":00+01:00")


def shop(engine: Engine, tx: str, member: str, when: str, amount: str) -> int:
    """A one-line purchase; the points it earned."""
    return buy(engine, tx, when, [("GOODS", "groceries", "1", amount)], member=member,
               store="BB-01").points


def member_of(engine: Engine, member: str, level: str, when: str) -> None:
    """Join at a level and pay at once: the term runs 12 months from `when`."""
    joined = join_club(engine, member, CLUB, t(when), NOW, level=level)
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t(when), NOW)


def add(engine: Engine, primary: str, secondary: str, when: str, club: str = CLUB) -> Any:
    return add_household_member(engine, primary, club, secondary, t(when), NOW)


def fee_charges(engine: Engine, member: str) -> int:
    c = tables.fee_charges
    with read_transaction(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(c)
                                .where(c.c.member_id == member)).scalar_one())


def test_a_household_shares_one_membership_its_benefits_and_its_rebate(
        engine: Engine) -> None:
    apply_files(engine, FAMILY)
    member_of(engine, "P-1", "executive", "2027-01-04 10:00")  # paid through 2028-01-04 10:00

    # Before being added, S-1 is nobody's member: nothing earned.
    assert shop(engine, "H01", "S-1", "2027-01-04", "100.00") == 0
    added = add(engine, "P-1", "S-1", "2027-01-05 10:00")
    assert "S-1 shares the Big Box Family Membership of P-1" in added.message
    add(engine, "P-1", "S-2", "2027-01-05 11:00")
    # One fee: the primary's 120.00 charge is the household's only charge.
    assert (fee_charges(engine, "P-1"), fee_charges(engine, "S-1"),
            fee_charges(engine, "S-2")) == (1, 0, 0)

    # Each earns on their own card (id) with the membership's benefits.
    assert shop(engine, "H02", "S-1", "2027-02-01", "200.00") == 200  # 1 per euro
    assert shop(engine, "H03", "P-1", "2027-02-02", "300.00") == 300
    assert shop(engine, "H04", "S-2", "2027-03-01", "50.00") == 50

    # Removed on 1 Jun at 10:00: S-2's benefits end at that instant. A purchase from the
    # day before, posted late, is judged at its own time and still earns.
    removed = remove_household_member(engine, "P-1", CLUB, "S-2",
                                      t("2027-06-01T10:00:00+02:00"), NOW)
    assert "no longer shares" in removed.message
    assert shop(engine, "H05", "S-2", "2027-06-01T12:00:00+02:00", "80.00") == 0
    assert shop(engine, "H06", "S-2", "2027-05-31T12:00:00+02:00", "40.00") == 40
    assert shop(engine, "H07", "S-1", "2027-07-01T12:00:00+02:00", "150.00") == 150

    # The 2027 rebate is the primary's, on the household's spend while in it:
    # P-1 300.00 + S-1 (200.00 + 150.00) + S-2 (50.00 + 40.00) = 740.00; 2 % = 14.80.
    # S-1's 100.00 before being added and S-2's 80.00 after removal earned no perk.
    issued = issue_rebates(engine, t("2028-01-01 00:30"), NOW)
    assert issued.vouchers == 1 and issued.amount_minor(PROGRAM) == 1480
    assert [code for code, _ in state(engine, "P-1")["vouchers"]] == [
        "big-box-family-executive-rebate-2027-P-1"]
    assert state(engine, "S-1")["vouchers"] == [] and state(engine, "S-2")["vouchers"] == []

    # The primary does not pay the renewal: grace from 4 Jan 2028 keeps the household's
    # benefits; the lapse 30 days later (3 Feb 10:00) ends them at that instant.
    assert advance_clubs(engine, t("2028-01-04 10:00"), NOW).grace == 1
    assert shop(engine, "H08", "S-1", "2028-01-10", "10.00") == 10
    step = advance_clubs(engine, t("2028-02-03 10:00"), NOW)
    assert (step.lapsed, step.households_ended) == (1, 1)  # S-1 (S-2 was removed already)
    assert shop(engine, "H09", "S-1", "2028-02-03", "20.00") == 0  # noon, after the lapse
    assert shop(engine, "H10", "S-1", "2028-02-03T09:00:00+01:00", "10.00") == 10  # an hour before

    # Balances: P-1 300; S-1 200 + 150 + 10 + 10 = 370; S-2 50 + 40 = 90.
    assert [points(engine, PROGRAM, m) for m in ("P-1", "S-1", "S-2")] == [
        (300, 0), (370, 0), (90, 0)]
    # Both stints are on record: S-2's ended by removal, S-1's with the lapse.
    assert [(h["member_id"], h["removed_at"]) for h in member_clubs(engine, "P-1", NOW)[
        "households"]] == [("S-1", t("2028-02-03 10:00")),
                           ("S-2", t("2027-06-01T10:00:00+02:00"))]
    # The household is over: S-1 may now join on their own.
    own = join_club(engine, "S-1", CLUB, t("2028-02-04 10:00"), NOW, level="basic")
    assert own.charge is not None and own.charge["amount_minor"] == 6000
    assert_ledger_exact(engine)


def test_a_primary_cancelling_in_cooling_off_ends_the_household_at_once(
        engine: Engine) -> None:
    apply_files(engine, FAMILY)
    member_of(engine, "P-1", "basic", "2027-01-04 10:00")
    add(engine, "P-1", "S-1", "2027-01-05 10:00")
    assert shop(engine, "C01", "S-1", "2027-01-06", "30.00") == 30
    left = leave_club(engine, "P-1", CLUB, t("2027-01-10 10:00"), NOW)  # day 6 of 14
    assert left.refunded is not None and left.refunded["refunded_minor"] == 6000
    assert shop(engine, "C02", "S-1", "2027-01-10", "30.00") == 0  # noon, after 10:00
    assert shop(engine, "C03", "S-1", "2027-01-10T09:00:00+01:00", "30.00") == 30  # before it
    # Closed at once (not at the next clubs run): S-1 can join their own membership.
    assert join_club(engine, "S-1", CLUB, t("2027-01-11 10:00"), NOW).charge is not None
    assert points(engine, PROGRAM, "S-1") == (60, 0)  # 30 + 30
    assert_ledger_exact(engine)


def _setup(engine: Engine) -> None:
    """P-1 Executive (two household places), P-2 Basic (one), L-1 cancelled in its
    cooling-off, Q-1 pending (unpaid)."""
    apply_files(engine, FAMILY)
    member_of(engine, "P-1", "executive", "2027-01-04 10:00")
    member_of(engine, "P-2", "basic", "2027-01-04 10:00")
    member_of(engine, "L-1", "basic", "2027-01-04 10:00")
    leave_club(engine, "L-1", CLUB, t("2027-01-05 10:00"), NOW)
    join_club(engine, "Q-1", CLUB, t("2027-01-04 10:00"), NOW, level="basic")
    join_club(engine, "A-1", "app-club", t("2027-01-04 10:00"), NOW)


def _join_own(engine: Engine) -> None:
    join_club(engine, "S-1", CLUB, t("2027-01-07 10:00"), NOW, level="basic")


def _remove_stranger(engine: Engine) -> None:
    remove_household_member(engine, "P-1", CLUB, "S-9", t("2027-01-07 10:00"), NOW)


# name: (what was done first (primary, secondary) pairs, the refused act, the message)
REFUSED: dict[str, tuple[list[tuple[str, str]], Any, str]] = {
    "a secondary in two households": (
        [("P-1", "S-1")], lambda e: add(e, "P-2", "S-1", "2027-01-07 10:00"),
        "member 'S-1' is already a household member of 'P-1''s membership of club "
        "'warehouse'; a member shares one membership at a time"),
    "a primary elsewhere of the same club": (
        [], lambda e: add(e, "P-1", "P-2", "2027-01-07 10:00"),
        "member 'P-2' has a membership of club 'warehouse' of their own (active); a "
        "household member shares someone else's: they leave theirs first"),
    "adding to a cancelled membership": (
        [], lambda e: add(e, "L-1", "S-1", "2027-01-07 10:00"),
        "member 'L-1' has no active membership of club 'warehouse' to share (cancelled)"),
    "adding to an unpaid membership": (
        [], lambda e: add(e, "Q-1", "S-1", "2027-01-07 10:00"),
        "member 'Q-1' has no active membership of club 'warehouse' to share (pending)"),
    "adding to a secondary": (
        [("P-1", "S-1")], lambda e: add(e, "S-1", "S-2", "2027-01-07 10:00"),
        "member 'S-1' has no active membership of club 'warehouse' to share "
        "(not a member)"),
    "exceeding max_members at Basic": (
        [("P-2", "S-1")], lambda e: add(e, "P-2", "S-2", "2027-01-07 10:00"),
        "the membership of 'P-2' in club 'warehouse' already has 1 household member(s) "
        "('S-1'), the most its level allows (max_members: 1); remove one first"),
    "exceeding max_members at Executive": (
        [("P-1", "S-1"), ("P-1", "S-2")], lambda e: add(e, "P-1", "S-3", "2027-01-07 10:00"),
        "the membership of 'P-1' in club 'warehouse' already has 2 household member(s) "
        "('S-1', 'S-2'), the most its level allows (max_members: 2); remove one first"),
    "the primary themselves": (
        [], lambda e: add(e, "P-1", "P-1", "2027-01-07 10:00"),
        "member 'P-1' cannot be a household member of their own membership"),
    "a club that is not a fee club": (
        [], lambda e: add(e, "A-1", "S-1", "2027-01-07 10:00", club="app-club"),
        "club 'app-club' is not a fee club (open): only fee clubs share a membership "
        "with household members"),
    "a secondary joining on their own": (
        [("P-1", "S-1")], _join_own,
        "member 'S-1' shares the membership of 'P-1' in club 'warehouse' as a household "
        "member; remove them with `loyalty clubs remove-member P-1 warehouse S-1` first"),
    "removing a member who is not in the household": (
        [], _remove_stranger,
        "member 'S-9' is not a household member of 'P-1''s membership of club "
        "'warehouse'"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_household_mistakes_are_refused_in_one_sentence(engine: Engine, name: str) -> None:
    before, act, message = REFUSED[name]
    _setup(engine)
    for primary, secondary in before:
        add(engine, primary, secondary, "2027-01-06 10:00")
    households = member_clubs(engine, "P-1", NOW)
    with pytest.raises(ClubError) as info:
        act(engine)
    assert str(info.value) == message
    assert member_clubs(engine, "P-1", NOW) == households  # nothing half-written
    h = tables.household_members
    with read_transaction(engine) as conn:
        rows = conn.execute(select(func.count()).select_from(h)).scalar_one()
    assert rows == len(before)


def test_a_household_member_cannot_join_at_the_till_either(engine: Engine) -> None:
    _setup(engine)
    add(engine, "P-2", "S-1", "2027-01-06 10:00")
    with pytest.raises(PurchaseRejectedError, match=r"line 'BBF-FEE-BASIC' would make member "
                       r"'S-1' a member of club .*they share the membership of 'P-2'"):
        buy(engine, "F01", "2027-01-07", [("BBF-FEE-BASIC", "fees", "1", "60.00")],
            member="S-1", store="BB-01")
    assert fee_charges(engine, "S-1") == 0
    # A member outside any household joins at the till as before (the fee line earns
    # nothing; there is nothing else on the receipt).
    assert buy(engine, "F02", "2027-01-07", [("BBF-FEE-BASIC", "fees", "1", "60.00")],
               member="S-2", store="BB-01").points == 0
    assert fee_charges(engine, "S-2") == 1


def test_a_household_members_return_settles_the_primarys_rebate(engine: Engine) -> None:
    apply_files(engine, FAMILY)
    member_of(engine, "P-1", "executive", "2027-01-04 10:00")
    add(engine, "P-1", "S-1", "2027-01-05 10:00")
    shop(engine, "R01", "S-1", "2027-02-01", "200.00")
    shop(engine, "R02", "P-1", "2027-02-02", "300.00")
    # S-1 leaves on 1 March and comes back on 20 March, the same year: two stints that
    # begin in one period (the job sorted them by period and crashed comparing their ends).
    remove_household_member(engine, "P-1", CLUB, "S-1", t("2027-03-01 10:00"), NOW)
    add(engine, "P-1", "S-1", "2027-03-20 10:00")
    shop(engine, "R03", "S-1", "2027-04-01T12:00:00+02:00", "100.00")
    # 2027: 200.00 + 300.00 + 100.00 = 600.00 of the household; 2 % = 12.00 to P-1.
    issued = issue_rebates(engine, t("2028-01-01 00:30"), NOW)
    assert issued.amount_minor(PROGRAM) == 1200
    assert rebate_vouchers(engine, "P-1") == [
        ("big-box-family-executive-rebate-2027-P-1", "issued", 1200)]

    # S-1 returns the 200.00 in full: the household's year is 400.00, 2 % = 8.00; the
    # primary's unused voucher is replaced by one of 8.00 (S-1 has no voucher to change).
    back = refund(engine, "RF1", "R01", "2028-01-10", "200.00", store="BB-01")
    assert back.vouchers_voided == ["big-box-family-executive-rebate-2027-P-1"]
    # The primary returns 100.00 of their 300.00: 300.00 left, 2 % = 6.00, judged on the
    # household's spend (not 200.00 of their own, which would be 4.00).
    refund(engine, "RF2", "R02", "2028-01-11", "100.00", store="BB-01")
    assert [(status, amount) for _, status, amount in rebate_vouchers(engine, "P-1")] == [
        ("void", 1200), ("void", 800), ("issued", 600)]
    assert rebate_vouchers(engine, "S-1") == []
    assert_ledger_exact(engine)
