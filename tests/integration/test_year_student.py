"""A year of a student at Uni Reads (tests/fixtures/programs/student-club.yaml), on both
databases: the verified Student Club, the free first month of Student Plus, its conversion
to a first paid year at the introductory 24.00, purchases with both clubs' benefits, a lapse
of the verification, and the second year at the full 48.00.

Points per purchase, all rules floor a euro amount: 1 per euro for everyone, +1 per euro in
the Student Club, +1 per euro with Student Plus's plus-points perk while also in the Student
Club. Winter instants are +01:00, summer ones +02:00 (Europe/Amsterdam)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from loyalty_engine.services.clubs import advance_clubs, join_club, leave_club
from loyalty_engine.services.enrolment import enrol_member, member_clubs
from loyalty_engine.services.fees import charges_of, pay_charge
from loyalty_engine.services.groups import verify_member

from .walk import RECORDED_AT, apply_files, assert_ledger_exact, at, buy, points

STUDENT = Path(__file__).resolve().parents[1] / "fixtures" / "programs" / "student-club.yaml"
NOW = RECORDED_AT
PROGRAM = "uni-reads"
PLUS = "student-plus"


def t(text: str) -> datetime:
    """'2027-01-10 10:00' in winter time (+01:00); a text with an offset is taken as is."""
    text = text.replace(" ", "T")
    return at(text if "+" in text else text + ":00+01:00")


def shop(engine: Engine, tx: str, member: str, when: str, amount: str) -> int:
    """A one-line book purchase; the points it earned."""
    return buy(engine, tx, when, [("BOOK", "books", "1", amount)], member=member,
               store="UR-01").points


def club(engine: Engine, member: str, club_id: str) -> dict[str, Any]:
    found: dict[str, Any]
    [found] = [c for c in member_clubs(engine, member, NOW)["clubs"]
               if c["club_id"] == club_id]
    return found


def charges(engine: Engine, member: str) -> list[tuple[str, int, str]]:
    """(kind, amount in cents, status) of the member's charges, oldest first."""
    return [(c["kind"], c["amount_minor"], c["status"])
            for c in reversed(charges_of(engine, member, None))]


def student(engine: Engine, member: str, until: str, when: str) -> None:
    """Enrol, verify a student card and join the Student Club a minute later."""
    enrol_member(engine, member, {}, {}, t(when), NOW, program_id=PROGRAM)
    verify_member(engine, member, "students", t(until), "card-" + member, t(when), NOW)
    join_club(engine, member, "student-club", t(when.replace(":00", ":01")), NOW)


def test_a_student_year_trial_conversion_benefits_and_a_lapse_of_verification(
        engine: Engine) -> None:
    apply_files(engine, STUDENT)
    student(engine, "S-1", "2027-10-01T00:00:00+02:00", "2027-01-10 09:00")

    # A member new to Plus starts a free month at once: a waived trial charge of 0.00,
    # benefits from the join, the term ends a month later at the same wall time.
    joined = join_club(engine, "S-1", PLUS, t("2027-01-10 10:00"), NOW)
    assert joined.membership["status"] == "active"
    assert joined.membership["term_end"] == t("2027-02-10 10:00")
    assert joined.charge is not None and (joined.charge["kind"], joined.charge["amount_minor"],
                                          joined.charge["status"]) == ("trial", 0, "waived")
    assert "free 1-month trial" in joined.message
    assert shop(engine, "U01", "S-1", "2027-01-15", "20.00") == 60  # 20 + 20 + 20

    # The renewal is raised 14 days before the trial ends (27 Jan 10:00), at the
    # introductory fee: the trial converts to the member's first paid year.
    assert advance_clubs(engine, t("2027-01-27 09:59"), NOW).renewals == 0
    step = advance_clubs(engine, t("2027-01-27 10:00"), NOW)
    assert (step.renewals, step.waived) == (1, 0)
    assert advance_clubs(engine, t("2027-01-28 10:00"), NOW).renewals == 0  # natural key
    [_, renewal] = charges_of(engine, "S-1", None)[::-1]
    assert (renewal["kind"], renewal["amount_minor"], renewal["status"]) == (
        "renewal", 2400, "due")  # intro_fee 24.00, not the 48.00 fee
    assert renewal["term_start"] == t("2027-02-10 10:00")
    assert renewal["term_end"] == t("2028-02-10 10:00")
    assert renewal["detail"]["after_trial"] is True
    paid = pay_charge(engine, renewal["charge_id"], t("2027-02-05 10:00"), NOW)
    assert paid.membership is not None and paid.membership["term_end"] == t("2028-02-10 10:00")
    step = advance_clubs(engine, t("2027-02-11 10:00"), NOW)
    assert (step.grace, step.lapsed, step.ended) == (0, 0, 0)
    assert club(engine, "S-1", PLUS)["status"] == "active"

    assert shop(engine, "U02", "S-1", "2027-03-01", "35.50") == 105  # 35 x 3 (floors)
    assert shop(engine, "U03", "S-1", "2027-09-30T12:00:00+02:00", "10.00") == 30  # 10 x 3

    # The card runs out on 1 Oct: the Student Club's point and (needing the Student Club)
    # Plus's point stop at that instant, though Plus itself is paid and active.
    assert shop(engine, "U04", "S-1", "2027-10-05T12:00:00+02:00", "40.00") == 40  # 40 x 1
    step = advance_clubs(engine, t("2027-10-06T10:00:00+02:00"), NOW)
    assert (step.eligibility_lapsed, step.memberships_lapsed_by_eligibility) == (1, 1)
    assert club(engine, "S-1", "student-club")["status"] == "lapsed"
    assert club(engine, "S-1", PLUS)["status"] == "active"

    # A new card; the Student Club is joined again, and all three points are back.
    student(engine, "S-1", "2028-09-30T00:00:00+02:00", "2027-10-10T09:00:00+02:00")
    assert shop(engine, "U05", "S-1", "2027-11-02", "10.00") == 30  # 10 x 3

    # The second year renews at the full fee: the introductory price is for one term.
    step = advance_clubs(engine, t("2028-01-27 10:00"), NOW)
    assert step.renewals == 1
    assert charges(engine, "S-1") == [("trial", 0, "waived"), ("renewal", 2400, "paid"),
                                      ("renewal", 4800, "due")]
    # 60 + 105 + 30 + 40 + 30 = 265 points, none pending.
    assert points(engine, PROGRAM, "S-1") == (265, 0)
    assert_ledger_exact(engine)


