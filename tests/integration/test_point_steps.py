"""The time-driven point steps on real databases: expire_points and activate_pending."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.rules.expressions import stored_programs
from loyalty_engine.services.points import StepResult, activate_pending, expire_points
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction
from tests.integration.walk import (
    COFFEE,
    apply_files,
    apply_text,
    assert_ledger_exact,
    at,
    buy,
    points,
    refund,
    spend,
)

NOTHING = StepResult(0, 0, 0)


def step(lots: int, points: int, members: int, program_id: str) -> StepResult:
    """What a step did in one program: its points are counted under that program."""
    return StepResult(lots, points, members, {program_id: points})

SHOP = """\
program: lapse-shop
name: Lapse Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
points:
  pending_days: {pending}
  expiry: {expiry}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


def row_counts(engine: Engine) -> dict[str, int]:
    with read_transaction(engine) as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in tables.metadata.sorted_tables}


def lots(engine: Engine) -> list[tuple[str, int, int, datetime | None, datetime | None]]:
    """(member, points, remaining, expires_at, activated_at) of every lot, oldest first."""
    lo = tables.point_lots
    with read_transaction(engine) as conn:
        return [(r.member_id, r.points, r.remaining, r.expires_at, r.activated_at)
                for r in conn.execute(select(lo).order_by(lo.c.entry_id))]


def expiries(engine: Engine) -> list[tuple[str, int, datetime, str]]:
    """(member, points, occurred_at, ref) of every 'expire' ledger entry."""
    le = tables.ledger_entries
    with read_transaction(engine) as conn:
        return [(r.member_id, r.points, r.occurred_at, r.ref) for r in conn.execute(
            select(le).where(le.c.kind == "expire").order_by(le.c.id))]


def basket(amount: str) -> list[tuple[str, str, str, str]]:
    return [("BASKET", "groceries", "1", amount)]


# --- expiry ------------------------------------------------------------------------------

# (expiry policy, purchase instant, the instant its points lapse)
POLICIES = {
    "after-days": ("{after_days: 30}", "2027-05-10T12:00:00+02:00",
                   "2027-06-09T12:00:00+02:00"),
    "after-months": ("{after_months: 2}", "2027-03-10T12:00:00+01:00",
                     "2027-05-10T12:00:00+02:00"),  # the same local time, across DST
    "after-months-clamped": ("{after_months: 1}", "2027-01-31T12:00:00+01:00",
                             "2027-02-28T12:00:00+01:00"),
    "end-of-month": ("{end_of: month}", "2027-03-10T12:00:00+01:00",
                     "2027-04-01T00:00:00+02:00"),
    "end-of-month-local": ("{end_of: month}", "2027-04-30T23:30:00+00:00",  # 1 May locally
                           "2027-06-01T00:00:00+02:00"),
    "end-of-year": ("{end_of: year}", "2027-03-10T12:00:00+01:00",
                    "2028-01-01T00:00:00+01:00"),
    "end-of-year-local": ("{end_of: year}", "2027-12-31T23:30:00+00:00",  # 2028 locally
                          "2029-01-01T00:00:00+01:00"),
}


@pytest.mark.parametrize(("policy", "bought", "lapses"), list(POLICIES.values()),
                         ids=list(POLICIES))
def test_each_expiry_policy_expires_exactly_the_remaining_points_at_its_instant(
    engine: Engine, tmp_path: Path, policy: str, bought: str, lapses: str,
) -> None:
    apply_text(engine, tmp_path, SHOP.format(pending=0, expiry=policy))
    buy(engine, "T-1", bought, basket("30.00"))
    buy(engine, "T-2", bought, basket("20.00"), member="M-2")
    spend(engine, "RD-1", (at(bought) + timedelta(minutes=1)).isoformat(), "lapse-shop",
          points=12)
    end = at(lapses)
    assert [(m, r, e) for m, _, r, e, _ in lots(engine)] == [("M-1", 18, end), ("M-2", 20, end)]
    rows = row_counts(engine)

    assert expire_points(engine, end - timedelta(seconds=1)) == NOTHING
    assert row_counts(engine) == rows
    assert (points(engine, "lapse-shop"), points(engine, "lapse-shop", "M-2")) == (
        (18, 0), (20, 0))

    assert expire_points(engine, end) == step(2, 38, 2, "lapse-shop")
    assert (points(engine, "lapse-shop"), points(engine, "lapse-shop", "M-2")) == (
        (0, 0), (0, 0))
    assert [r for _, _, r, _, _ in lots(engine)] == [0, 0]
    [first, second] = expiries(engine)
    assert (first[:3], second[:3]) == (("M-1", -18, end), ("M-2", -20, end))
    assert first[3].startswith("expire:") and second[3].startswith("expire:")
    assert_ledger_exact(engine)

    rows = row_counts(engine)
    assert expire_points(engine, end) == NOTHING
    assert expire_points(engine, end + timedelta(days=800)) == NOTHING
    assert row_counts(engine) == rows
    assert_ledger_exact(engine)


def test_points_that_never_expire_stay(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, SHOP.format(pending=0, expiry="never"))
    buy(engine, "T-1", "2027-03-10", basket("30.00"))
    spend(engine, "RD-1", "2027-03-11", "lapse-shop", points=12)
    assert [e for _, _, _, e, _ in lots(engine)] == [None]
    rows = row_counts(engine)
    assert expire_points(engine, at("2127-03-10")) == NOTHING
    assert row_counts(engine) == rows
    assert points(engine, "lapse-shop") == (18, 0)
    assert_ledger_exact(engine)


