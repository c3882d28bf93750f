"""Returning a club fee line at the till, on both databases: the refund belongs to the
charge of the term that line paid, and touches the membership only as far as that term
reaches (docs/program-language.md, "Fee lines returned at the till").

rules/big-box-warehouse.yaml: basic 60.00 (BB-FEE-BASIC), executive 120.00 (BB-FEE-EXEC),
12-month terms, the renewal charge raised 30 days before the term ends, 30 days of grace,
only active members earn (a point per euro). Times are Berlin winter time (+01:00); a bare
day is noon. The member is M-1 unless a test says otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import RefundRejectedError
from loyalty_engine.services.clubs import advance_clubs, join_club, upgrade_club
from loyalty_engine.services.enrolment import member_clubs
from loyalty_engine.services.fees import charges_of, pay_charge

from .walk import RECORDED_AT, ROOT, apply_files, assert_ledger_exact, at, buy, refund

BIG_BOX = ROOT / "rules" / "big-box-warehouse.yaml"
NOW = RECORDED_AT
CLUB = "warehouse"
BASIC_LINE = ("BB-FEE-BASIC", "fees", "1", "60.00")
TV = ("TV-55", "electronics", "1", "400.00")


def t(text: str) -> Any:
    """A local winter instant: '2027-01-04 10:00' -> 2027-01-04T10:00:00+01:00."""
    return at(text.replace(" ", "T") + ":00+01:00")


def charges(engine: Engine, member: str = "M-1") -> list[dict[str, Any]]:
    """(kind, level, amount, status, refunded) of the member's charges, oldest first."""
    return [(c["kind"], c["level"], c["amount_minor"], c["status"], c["refunded_minor"])
            for c in reversed(charges_of(engine, member, None))]


def charge_ids(engine: Engine, member: str = "M-1") -> dict[str, int]:
    return {c["kind"]: c["charge_id"] for c in charges_of(engine, member, None)}


def membership(engine: Engine, member: str = "M-1") -> dict[str, Any]:
    [found] = member_clubs(engine, member, NOW)["clubs"]
    return found


def shop(engine: Engine, tx: str, day: str, member: str = "M-1") -> int:
    """A 50.00 purchase at noon; the points it earned (members only)."""
    return buy(engine, tx, day, [("GOODS", "groceries", "1", "50.00")], member=member,
               store="BB-01").points


def joined_at_the_till(engine: Engine, member: str = "M-1") -> int:
    """A TV and the basic fee at noon on 4 January 2027: a member at once, the term to
    4 January 2028 noon. Returns the purchase id."""
    apply_files(engine, BIG_BOX)
    return buy(engine, "P1", "2027-01-04", [BASIC_LINE, TV], member=member,
               store="BB-01").purchase_id


def renewal_paid(engine: Engine, member: str = "M-1") -> None:
    """The renewal for 2028 raised on 10 December and paid on the 12th (ahead of its term)."""
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)
    [due] = charges_of(engine, member, "due")
    pay_charge(engine, due["charge_id"], t("2027-12-12 10:00"), NOW)


# --- a finished term ---------------------------------------------------------------------

def test_returning_a_finished_terms_fee_refunds_only_that_charge(engine: Engine) -> None:
    """The case of the issue: the joining purchase returned in full a year later, while
    the renewal the member paid runs. Before: the running membership was cancelled and
    the paid renewal stayed 'paid'."""
    joined_at_the_till(engine)
    renewal_paid(engine)
    ids = charge_ids(engine)

    done = refund(engine, "R1", "P1", "2028-03-05", "460.00", store="BB-01")
    assert done.fees_refunded == [ids["join"]]
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000),
                               ("renewal", "basic", 6000, "paid", None)]
    kept = membership(engine)
    assert (kept["status"], kept["level"], kept["auto_renew"], kept["ended_at"]) == (
        "active", "basic", True, None)
    assert (kept["term_start"], kept["term_end"]) == (at("2027-01-04"), at("2029-01-04"))
    assert shop(engine, "P2", "2028-03-06") == 50  # still a member: still earns
    assert_ledger_exact(engine)


def test_a_finished_terms_fee_returned_during_grace_leaves_the_grace(engine: Engine) -> None:
    joined_at_the_till(engine)
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)  # renewal due, never paid
    advance_clubs(engine, t("2028-01-05 10:00"), NOW)  # the term is over: grace
    refund(engine, "R1", "P1", "2028-01-10", "60.00", store="BB-01",
           items=[("BB-FEE-BASIC", "1", "60.00")])
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000),
                               ("renewal", "basic", 6000, "due", None)]
    assert membership(engine)["status"] == "grace"


# --- the line's own term is running ------------------------------------------------------