def test_a_trial_cancelled_ends_at_its_end_and_is_never_offered_again(engine: Engine) -> None:
    apply_files(engine, STUDENT)
    join_club(engine, "S-2", PLUS, t("2027-01-10 10:00"), NOW)
    # Not a verified student: the Plus perk alone earns nothing extra (the rule needs the
    # Student Club too).
    assert shop(engine, "V01", "S-2", "2027-01-12", "10.00") == 10

    # Leaving inside the trial (and inside 14 days of cooling-off): nothing to refund; the
    # trial runs to its end and does not convert.
    left = leave_club(engine, "S-2", PLUS, t("2027-01-20 10:00"), NOW)
    assert left.refunded is None and "nothing is refunded" in left.message
    assert left.membership["status"] == "active" and left.membership["auto_renew"] is False
    assert advance_clubs(engine, t("2027-01-27 10:00"), NOW).renewals == 0
    step = advance_clubs(engine, t("2027-02-10 10:00"), NOW)
    assert step.ended == 1
    assert club(engine, "S-2", PLUS)["status"] == "cancelled"

    # Coming back: no second trial and no introductory price — a former member pays the
    # fee, and the membership is pending until it is paid.
    again = join_club(engine, "S-2", PLUS, t("2027-03-01 10:00"), NOW)
    assert again.membership["status"] == "pending"
    assert again.charge is not None and (again.charge["kind"], again.charge["amount_minor"],
                                         again.charge["status"]) == ("join", 4800, "due")
    assert charges(engine, "S-2") == [("trial", 0, "waived"), ("join", 4800, "due")]
    assert_ledger_exact(engine)


def test_a_trial_unpaid_through_grace_lapses(engine: Engine) -> None:
    apply_files(engine, STUDENT)
    student(engine, "S-3", "2027-12-31 00:00", "2027-01-10 09:00")
    join_club(engine, "S-3", PLUS, t("2027-01-10 10:00"), NOW)
    assert advance_clubs(engine, t("2027-01-27 10:00"), NOW).renewals == 1  # 24.00 due
    # The trial ends unpaid: 14 days of grace keep the benefits.
    assert advance_clubs(engine, t("2027-02-10 10:00"), NOW).grace == 1
    assert shop(engine, "W01", "S-3", "2027-02-15", "10.00") == 30  # 10 x 3, in grace
    # Grace ends 24 Feb 10:00 (10 Feb + 14 days): the membership lapses, the charge fails.
    assert advance_clubs(engine, t("2027-02-24 09:59"), NOW).lapsed == 0
    assert advance_clubs(engine, t("2027-02-24 10:00"), NOW).lapsed == 1
    assert club(engine, "S-3", PLUS)["status"] == "lapsed"
    assert charges(engine, "S-3") == [("trial", 0, "waived"), ("renewal", 2400, "failed")]
    assert shop(engine, "W02", "S-3", "2027-02-25", "10.00") == 20  # 10 x 2: Student Club
    assert points(engine, PROGRAM, "S-3") == (50, 0)  # 30 + 20
    assert_ledger_exact(engine)
