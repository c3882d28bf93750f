"""The finance reports on both databases over a small history worked out by hand.

finance-shop (tests/fixtures/programs/finance-shop.yaml): a point a euro, pending 14 days,
points lapse two months after they were earned. Amsterdam time; noon unless said.

    2026-01-10  M-1 buys 100.00: lot A, 100 points (pending to 24 Jan, lapse 10 Mar)
    2026-01-20  M-2 buys  50.00: lot B,  50 points (pending to 3 Feb, lapse 20 Mar)
    2026-02-05  activation; M-1 redeems 60 (from A), reversed on 6 Feb (back to A)
    2026-02-07  M-1 redeems 40 (A: 60 left)
    2026-02-10  M-2 returns 20.00 of 50.00: 20 points back from B (30 left)
    2026-02-15  goodwill credit of 25 to M-2: lot C (lapse 15 Apr)
    2026-03-01  M-1 buys 30.00: lot D, 30 points (pending to 15 Mar, lapse 1 May)
    2026-03-25  expiry run: A's 60 (10 Mar) and B's 30 (20 Mar) lapse

Roll-forward by month: January 0 + 150 earned = 150; February 150 - 100 redeemed + 60
reversed - 20 refunded + 25 adjusted = 115; March 115 + 30 earned - 90 expired = 55, what
the balances show (M-1 30 in D, M-2 25 in C).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, literal, select

from loyalty_engine.finance.values import ReportError
from loyalty_engine.records.ledger_reports import Months, balance_totals
from loyalty_engine.services.adjustments import Adjustment, adjust_points
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.points import activate_pending
from loyalty_engine.services.redemptions import reverse_redemption
from loyalty_engine.services.reports import (
    breakage_report,
    earn_burn,
    ifrs15_report,
    liability,
    roll_forward_report,
)
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.types import UTCDateTime

from .walk import apply_text, assert_ledger_exact, at, buy, points, refund, spend

PROGRAM = (Path(__file__).resolve().parents[1] / "fixtures" / "programs"
           / "finance-shop.yaml").read_text(encoding="utf-8")
NOW = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
END_OF_MARCH = at("2026-03-31T12:00:00+02:00")


def _history(engine: Engine, tmp_path: Path, *, expire: bool = True,
             activate: bool = True, program: str = PROGRAM) -> None:
    apply_text(engine, tmp_path, program)
    buy(engine, "P1", "2026-01-10", [("BOOK", "books", "1", "100.00")])
    buy(engine, "P2", "2026-01-20", [("PEN", "office", "2", "25.00")], member="M-2")
    activate_pending(engine, at("2026-02-05"))
    spend(engine, "R1", "2026-02-05", "finance-shop", points=60)
    reverse_redemption(engine, "R1", at("2026-02-06"), at("2026-02-06"))
    spend(engine, "R2", "2026-02-07", "finance-shop", points=40)
    refund(engine, "F1", "P2", "2026-02-10", "20.00")
    adjust_points(engine, Adjustment("goodwill-1", "M-2", "finance-shop", 25, "late parcel",
                                     "goodwill", "ops", at("2026-02-15")), at("2026-02-15"))
    buy(engine, "P3", "2026-03-01", [("BOOK", "books", "1", "30.00")])
    if activate:
        activate_pending(engine, at("2026-03-25"))
    if expire:
        expire_due(engine, at("2026-03-25"), NOW)


def test_roll_forward_by_hand_ties_to_the_balances(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    [report] = roll_forward_report(engine, END_OF_MARCH, "month")
    assert [p.as_json() for p in report.periods] == [
        {"period": "2026-01", "opening": 0, "earned": 150, "redeemed": 0, "reversed": 0,
         "expired": 0, "refunded": 0, "adjusted": 0, "other": 0, "closing": 150},
        {"period": "2026-02", "opening": 150, "earned": 0, "redeemed": 100, "reversed": 60,
         "expired": 0, "refunded": 20, "adjusted": 25, "other": 0, "closing": 115},
        {"period": "2026-03", "opening": 115, "earned": 30, "redeemed": 0, "reversed": 0,
         "expired": 90, "refunded": 0, "adjusted": 0, "other": 0, "closing": 55},
    ]
    with read_transaction(engine) as conn:
        assert balance_totals(conn) == {"finance-shop": 55}
    assert report.balances == 55 == report.periods[-1].closing
    assert_ledger_exact(engine)
    # A quarter holds the three months; February alone opens at January's closing.
    [quarter] = roll_forward_report(engine, END_OF_MARCH, "quarter")
    assert [(p.key, p.opening, p.closing) for p in quarter.periods] == [("2026-Q1", 0, 55)]
    [february] = roll_forward_report(engine, END_OF_MARCH, "month",
                                     at("2026-02-01T00:00:00+01:00"),
                                     at("2026-02-28T12:00:00+01:00"))
    assert [(p.key, p.opening, p.closing) for p in february.periods] == [
        ("2026-02", 150, 115)]


def test_earn_and_burn_by_hand(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    [found] = earn_burn(engine, END_OF_MARCH, "month")
    assert found["periods"] == [
        {"period": "2026-01", "issued": 150, "redeemed": 0, "expired": 0,
         "redemption_rate": "0.000000"},
        {"period": "2026-02", "issued": 0, "redeemed": 40, "expired": 0,
         "redemption_rate": None},
        {"period": "2026-03", "issued": 30, "redeemed": 0, "expired": 90,
         "redemption_rate": "0.000000"},
    ]


def test_the_breakage_triangle_by_hand(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    [report] = breakage_report(engine, END_OF_MARCH)
    cells = {(c.month, cell.age): (cell.redeemed, cell.expired, cell.cancelled,
                                   cell.outstanding)
             for c in report.cohorts for cell in c.cells}
    # January's 150: 40 redeemed net of the reversal and 20 taken back by the return in
    # February, 90 lapsed in March. February's 25 (the credit) and March's 30 outstanding.
    assert cells == {("2026-01", 0): (0, 0, 0, 150), ("2026-01", 1): (40, 0, 20, 90),
                     ("2026-01", 2): (40, 90, 20, 0),
                     ("2026-02", 0): (0, 0, 0, 25), ("2026-02", 1): (0, 0, 0, 25),
                     ("2026-03", 0): (0, 0, 0, 30)}
    p = report.projection
    # Age 0 -> 1 over January and February: 175 outstanding, 40 redeemed, 20 cancelled;
    # age 1 -> 2, January: 90 outstanding, all 90 expired. Tail 40 / (40 + 90).
    assert p.ratios == ((Fraction(8, 35), Fraction(0), Fraction(4, 35)),
                        (Fraction(0), Fraction(1), Fraction(0)))
    assert p.tail == Fraction(4, 13)
    # Ultimate: January 40; February 0 (all 25 expire at age 2); March 30 x 8/35 = 48/7,
    # cancelled 24/7. Rate (40 + 48/7) / (130 + 25 + 30 - 24/7) = 8/31.
    assert p.ultimate_rate == Fraction(8, 31)
    assert p.outstanding_rate == Fraction(48, 385)  # (48/7) / 55
    assert [e.month for e in report.moves] == ["2026-01", "2026-02", "2026-03"]
    assert report.moves[0].ultimate_rate == 1  # no development yet: no breakage assumed


def test_liability_by_hand(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    [owed] = liability(engine, END_OF_MARCH)
    # 55 outstanding at 0.01 EUR: 0.55 EUR; 48/385 of it expected redeemed: 6.86 -> 7
    # points, 7 cents; breakage 48 points, 48 cents.
    assert (owed.spendable, owed.pending, owed.outstanding) == (55, 0, 55)
    assert owed.point_value == Decimal("0.01")
    assert (owed.value_minor, owed.expected_redemptions, owed.expected_cost_minor,
            owed.expected_breakage, owed.breakage_value_minor) == (55, 7, 7, 48, 48)
    # 10 March: D's 30 still pending (to 15 March), A lapsed that noon (60); B 30 and C 25
    # spendable.
    [earlier] = liability(engine, at("2026-03-10T13:00:00+01:00"))
    assert (earlier.spendable, earlier.pending, earlier.unrecorded_expiry) == (55, 30, 0)


def test_liability_counts_lapsed_lots_before_the_expire_step_runs(
        engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path, expire=False)
    [owed] = liability(engine, END_OF_MARCH)
    assert (owed.outstanding, owed.unrecorded_expiry) == (55, 90)
    [report] = breakage_report(engine, END_OF_MARCH)
    assert report.projection.ultimate_rate == Fraction(8, 31)


def test_ifrs15_schedule_from_the_ledger(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    report = ifrs15_report(engine, END_OF_MARCH, "finance-shop")
    months = {r["month"]: r for r in report.rows}
    # January: 150.00 of sales earned 150 points; net of the return (20.00 and its 20
    # points) 130.00 and 130 points at 1 cent, with no development at the end of January
    # (all points expected redeemed): SSP 130 cents; to points 13,000 x 130 / 13,130 =
    # 128.71 -> 129.
    assert months["2026-01"]["allocated_minor"] == 129
    # March: 30.00 earned 30 points; expected redemption at the end of March 8/31: SSP
    # 30 x 8/31 = 7.74 cents; to points 3,000 x 7.74 / 3,007.74 = 7.72 -> 8.
    assert months["2026-03"]["allocated_minor"] == 8
    # January's cohort: at the end of January the estimate is all 150 redeemed; at the end
    # of February (40 redeemed, 20 refunded, 90 out, no expiry seen yet) 40 + 90 = 130:
    # cumulative 129 x 40 / 130 = 39.69 -> 40, of which 40 - 129 x 40 / 150 (34.4 -> 34)
    # = 6 catch-up. In March nothing of it is left (90 expired): the remaining 89.
    assert [(m, r["allocated_minor"], r["revenue_minor"], r["catch_up_minor"],
             r["liability_minor"]) for m, r in months.items()] == [
        ("2026-01", 129, 0, 0, 129), ("2026-02", 0, 40, 6, 89),
        ("2026-03", 8, 89, 0, 8)]
    debits = sum(line.debit_minor for line in report.lines)
    assert debits == sum(line.credit_minor for line in report.lines)


def test_a_period_in_the_future_or_backwards_is_refused(engine: Engine,
                                                        tmp_path: Path) -> None:
    _history(engine, tmp_path)
    with pytest.raises(ReportError, match="in the future"):
        roll_forward_report(engine, END_OF_MARCH, "month", None,
                            at("2026-05-01T00:00:00+02:00"))
    with pytest.raises(ReportError, match="after --to"):
        roll_forward_report(engine, END_OF_MARCH, "month", at("2026-03-01"),
                            at("2026-02-01"))


def test_local_months_on_both_sides_of_a_clock_change(engine: Engine) -> None:
    zone = ZoneInfo("Europe/Amsterdam")
    instants = {
        datetime(2026, 1, 31, 22, 59, tzinfo=UTC): "2026-01",  # 23:59 +01:00
        datetime(2026, 1, 31, 23, 0, tzinfo=UTC): "2026-02",  # midnight +01:00
        datetime(2026, 3, 31, 21, 59, tzinfo=UTC): "2026-03",  # 23:59 +02:00 (summer)
        datetime(2026, 3, 31, 22, 0, tzinfo=UTC): "2026-04",
        datetime(2026, 10, 31, 22, 59, tzinfo=UTC): "2026-10",  # 23:59 +01:00 (winter)
        datetime(2026, 10, 31, 23, 0, tzinfo=UTC): "2026-11",
    }
    with read_transaction(engine) as conn:
        months = Months(conn, zone, max(instants))
        found = {at: conn.execute(select(months.of(literal(at, UTCDateTime())))).scalar_one()
                 for at in instants}
    assert found == instants


@pytest.mark.parametrize("policy", ["negative_balance", "debt"])
def test_a_refund_of_spent_points_ties_and_is_cancelled_from_the_next_lot(
        engine: Engine, tmp_path: Path, policy: str) -> None:
    # M-3 buys 40.00 on 10 January (40 points), spends them on 5 February and returns the
    # whole purchase on 10 February: 40 points owed. Her 60.00 on 1 March earns 60, of
    # which 40 repay the debt: 20 left.
    text = PROGRAM.replace("  expiry: {after_months: 2}",
                           f"  expiry: {{after_months: 2}}\n  refund_shortfall: {policy}")
    apply_text(engine, tmp_path, text)
    buy(engine, "Q1", "2026-01-10", [("BOOK", "books", "1", "40.00")], member="M-3")
    activate_pending(engine, at("2026-02-05"))
    spend(engine, "S1", "2026-02-05", "finance-shop", member="M-3", points=40)
    refund(engine, "G1", "Q1", "2026-02-10", "40.00")
    buy(engine, "Q2", "2026-03-01", [("BOOK", "books", "1", "60.00")], member="M-3")
    activate_pending(engine, at("2026-03-25"))
    [report] = roll_forward_report(engine, END_OF_MARCH, "month")
    # negative_balance books the refund at once (-40 in February, the balance below zero);
    # debt books it when the March earning repays it (a debt entry).
    refunded = (40, 0) if policy == "negative_balance" else (0, 40)
    assert [(p.key, p.movements["redeemed"], p.movements["refunded"], p.closing)
            for p in report.periods] == [
        ("2026-01", 0, 0, 40), ("2026-02", 40, refunded[0], 40 - 40 - refunded[0]),
        ("2026-03", 0, refunded[1], 20)]
    assert report.balances == 20
    assert_ledger_exact(engine)
    [triangle] = breakage_report(engine, END_OF_MARCH)
    cells = {(c.month, cell.age): (cell.redeemed, cell.expired, cell.cancelled,
                                   cell.outstanding)
             for c in triangle.cohorts for cell in c.cells}
    assert cells[("2026-01", 2)] == (40, 0, 0, 0)
    assert cells[("2026-03", 0)] == (0, 0, 40, 20)  # 40 of the 60 repaid the debt
    [owed] = liability(engine, END_OF_MARCH)
    assert owed.outstanding == 20


@pytest.mark.parametrize("value", ["0", "-0.01"])
def test_a_point_value_not_above_zero_refuses_every_report(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # Until the program language carries economics: (the program file refuses it there
    # too), the programs' compiled settings are swapped for one worth nothing.
    import dataclasses

    from loyalty_engine.engine.catalog import ProgramCatalog
    from loyalty_engine.rules.compiled_insights import Economics, ProgramInsights
    from loyalty_engine.services import programs, reports

    _history(engine, tmp_path)
    real = reports.load_catalog

    def worthless(conn: object) -> ProgramCatalog:
        catalog = real(conn)  # type: ignore[arg-type]
        return ProgramCatalog([
            dataclasses.replace(v, program=dataclasses.replace(v.program, insights=(
                ProgramInsights(economics=Economics(point_value=Decimal(value))))))
            for pid in catalog.program_ids for v in catalog.versions(pid)])

    monkeypatch.setattr(reports, "load_catalog", worthless)
    monkeypatch.setattr(programs, "load_catalog", worthless)  # program_as_of's catalog
    for report in (lambda: liability(engine, END_OF_MARCH),
                   lambda: breakage_report(engine, END_OF_MARCH),
                   lambda: roll_forward_report(engine, END_OF_MARCH),
                   lambda: ifrs15_report(engine, END_OF_MARCH, "finance-shop")):
        with pytest.raises(ReportError, match="must be above zero"):
            report()


def test_a_reversal_after_the_points_lapsed_gives_nothing_back(engine: Engine,
                                                               tmp_path: Path) -> None:
    # M-1's 100 points of 10 January (lapse 10 March): 60 redeemed on 5 February, the
    # redemption reversed on 15 March, after the lapse: the 60 stay gone (redeemed), the
    # expiry run takes the other 40.
    apply_text(engine, tmp_path, PROGRAM)
    buy(engine, "P1", "2026-01-10", [("BOOK", "books", "1", "100.00")])
    activate_pending(engine, at("2026-02-05"))
    spend(engine, "R1", "2026-02-05", "finance-shop", points=60)
    expire_due(engine, at("2026-03-12"), NOW)
    reverse_redemption(engine, "R1", at("2026-03-15"), at("2026-03-15"))
    [report] = breakage_report(engine, END_OF_MARCH)
    [january] = report.cohorts
    assert [(c.redeemed, c.expired, c.outstanding) for c in january.cells] == [
        (0, 0, 100), (60, 0, 40), (60, 40, 0)]
    [rolled] = roll_forward_report(engine, END_OF_MARCH)
    assert [(p.key, p.movements["redeemed"], p.movements["reversed"],
             p.movements["expired"], p.closing) for p in rolled.periods] == [
        ("2026-01", 0, 0, 0, 100), ("2026-02", 60, 0, 0, 40), ("2026-03", 0, 0, 40, 0)]
    assert rolled.balances == 0


def test_points_not_yet_activated_are_pending(engine: Engine, tmp_path: Path) -> None:
    # Without the activation step after 15 March, D's 30 points are still pending, as the
    # balances show them.
    _history(engine, tmp_path, activate=False)
    [owed] = liability(engine, END_OF_MARCH)
    assert (owed.spendable, owed.pending, owed.outstanding) == (25, 30, 55)
    assert points(engine, "finance-shop", "M-1") == (0, 30)


def test_the_point_value_comes_from_the_program_file(engine: Engine, tmp_path: Path) -> None:
    # economics: {point_value: "0.02"}: 55 points worth 1.10 EUR; expected cost 55 x 48/385
    # x 2 cents = 13.71 -> 14 cents.
    _history(engine, tmp_path, program=PROGRAM.replace(
        "rules:", 'economics: {point_value: "0.02"}\nrules:'))
    [owed] = liability(engine, END_OF_MARCH)
    assert owed.point_value == Decimal("0.02")
    assert (owed.value_minor, owed.expected_cost_minor) == (110, 14)