def test_returning_the_running_terms_fee_ends_the_membership_now(engine: Engine) -> None:
    joined_at_the_till(engine)
    done = refund(engine, "R1", "P1", "2027-03-01", "60.00", store="BB-01",
                  items=[("BB-FEE-BASIC", "1", "60.00")])
    assert done.fees_refunded == [charge_ids(engine)["join"]]
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000)]
    ended = membership(engine)
    assert (ended["status"], ended["ended_at"], ended["term_end"], ended["auto_renew"]) == (
        "cancelled", at("2027-03-01"), at("2027-03-01"), False)
    assert shop(engine, "P2", "2027-03-02") == 0
    assert_ledger_exact(engine)


def test_ending_the_running_term_refunds_a_renewal_paid_ahead(engine: Engine) -> None:
    # The renewal for 2028 is paid; the joining fee of 2027 comes back on 20 December,
    # inside its own term: the membership ends, so the term paid ahead will not run.
    joined_at_the_till(engine)
    renewal_paid(engine)
    ids = charge_ids(engine)
    done = refund(engine, "R1", "P1", "2027-12-20", "60.00", store="BB-01",
                  items=[("BB-FEE-BASIC", "1", "60.00")])
    assert done.fees_refunded == [ids["join"], ids["renewal"]]
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000),
                               ("renewal", "basic", 6000, "refunded", 6000)]
    assert membership(engine)["status"] == "cancelled"


def test_ending_the_running_term_waives_a_renewal_not_paid(engine: Engine) -> None:
    joined_at_the_till(engine)
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)
    refund(engine, "R1", "P1", "2027-12-20", "460.00", store="BB-01")
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000),
                               ("renewal", "basic", 6000, "waived", None)]
    assert membership(engine)["status"] == "cancelled"
    # Nothing is owed for the membership that ended: the clock raises nothing more.
    advance_clubs(engine, t("2028-03-01 10:00"), NOW)
    assert len(charges(engine)) == 2 and membership(engine)["status"] == "cancelled"


# --- a renewal paid at the till ----------------------------------------------------------

def _renewal_at_the_till(engine: Engine) -> None:
    """Joined (and paid) on 4 January 2027 10:00 at the office; the renewal for the term
    from 4 January 2028 10:00 paid at the till on 12 December with a TV."""
    apply_files(engine, BIG_BOX)
    joined = join_club(engine, "M-1", CLUB, t("2027-01-04 10:00"), NOW)
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t("2027-01-04 10:00"), NOW)
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)
    buy(engine, "P2", "2027-12-12", [BASIC_LINE, TV], store="BB-01")
    assert membership(engine)["term_end"] == t("2029-01-04 10:00")


def test_a_renewal_returned_before_its_term_keeps_the_current_term(engine: Engine) -> None:
    _renewal_at_the_till(engine)
    refund(engine, "R1", "P2", "2027-12-20", "60.00", store="BB-01",
           items=[("BB-FEE-BASIC", "1", "60.00")])
    assert charges(engine) == [("join", "basic", 6000, "paid", None),
                               ("renewal", "basic", 6000, "refunded", 6000)]
    # The term the joining fee paid runs to its end, and does not renew.
    kept = membership(engine)
    assert (kept["status"], kept["term_end"], kept["auto_renew"]) == (
        "active", t("2028-01-04 10:00"), False)
    assert shop(engine, "P3", "2027-12-21") == 50
    advance_clubs(engine, t("2028-01-05 10:00"), NOW)
    ended = membership(engine)
    assert (ended["status"], ended["ended_at"]) == ("cancelled", t("2028-01-04 10:00"))
    assert len(charges(engine)) == 2  # no renewal raised again
    assert shop(engine, "P4", "2028-01-06") == 0
    assert_ledger_exact(engine)


def test_a_renewal_returned_inside_its_term_ends_the_membership(engine: Engine) -> None:
    _renewal_at_the_till(engine)
    refund(engine, "R1", "P2", "2028-03-01", "460.00", store="BB-01")
    assert charges(engine) == [("join", "basic", 6000, "paid", None),
                               ("renewal", "basic", 6000, "refunded", 6000)]
    assert (membership(engine)["status"], membership(engine)["ended_at"]) == (
        "cancelled", at("2028-03-01"))


# --- returns in part ---------------------------------------------------------------------

def test_a_fee_line_returned_in_parts_acts_once_it_is_all_back(engine: Engine) -> None:
    joined_at_the_till(engine)
    # Part of the line: recorded on the charge, nothing else changes.
    half = refund(engine, "R1", "P1", "2027-02-01", "30.00", store="BB-01",
                  items=[("BB-FEE-BASIC", "0.5", "30.00")])
    assert half.fees_refunded == []
    assert charges(engine) == [("join", "basic", 6000, "paid", 3000)]
    assert membership(engine)["status"] == "active"
    # A refund by amount only, not of the whole purchase, leaves the fee alone.
    refund(engine, "R2", "P1", "2027-02-02", "100.00", store="BB-01")
    assert charges(engine) == [("join", "basic", 6000, "paid", 3000)]
    # The rest of the line, inside its term: now the whole fee is back.
    rest = refund(engine, "R3", "P1", "2027-03-01", "30.00", store="BB-01",
                  items=[("BB-FEE-BASIC", "0.5", "30.00")])
    assert rest.fees_refunded == [charge_ids(engine)["join"]]
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000)]
    assert membership(engine)["status"] == "cancelled"
    assert_ledger_exact(engine)


