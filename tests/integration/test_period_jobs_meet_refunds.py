"""A period job and a refund of the same member at once (PostgreSQL).

The rebates and period-bonus jobs decide on counters that a refund lowers. A refund holds
its member's row lock from before it writes the counters until it commits, so each job
takes the locks of the members it decides on and reads the counters again: a refund in
flight commits first and the job sees the lowered counter (or, the other way round, the
refund waits for the job and then sees its voucher or bonus). On SQLite one writer at a
time holds the database, so the two cannot interleave; there is nothing to test there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from loyalty_engine.services.period_bonuses import award_period_bonuses
from loyalty_engine.services.rebates import issue_rebates
from loyalty_engine.store.database import write_transaction

from .walk import GROCERY, apply_files, apply_text, at, buy, points, rebate_vouchers, state

# How long the stand-in refund keeps its lock after lowering the counter: far longer than
# the job takes to read its counters, so a job that did not wait would decide on the
# counter as it was before the refund.
HOLD_S = 1.5


def _refund_in_flight(engine: Engine, program: str, counter: str, period: str,
                      lower_by: int, locked: threading.Event) -> None:
    """What a refund does to the job's inputs: lock the member, lower the counter, then
    commit a while later."""
    with write_transaction(engine) as conn:
        conn.execute(text("SELECT 1 FROM members WHERE member_id = 'M-1' FOR UPDATE"))
        conn.execute(text(
            "UPDATE progress_counters SET value = value - :d WHERE member_id = 'M-1' "
            "AND program_id = :g AND counter = :c AND period = :p"),
            {"d": lower_by, "g": program, "c": counter, "p": period})
        locked.set()
        time.sleep(HOLD_S)


def _with_refund_in_flight(engine: Engine, program: str, counter: str,
                           lower_by: int) -> float:
    """Start the stand-in refund, run nothing until it holds the lock; return when the lock
    was taken (monotonic)."""
    periods = [p for (prog, c, p) in state(engine)["counters"] if prog == program
               and c == counter]
    assert len(periods) == 1, state(engine)["counters"]
    locked = threading.Event()
    thread = threading.Thread(target=_refund_in_flight,
                              args=(engine, program, counter, periods[0], lower_by, locked))
    thread.start()
    assert locked.wait(10)
    _with_refund_in_flight.thread = thread  # type: ignore[attr-defined]
    return time.monotonic()


@pytest.fixture
def grocery(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer hold the database at a time: nothing interleaves")
    apply_files(engine, GROCERY)
    return engine


def test_the_rebate_job_decides_on_the_spend_a_refund_in_flight_leaves(grocery: Engine) -> None:
    # 2026: 400.00 of groceries; the annual rebate is 1% = 4.00 (cap 250.00).
    buy(grocery, "G1", "2026-03-02", [("RICE-5KG", "pantry", "40", "10.00")], store="FM-01")
    # A return of 150.00 is being recorded as the year's rebates are issued: the voucher
    # must be 1% of 250.00 = 2.50, not 4.00 (the refund saw no voucher to replace).
    started = _with_refund_in_flight(grocery, "fresh-market", "annual-rebate:spend", 15000)
    issue_rebates(grocery, at("2027-01-02"), at("2027-01-02"))
    waited = time.monotonic() - started
    _with_refund_in_flight.thread.join()  # type: ignore[attr-defined]
    [(_, status, amount)] = rebate_vouchers(grocery)
    assert (status, amount) == ("issued", 250)
    assert waited >= HOLD_S * 0.8  # it waited for the refund's lock


BIG_MONTH = """
program: big-month
name: Big month
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
stores: ["BM-*"]
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
  - id: big-month
    kind: spend_threshold
    threshold: "100.00"
    period: month
    points: 30
    award: at_period_end
"""


def test_the_bonus_job_decides_on_the_spend_a_refund_in_flight_leaves(
        grocery: Engine, tmp_path: Path) -> None:
    apply_text(grocery, tmp_path, BIG_MONTH)
    # March: 120.00 spent, above the 100.00 the bonus needs; 120 points for the euros.
    buy(grocery, "B1", "2026-03-02", [("SHOES", "shoes", "1", "120.00")], store="BM-01")
    assert points(grocery, "big-month") == (120, 0)
    # A return of 40.00 is being recorded as March's bonuses are paid: 80.00 is short of
    # 100.00, so no bonus (paid and not taken back, it would stand: the refund saw none).
    started = _with_refund_in_flight(grocery, "big-month", "big-month:spend", 4000)
    award_period_bonuses(grocery, at("2026-04-02"), at("2026-04-02"))
    waited = time.monotonic() - started
    _with_refund_in_flight.thread.join()  # type: ignore[attr-defined]
    assert points(grocery, "big-month") == (120, 0)  # the stand-in refund took no points
    assert waited >= HOLD_S * 0.8
