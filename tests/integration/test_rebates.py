"""Periodic rebates become vouchers once their period has ended: the percent of the
period's spend (net of refunds), capped, once per member and period, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.services.clubs import join_club
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.rebates import issue_rebates
from loyalty_engine.store import tables
from tests.integration.test_concurrency import _run_together

from .walk import GROCERY, ROOT, apply_files, at, buy, refund

WAREHOUSE = ROOT / "rules" / "big-box-warehouse.yaml"
NOW = datetime(2028, 6, 1, tzinfo=UTC)


def _vouchers(engine: Engine) -> list[tuple[str, str, int, str, str]]:
    v = tables.vouchers
    with engine.connect() as conn:
        return [(r.member_id, r.rule_id, r.amount_minor, r.issued_at.isoformat(),
                 r.valid_until.isoformat())
                for r in conn.execute(select(v).where(v.c.source == "rebate")
                                      .order_by(v.c.member_id, v.c.code))]


def _shop(engine: Engine, tx: str, day: str, amount: str, member: str = "M-1") -> None:
    buy(engine, tx, day, [("SHOP", "groceries", "1", amount)], member=member, store="FM-01")


def test_a_years_rebate_is_issued_once_after_the_year_ends(engine: Engine) -> None:
    apply_files(engine, GROCERY)
    _shop(engine, "G1", "2026-03-01", "600.00")
    _shop(engine, "G2", "2026-11-01", "434.50")
    _shop(engine, "G3", "2026-05-01", "80.00", member="M-2")
    refund(engine, "R1", "G3", "2026-05-02", "30.00", store="FM-01")
    _shop(engine, "G4", "2027-01-05", "100.00")  # next year's: not yet

    # Not before the year has ended (in Amsterdam).
    assert issue_rebates(engine, at("2026-12-31T23:30:00+01:00"), NOW).vouchers == 0
    done = issue_rebates(engine, at("2027-01-01T00:00:00+01:00"), NOW)
    # 1% of 1,034.50 = 10.345 -> 10.35 (half up); M-2: 1% of 50.00 (80 less the refund).
    assert (done.vouchers, done.amount_minor("fresh-market")) == (2, 1035 + 50)
    assert done.as_json()["by_program"] == {
        "fresh-market": {"vouchers": 2, "amount_minor": 1085, "currency": "EUR"}}
    # Dated at the year's end in Amsterdam, valid 90 days (to local midnight, summer time).
    assert _vouchers(engine) == [
        ("M-1", "annual-rebate", 1035, "2026-12-31T23:00:00+00:00",
         "2027-03-31T22:00:00+00:00"),
        ("M-2", "annual-rebate", 50, "2026-12-31T23:00:00+00:00",
         "2027-03-31T22:00:00+00:00"),
    ]
    # Again, later in the year: nothing new (2027 has not ended).
    assert issue_rebates(engine, at("2027-06-01"), NOW).vouchers == 0
    assert len(_vouchers(engine)) == 2


def test_the_cap_holds(engine: Engine) -> None:
    apply_files(engine, GROCERY)
    _shop(engine, "G1", "2026-03-01", "30000.00")  # 1% = 300.00, capped at 250.00
    assert issue_rebates(engine, at("2027-01-02"), NOW).amount_minor("fresh-market") == 25000


def test_only_executive_spend_accrues_a_warehouse_rebate(engine: Engine) -> None:
    apply_files(engine, WAREHOUSE)
    for member, level in (("M-1", "executive"), ("M-2", "basic")):
        joined = join_club(engine, member, "warehouse", at("2027-01-04"), NOW, level=level)
        assert joined.charge is not None
        pay_charge(engine, joined.charge["charge_id"], at("2027-01-04"), NOW)
    for member in ("M-1", "M-2"):
        buy(engine, f"B-{member}", "2027-02-01", [("TV", "electronics", "1", "1000.00")],
            member=member, store="BB-01")
    done = issue_rebates(engine, at("2028-01-01T00:00:00+01:00"), NOW, program_id="big-box")
    assert (done.vouchers, done.amount_minor("big-box")) == (1, 2000)  # 2% of 1,000.00, M-1 only
    with pytest.raises(NotFoundError, match="no program 'nope'"):
        issue_rebates(engine, at("2028-01-02"), NOW, program_id="nope")


def test_two_runs_at_once_issue_each_rebate_once(db_url: str, engine: Engine) -> None:
    apply_files(engine, GROCERY)
    for n in range(20):
        _shop(engine, f"G{n}", "2026-06-01", "100.00", member=f"M-{n}")

    def run(e: Engine) -> int:
        return issue_rebates(e, at("2027-01-02"), NOW).vouchers

    counts = _run_together(db_url, [run, run])
    assert sum(counts) == 20  # each member's rebate issued by exactly one of the two runs
    assert len(_vouchers(engine)) == 20