def test_the_last_part_of_a_finished_terms_fee_leaves_the_membership(engine: Engine) -> None:
    joined_at_the_till(engine)
    refund(engine, "R1", "P1", "2027-06-01", "30.00", store="BB-01",
           items=[("BB-FEE-BASIC", "0.5", "30.00")])
    renewal_paid(engine)
    refund(engine, "R2", "P1", "2028-02-01", "30.00", store="BB-01",
           items=[("BB-FEE-BASIC", "0.5", "30.00")])
    assert charges(engine) == [("join", "basic", 6000, "refunded", 6000),
                               ("renewal", "basic", 6000, "paid", None)]
    assert membership(engine)["status"] == "active"


# --- an upgrade paid at the till ---------------------------------------------------------

# The upgrade on 4 July 2027 10:00 costs (120.00 - 60.00) x 184 / 365 days left of the term
# (4 January 2027 10:00 to 4 January 2028 10:00) = 30.246... -> 30.25.
UPGRADE_LINE = ("BB-FEE-EXEC", "fees", "1", "30.25")


def _upgraded_at_the_till(engine: Engine) -> None:
    apply_files(engine, BIG_BOX)
    joined = join_club(engine, "M-1", CLUB, t("2027-01-04 10:00"), NOW)
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t("2027-01-04 10:00"), NOW)
    up = upgrade_club(engine, "M-1", CLUB, "executive", t("2027-07-04 10:00"), NOW)
    assert up.charge is not None and up.charge["amount_minor"] == 3025
    buy(engine, "P3", "2027-07-05", [UPGRADE_LINE, TV], store="BB-01")
    assert membership(engine)["level"] == "executive"


def test_an_upgrade_returned_in_its_term_gives_back_the_level_it_came_from(
    engine: Engine
) -> None:
    _upgraded_at_the_till(engine)
    done = refund(engine, "R1", "P3", "2027-09-01", "30.25", store="BB-01",
                  items=[("BB-FEE-EXEC", "1", "30.25")])
    assert done.fees_refunded == [charge_ids(engine)["upgrade"]]
    assert charges(engine) == [("join", "basic", 6000, "paid", None),
                               ("upgrade", "executive", 3025, "refunded", 3025)]
    back = membership(engine)
    assert (back["status"], back["level"], back["term_end"]) == (
        "active", "basic", t("2028-01-04 10:00"))


def test_an_upgrade_returned_reprices_the_renewal_waiting_for_payment(engine: Engine) -> None:
    _upgraded_at_the_till(engine)
    advance_clubs(engine, t("2027-12-10 10:00"), NOW)  # raised at the executive level
    assert charges(engine)[-1] == ("renewal", "executive", 12000, "due", None)
    refund(engine, "R1", "P3", "2027-12-15", "430.25", store="BB-01")
    assert charges(engine) == [("join", "basic", 6000, "paid", None),
                               ("upgrade", "executive", 3025, "refunded", 3025),
                               ("renewal", "basic", 6000, "due", None)]
    assert membership(engine)["level"] == "basic"


def test_an_upgrade_cannot_be_returned_while_its_level_is_paid_ahead(engine: Engine) -> None:
    _upgraded_at_the_till(engine)
    renewal_paid(engine)  # 120.00 for 2028 at the executive level
    before = charges(engine)
    paid = r"renewal charge \d+ \(the term from .*\) is paid at level 'executive'"
    with pytest.raises(RefundRejectedError, match=paid):
        refund(engine, "R1", "P3", "2027-12-15", "30.25", store="BB-01",
               items=[("BB-FEE-EXEC", "1", "30.25")])
    assert charges(engine) == before and membership(engine)["level"] == "executive"
    # The TV alone can still come back.
    refund(engine, "R2", "P3", "2027-12-15", "400.00", store="BB-01",
           items=[("TV-55", "1", "400.00")])
    assert charges(engine) == before


def test_an_upgrade_returned_after_its_term_leaves_the_level(engine: Engine) -> None:
    _upgraded_at_the_till(engine)
    renewal_paid(engine)  # executive for 2028, paid
    refund(engine, "R1", "P3", "2028-02-01", "30.25", store="BB-01",
           items=[("BB-FEE-EXEC", "1", "30.25")])
    assert charges(engine) == [("join", "basic", 6000, "paid", None),
                               ("upgrade", "executive", 3025, "refunded", 3025),
                               ("renewal", "executive", 12000, "paid", None)]
    kept = membership(engine)
    assert (kept["status"], kept["level"]) == ("active", "executive")
