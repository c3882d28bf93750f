"""The scheduler's clubs job (04:00 local every day) on trials and households, on both
databases: trial conversions raised for every member whose trial ends within the notice in
one run, grace and lapse after an unconverted trial, and a household closed with its
primary's end. Fixtures: tests/fixtures/programs/student-club.yaml (a free month, then
24.00; notice 14 days, grace 14 days, Europe/Amsterdam) and warehouse-household.yaml."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from loyalty_engine.services.clubs import (
    add_household_member,
    join_club,
    leave_club,
)
from loyalty_engine.services.fees import charges_of, pay_charge
from loyalty_engine.services.scheduling import run_tick
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction

from .walk import RECORDED_AT, apply_files, at

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "programs"
NOW = RECORDED_AT


def t(text: str) -> datetime:
    return at(text.replace(" ", "T") + ":00+01:00")


def clubs_runs(engine: Engine, when: str, program: str) -> list[tuple[str, dict[str, int]]]:
    """Tick one program up to `when`; each clubs run's local fire day and its counts."""
    report = run_tick(engine, t(when), lambda: datetime(2029, 1, 1, tzinfo=UTC),
                      program_id=program)
    assert report.failed == 0
    return [(r.fire.astimezone(t(when).tzinfo).strftime("%m-%d"), r.counts)
            for r in report.runs if r.job == "clubs"]


def test_the_clubs_job_converts_trials_then_graces_and_lapses_them(engine: Engine) -> None:
    apply_files(engine, FIXTURES / "student-club.yaml")
    for member in ("S-1", "S-2"):  # trials to 10 Feb 10:00; notice from 27 Jan 10:00
        join_club(engine, member, "student-plus", t("2027-01-10 10:00"), NOW)

    assert [(d, c["renewal_charges"]) for d, c in clubs_runs(
        engine, "2027-01-26 05:00", "uni-reads")] == [("01-26", 0)]  # a first run: one fire
    # 27 Jan 04:00 is 6 hours before the notice; 28 Jan 04:00 raises both, in one run.
    assert [(d, c["renewal_charges"]) for d, c in clubs_runs(
        engine, "2027-01-28 05:00", "uni-reads")] == [("01-27", 0), ("01-28", 2)]
    due = [c for c in charges_of(engine, None, "due") if c["kind"] == "renewal"]
    assert sorted((c["member_id"], c["amount_minor"]) for c in due) == [
        ("S-1", 2400), ("S-2", 2400)]  # both at the introductory 24.00

    # Neither paid by 10 Feb 10:00: both in grace at the 11 Feb run; S-1 pays then.
    runs = clubs_runs(engine, "2027-02-11 05:00", "uni-reads")
    assert [(d, c["entered_grace"]) for d, c in runs][-2:] == [("02-10", 0), ("02-11", 2)]
    [s1] = [c for c in due if c["member_id"] == "S-1"]
    pay_charge(engine, s1["charge_id"], t("2027-02-12 10:00"), NOW)
    # Grace ends 24 Feb 10:00: S-2 lapses at the 25 Feb run, its charge failed.
    runs = clubs_runs(engine, "2027-02-26 05:00", "uni-reads")
    assert [(d, c["lapsed"]) for d, c in runs if c["lapsed"]] == [("02-25", 1)]
    m = tables.club_memberships
    with read_transaction(engine) as conn:
        statuses = dict(conn.execute(select(m.c.member_id, m.c.status).where(
            m.c.club_id == "student-plus")).all())
    assert statuses == {"S-1": "active", "S-2": "lapsed"}
    assert [c["status"] for c in charges_of(engine, "S-2", None)] == ["failed", "waived"]


def test_the_clubs_job_closes_a_household_with_its_primary(engine: Engine) -> None:
    apply_files(engine, FIXTURES / "warehouse-household.yaml")
    joined = join_club(engine, "P-1", "warehouse", t("2027-01-04 10:00"), NOW, level="basic")
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], t("2027-01-04 10:00"), NOW)
    add_household_member(engine, "P-1", "warehouse", "S-1", t("2027-01-05 10:00"), NOW)
    # Left after the cooling-off period: the term runs to 4 Jan 2028 10:00, no renewal.
    leave_club(engine, "P-1", "warehouse", t("2027-02-01 10:00"), NOW)
    [(day, counts)] = clubs_runs(engine, "2028-01-05 05:00", "big-box-family")
    assert (day, counts["ended"], counts["household_members_ended"]) == ("01-05", 1, 1)
    h = tables.household_members
    with read_transaction(engine) as conn:
        [row] = conn.execute(select(h.c.member_id, h.c.removed_at)).all()
    assert row.member_id == "S-1" and row.removed_at == t("2028-01-04 10:00")  # the end
