"""A year and a renewal at a warehouse club whose 2% rebate follows each member's
membership year (tests/fixtures/programs/warehouse-year.yaml), on both databases: two
members join mid-year, buy, return before and after their rebate was issued (an unused
voucher replaced by a smaller one, a used one leaving a debt the next rebate repays).
Every figure is worked out by hand beside its assertion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from loyalty_engine.services.clubs import advance_clubs, join_club
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.rebates import issue_rebates

from .walk import (
    ROOT,
    apply_files,
    assert_ledger_exact,
    at,
    buy,
    charges,
    points,
    rebate_debts,
    rebate_vouchers,
    refund,
    spend,
)

PROGRAM = ROOT / "tests" / "fixtures" / "programs" / "warehouse-year.yaml"
NOW = datetime(2029, 1, 1, tzinfo=UTC)
M1_YEAR1 = "2026-03-15--2027-03-15"  # M-1 paid on 15 March 2026
M2_YEAR1 = "2026-07-10--2027-07-10"  # M-2 paid on 10 July 2026
CODE = "warehouse-year-executive-rebate-{}-{}"


def _join(engine: Engine, member: str, day: str) -> None:
    joined = join_club(engine, member, "warehouse", at(day), NOW, level="executive")
    assert joined.charge is not None
    pay_charge(engine, joined.charge["charge_id"], at(day), NOW)


def _pay_renewal(engine: Engine, member: str, day: str) -> None:
    due = [cid for cid, kind, status in charges(engine, member)
           if kind == "renewal" and status == "due"]
    assert len(due) == 1, charges(engine, member)
    pay_charge(engine, due[0], at(day), NOW)


def _buy(engine: Engine, tx: str, day: str, sku: str, amount: str, member: str) -> None:
    buy(engine, tx, day, [(sku, "general", "1", amount)], member=member, store="WY-01")


def test_two_members_through_a_membership_year_and_a_renewal(engine: Engine) -> None:
    apply_files(engine, PROGRAM)
    _join(engine, "M-1", "2026-03-15")
    _join(engine, "M-2", "2026-07-10")

    _buy(engine, "P1", "2026-04-01", "TV", "1000.00", "M-1")
    _buy(engine, "P2", "2026-09-01", "SHOP", "500.00", "M-1")
    _buy(engine, "Q1", "2026-08-01", "FURN", "70000.00", "M-2")
    # A return before the year ends only lowers the spend that accrues.
    refund(engine, "R1", "P1", "2026-12-01", "200.00", store="WY-01")
    _buy(engine, "Q2", "2027-05-05", "SHOP", "1234.56", "M-2")

    # Renewals: raised 30 days before each term ends, paid; the year goes on from the
    # first paid term, term after term.
    advance_clubs(engine, at("2027-02-20"), NOW)
    _pay_renewal(engine, "M-1", "2027-02-21")

    # Not before M-1's year has ended (midnight in Berlin), and M-2's has not.
    assert issue_rebates(engine, at("2027-03-14T23:59:00+01:00"), NOW).vouchers == 0
    done = issue_rebates(engine, at("2027-03-15T00:00:00+01:00"), NOW)
    # M-1: 1,000.00 + 500.00 - 200.00 returned = 1,300.00; 2% = 26.00.
    first = CODE.format(M1_YEAR1, "M-1")
    assert (done.vouchers, done.amount_minor("warehouse-year")) == (1, 2600)
    assert rebate_vouchers(engine, "M-1") == [(first, "issued", 2600)]
    # Again: nothing new (one voucher per member and membership year).
    assert issue_rebates(engine, at("2027-03-16"), NOW).vouchers == 0

    # Year two of M-1 (from 15 March 2027): 300.00 accrues in it.
    _buy(engine, "P3", "2027-03-20", "SHOP", "300.00", "M-1")
    # A return after the rebate: the unused voucher is replaced by a smaller one.
    back = refund(engine, "R2", "P2", "2027-04-01", "500.00", store="WY-01")
    # 1,300.00 - 500.00 = 800.00; 2% = 16.00.
    assert back.vouchers_voided == [first]
    assert len(back.vouchers_reissued) == 1
    replaced = back.vouchers_reissued[0]
    assert replaced.startswith(first + "-R")
    assert rebate_vouchers(engine, "M-1") == [(first, "void", 2600),
                                              (replaced, "issued", 1600)]
    # Posting the same return again changes nothing.
    again = refund(engine, "R2", "P2", "2027-04-01", "500.00", store="WY-01")
    assert again.replayed
    assert rebate_vouchers(engine, "M-1") == [(first, "void", 2600), (replaced, "issued", 1600)]
    # Points: 1,000 + 500 - 200 + 300 - 500 = 1,100 (one a euro, nothing pending).
    assert points(engine, "warehouse-year", "M-1") == (1100, 0)

    advance_clubs(engine, at("2027-06-15"), NOW)
    _pay_renewal(engine, "M-2", "2027-06-16")
    done = issue_rebates(engine, at("2027-07-10T00:00:00+02:00"), NOW)
    # M-2: 70,000.00 + 1,234.56 = 71,234.56; 2% = 1,424.6912, capped at 1,250.00.
    used = CODE.format(M2_YEAR1, "M-2")
    assert (done.vouchers, done.amount_minor("warehouse-year")) == (1, 125000)
    spend(engine, "U1", "2027-07-15", "warehouse-year", member="M-2", voucher=used)
    assert rebate_vouchers(engine, "M-2") == [(used, "redeemed", 125000)]

    # Returns after the used voucher: what it paid too much is owed, in two parts.
    refund(engine, "S1", "Q1", "2027-08-01", "20000.00", store="WY-01")
    # 71,234.56 - 20,000.00 = 51,234.56; 2% = 1,024.6912 -> 1,024.69 (half up);
    # owed 1,250.00 - 1,024.69 = 225.31.
    assert rebate_debts(engine, "M-2") == [(M2_YEAR1, 22531, 22531)]
    refund(engine, "S2", "Q2", "2027-08-02", "1234.56", store="WY-01")
    # 51,234.56 - 1,234.56 = 50,000.00; 2% = 1,000.00; owed 1,024.69 - 1,000.00 = 24.69
    # more: 225.31 + 24.69 = 250.00 = 1,250.00 - 1,000.00, the whole in parts.
    assert rebate_debts(engine, "M-2") == [(M2_YEAR1, 22531, 22531), (M2_YEAR1, 2469, 2469)]
    assert rebate_vouchers(engine, "M-2") == [(used, "redeemed", 125000)]

    # M-2's second year: 2,000.00 -> 40.00, all of it to the oldest debt.
    _buy(engine, "Q3", "2027-09-01", "SHOP", "2000.00", "M-2")
    done = issue_rebates(engine, at("2028-07-10T00:00:00+02:00"), NOW)
    # M-1's second year ended on 15 March 2028: 2% of 300.00 = 6.00. M-2's 40.00 went
    # to the debt (kept as a void voucher: the period's mark), 225.31 - 40.00 = 185.31.
    m2_second = CODE.format("2027-07-10--2028-07-10", "M-2")
    m1_second = CODE.format("2027-03-15--2028-03-15", "M-1")
    assert (done.vouchers, done.amount_minor("warehouse-year")) == (1, 600)
    assert rebate_vouchers(engine, "M-1")[-1] == (m1_second, "issued", 600)
    assert rebate_vouchers(engine, "M-2") == [(used, "redeemed", 125000),
                                              (m2_second, "void", 0)]
    assert rebate_debts(engine, "M-2") == [(M2_YEAR1, 22531, 18531), (M2_YEAR1, 2469, 2469)]
    # Run again: the debt is not repaid twice.
    assert issue_rebates(engine, at("2028-07-11"), NOW).vouchers == 0
    assert rebate_debts(engine, "M-2") == [(M2_YEAR1, 22531, 18531), (M2_YEAR1, 2469, 2469)]
    assert_ledger_exact(engine)


RETURNS = [
    # (what M-1 bought in their first year, returns after the rebate: (amount, statuses
    # and amounts of the vouchers after it), owed in the end)
    ("returns in parts come to the one return of the whole", "1000.00", [
        # 2% of 1,000.00 = 20.00; 750.00 -> 15.00; 500.00 -> 10.00
        ("250.00", [("void", 2000), ("issued", 1500)]),
        ("250.00", [("void", 2000), ("void", 1500), ("issued", 1000)]),
    ], []),
    ("a return above the cap leaves the voucher", "70000.00", [
        # 2% of 70,000.00 = 1,400.00, capped at 1,250.00; 2% of 69,000.00 = 1,380.00:
        # still capped, the same voucher
        ("1000.00", [("issued", 125000)]),
    ], []),
    ("a return of everything leaves no voucher", "100.00", [
        ("100.00", [("void", 200)]),  # 2% of 100.00 = 2.00; of 0.00: nothing
    ], []),
    ("an expired voucher owes nothing", "100.00", [
        ("expire", [("expired", 200)]),  # 90 days after 15 March 2027: unused, lapsed
        ("50.00", [("expired", 200)]),  # nothing to replace, nothing was used
    ], []),
]


@pytest.mark.parametrize(("bought", "steps", "owed"), [(b, s, o) for _, b, s, o in RETURNS],
                         ids=[name for name, *_ in RETURNS])
def test_returns_after_the_rebate(engine: Engine, bought: str,
                                  steps: list[tuple[str, list[tuple[str, int]]]],
                                  owed: list[tuple[str, int, int]]) -> None:
    apply_files(engine, PROGRAM)
    _join(engine, "M-1", "2026-03-15")
    _buy(engine, "P1", "2026-04-01", "TV", bought, "M-1")
    assert issue_rebates(engine, at("2027-03-15T00:00:00+01:00"), NOW).vouchers == 1
    for number, (amount, expected) in enumerate(steps, start=1):
        if amount == "expire":
            expire_due(engine, at("2027-06-14"), NOW)
        else:
            refund(engine, f"R{number}", "P1", f"2027-04-0{number}", amount, store="WY-01")
        assert [(status, minor) for _, status, minor in rebate_vouchers(engine, "M-1")
                ] == expected
    assert rebate_debts(engine, "M-1") == owed