def test_lots_expire_one_by_one_each_at_its_own_instant(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, SHOP.format(pending=0, expiry="{after_months: 1}"))
    buy(engine, "T-1", "2027-03-10", basket("10.00"))
    buy(engine, "T-2", "2027-03-20", basket("20.00"))
    spend(engine, "RD-1", "2027-03-21", "lapse-shop", points=15)  # T-1 0, T-2 15
    # T-1's lot is empty: nothing of it lapses, and it writes no entry.
    assert expire_points(engine, at("2027-04-10")) == NOTHING
    assert expire_points(engine, at("2027-04-20T11:59:59+02:00")) == NOTHING
    assert expire_points(engine, at("2027-04-20T12:00:00+02:00")) == step(1, 15, 1, "lapse-shop")
    assert [(m, p) for m, p, _, _ in expiries(engine)] == [("M-1", -15)]
    assert points(engine, "lapse-shop") == (0, 0)
    assert_ledger_exact(engine)


def test_pending_points_that_lapse_before_activation_leave_pending(
    engine: Engine, tmp_path: Path,
) -> None:
    # Validation refuses this slip in a new file since issue 16; a version stored before
    # it still runs, so the engine must still handle it.
    with stored_programs():
        apply_text(engine, tmp_path, SHOP.format(pending=14, expiry="{after_days: 7}"))
    buy(engine, "T-1", "2027-05-10", basket("30.00"))
    assert points(engine, "lapse-shop") == (0, 30)
    assert expire_points(engine, at("2027-05-17")) == step(1, 30, 1, "lapse-shop")
    assert points(engine, "lapse-shop") == (0, 0)
    # Issue 15 item 2: a lot whose expiry came before its window ended is never activated.
    assert activate_pending(engine, at("2027-05-24")) == NOTHING
    assert points(engine, "lapse-shop") == (0, 0)
    assert_ledger_exact(engine)


# --- activation --------------------------------------------------------------------------


@pytest.fixture
def coffee(engine: Engine) -> Engine:
    """Bean There: points pending for 14 days."""
    apply_files(engine, COFFEE)
    return engine


def test_activation_moves_pending_to_spendable_at_pending_until_once(coffee: Engine) -> None:
    buy(coffee, "T-1", "2027-03-01", basket("20.00"))  # pending until 2027-03-15 12:00
    buy(coffee, "T-2", "2027-03-03", basket("10.00"))  # pending until 2027-03-17 12:00
    buy(coffee, "T-3", "2027-03-03", basket("5.00"), member="M-2")
    assert points(coffee, "bean-there") == (0, 30)
    ledger_rows = row_counts(coffee)["ledger_entries"]

    assert activate_pending(coffee, at("2027-03-15T11:59:59+01:00")) == NOTHING
    assert points(coffee, "bean-there") == (0, 30)
    assert activate_pending(coffee, at("2027-03-15")) == step(1, 20, 1, "bean-there")
    assert points(coffee, "bean-there") == (20, 10)
    assert [a for _, _, _, _, a in lots(coffee)] == [at("2027-03-15"), None, None]
    rows = row_counts(coffee)
    assert activate_pending(coffee, at("2027-03-15")) == NOTHING
    assert activate_pending(coffee, at("2027-03-16")) == NOTHING
    assert row_counts(coffee) == rows
    assert_ledger_exact(coffee)

    assert activate_pending(coffee, at("2027-03-20")) == step(2, 15, 2, "bean-there")
    assert (points(coffee, "bean-there"), points(coffee, "bean-there", "M-2")) == (
        (30, 0), (5, 0))
    assert activate_pending(coffee, at("2027-04-20")) == NOTHING
    assert row_counts(coffee)["ledger_entries"] == ledger_rows  # activation writes no entry
    assert_ledger_exact(coffee)


def test_activation_can_be_limited_to_one_program(coffee: Engine, tmp_path: Path) -> None:
    apply_text(coffee, tmp_path, SHOP.format(pending=7, expiry="never"))
    buy(coffee, "T-1", "2027-03-01", basket("20.00"))  # earns in both programs
    assert activate_pending(coffee, at("2027-04-01"), "lapse-shop") == step(1, 20, 1, "lapse-shop")
    assert (points(coffee, "bean-there"), points(coffee, "lapse-shop")) == ((0, 20), (20, 0))
    assert activate_pending(coffee, at("2027-04-01")) == step(1, 20, 1, "bean-there")
    assert points(coffee, "bean-there") == (20, 0)
    assert_ledger_exact(coffee)


def test_a_refund_before_activation_takes_the_points_from_pending(coffee: Engine) -> None:
    buy(coffee, "T-1", "2027-03-01", basket("20.00"))
    out = refund(coffee, "R-1", "T-1", "2027-03-05", "5.00")
    assert out.points == {"bean-there": 5}
    assert points(coffee, "bean-there") == (0, 15)
    assert [r for _, _, r, _, _ in lots(coffee)] == [15]
    assert_ledger_exact(coffee)
    assert activate_pending(coffee, at("2027-03-15")) == step(1, 15, 1, "bean-there")
    assert points(coffee, "bean-there") == (15, 0)
    # After activation a refund takes spendable points.
    refund(coffee, "R-2", "T-1", "2027-03-16", "5.00")
    assert points(coffee, "bean-there") == (10, 0)
    # A purchase refunded in full before activation activates nothing.
    buy(coffee, "T-2", "2027-03-22", basket("8.00"))
    refund(coffee, "R-3", "T-2", "2027-03-23", "8.00")
    assert points(coffee, "bean-there") == (10, 0)
    assert activate_pending(coffee, at("2027-04-05")) == step(1, 0, 1, "bean-there")
    assert points(coffee, "bean-there") == (10, 0)
    assert_ledger_exact(coffee)
