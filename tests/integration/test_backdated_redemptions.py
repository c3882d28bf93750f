"""Back-dated redemptions on both databases (issue 14): a redemption may be dated at most
the program's `redemptions.backdate_hours` (24 by default) before it is recorded, and
never spends points that had expired by the time it is recorded, whether or not the
expire step has run yet.

rules/fresh-market-grocery.yaml: one point per whole euro, points lapse 12 months after
they were earned (same wall time, Amsterdam). A purchase of 100.00 at noon on 15 October
2025 (+02:00) earns 100 points that expire at 2026-10-15T12:00+02:00.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import (
    FeeError,
    RedemptionBackdatedError,
    RedemptionRejectedError,
)
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.services.clubs import join_club
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.points import expire_points
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.redemptions import RedemptionOutcome, redeem
from loyalty_engine.store import tables

from .walk import GROCERY, apply_files, assert_ledger_exact, at, buy, points, state

FM = "fresh-market"


def _groceries(engine: Engine, tx: str, when: str, amount: str, member: str = "M-1") -> None:
    buy(engine, tx, when, [("BASKET", "groceries", "1", amount)], member=member,
        store="FM-01")


def _redeem(engine: Engine, rid: str, made: str, recorded: str, points_: int,
            member: str = "M-1", program: str = FM,
            allow_backdate: bool = False) -> RedemptionOutcome:
    request = RedemptionRequest(redemption_id=rid, member_id=member, program_id=program,
                                occurred_at=at(made), points=points_)
    return redeem(engine, request, at(recorded), allow_backdate)


def _ledger(engine: Engine) -> list[tuple[str, int]]:
    e = tables.ledger_entries
    with engine.connect() as conn:
        return [(r.kind, r.points) for r in conn.execute(
            select(e.c.kind, e.c.points).order_by(e.c.id))]


@pytest.fixture
def october(engine: Engine) -> Engine:
    apply_files(engine, GROCERY)
    _groceries(engine, "F1", "2025-10-15T12:00:00+02:00", "100.00")
    return engine


def test_the_issue_redemption_dated_months_back_is_refused(october: Engine) -> None:
    # Recorded on 1 December 2026, dated 15 September: before the fix, 201 and a
    # redemption of points that had expired on 15 October.
    with pytest.raises(RedemptionBackdatedError) as refused:
        _redeem(october, "RD-1", "2026-09-15T10:00:00+02:00", "2026-12-01T10:00:00+01:00", 50)
    assert str(refused.value) == (
        "occurred_at 2026-09-15T10:00:00+02:00 is more than 24 hours before the redemption "
        "is recorded (2026-12-01T10:00:00+01:00), the longest program 'fresh-market' waits "
        "for an offline till (redemptions.backdate_hours)")
    assert refused.value.field == "occurred_at"
    assert _ledger(october) == [("earn", 100)]
    # An operator entering it by hand may pass the window, but not spend what had expired
    # by the time it is recorded.
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(october, "RD-1", "2026-09-15T10:00:00+02:00", "2026-12-01T10:00:00+01:00",
                50, allow_backdate=True)
    assert _ledger(october) == [("earn", 100)]


def test_within_the_window_points_expired_by_the_recording_are_not_spent(
    october: Engine
) -> None:
    # Made at 11:00 on the day of expiry, recorded at 13:00: inside the window, but the
    # points lapsed at noon. The expire step has not run: the answer is the same.
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(october, "RD-1", "2026-10-15T11:00:00+02:00", "2026-10-15T13:00:00+02:00", 50)
    expire_points(october, at("2026-10-15T12:30:00+02:00"))
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(october, "RD-1", "2026-10-15T11:00:00+02:00", "2026-10-15T13:00:00+02:00", 50)
    assert _ledger(october) == [("earn", 100), ("expire", -100)]


def test_a_lot_whose_expiry_is_recorded_is_not_spent_even_before_its_expiry(
    october: Engine
) -> None:
    # The expire step run ahead of the clock (an operator's --allow-future) has closed
    # the October lot; a redemption made and sent before noon finds nothing to spend.
    assert expire_points(october, at("2026-10-15T12:30:00+02:00")).points == 100
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(october, "RD-1", "2026-10-15T11:00:00+02:00", "2026-10-15T11:30:00+02:00", 50)
    assert _ledger(october) == [("earn", 100), ("expire", -100)]
    assert_ledger_exact(october)


def test_within_the_window_a_redemption_takes_only_lots_alive_at_its_recording(
    october: Engine
) -> None:
    # A second lot, 80 points from 10 January 2026 (expiring 10 January 2027). A till,
    # offline overnight, sends a redemption of 60 made at 11:00 on 15 October at 13:00:
    # the October lot has lapsed meanwhile, so the 60 come from January's lot (first in,
    # first out would have taken the older one).
    _groceries(october, "F2", "2026-01-10T12:00:00+01:00", "80.00")
    done = _redeem(october, "RD-1", "2026-10-15T11:00:00+02:00", "2026-10-15T13:00:00+02:00",
                   60)
    assert done.points == 60
    assert state(october)["lots"] == [(1, 100), (2, 20)]
    # The expire step then takes the October lot whole: 100, not 40.
    assert expire_points(october, at("2026-10-16")).points == 100
    assert points(october, FM) == (20, 0)
    assert_ledger_exact(october)


def test_within_the_window_unexpired_points_are_spent_as_before(october: Engine) -> None:
    # Made the evening before the expiry, sent the next morning: the points still live.
    done = _redeem(october, "RD-1", "2026-10-14T20:00:00+02:00", "2026-10-15T09:00:00+02:00",
                   50)
    assert done.points == 50
    assert points(october, FM) == (50, 0)
    assert _ledger(october) == [("earn", 100), ("redeem", -50)]
    assert_ledger_exact(october)


SHOP = """\
program: window-shop
name: Window Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
redemptions:
  backdate_hours: {hours}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


def _apply(engine: Engine, tmp_path: Path, hours: int, effective: datetime) -> None:
    path = tmp_path / f"shop-{hours}.yaml"
    path.write_text(SHOP.replace("{hours}", str(hours)), encoding="utf-8")
    apply_program_files(engine, [path], effective, effective_from=effective)


def test_the_window_is_the_programs_in_force_at_the_recording(
    engine: Engine, tmp_path: Path
) -> None:
    _apply(engine, tmp_path, 72, at("2026-01-01T00:00:00+01:00"))
    buy(engine, "S1", "2026-03-01", [("GOODS", "goods", "1", "100.00")])
    # 72 hours: 71 back is accepted, 73 back is not.
    _redeem(engine, "RD-1", "2026-03-10T09:00:00+01:00", "2026-03-13T08:00:00+01:00", 10,
            program="window-shop")
    with pytest.raises(RedemptionBackdatedError, match="more than 72 hours"):
        _redeem(engine, "RD-2", "2026-03-10T09:00:00+01:00", "2026-03-13T10:00:00+01:00", 10,
                program="window-shop")
    # From 1 April the program waits 24 hours: a redemption made under the old version
    # but recorded under the new one 40 hours later is refused.
    _apply(engine, tmp_path, 24, at("2026-04-01T00:00:00+02:00"))
    with pytest.raises(RedemptionBackdatedError, match="more than 24 hours"):
        _redeem(engine, "RD-3", "2026-03-31T18:00:00+02:00", "2026-04-02T10:00:00+02:00", 10,
                program="window-shop")
    assert points(engine, "window-shop") == (90, 0)


def test_a_replay_after_the_window_returns_the_first_outcome(october: Engine) -> None:
    first = _redeem(october, "RD-1", "2026-10-14T20:00:00+02:00", "2026-10-14T21:00:00+02:00",
                    50)
    again = _redeem(october, "RD-1", "2026-10-14T20:00:00+02:00", "2026-12-01T10:00:00+01:00",
                    50)
    assert (again.replayed, again.points) == (True, first.points)
    assert _ledger(october) == [("earn", 100), ("redeem", -50)]


FEES = """\
program: fee-shop
name: Fee Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
points:
  expiry: {after_days: 30}
clubs:
  - id: club
    name: The Club
    kind: fee
    levels:
      - {id: basic, name: Basic, fee: "10.00", points_price: 100}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


def test_a_fee_paid_in_points_spends_only_points_alive_when_recorded(
    engine: Engine, tmp_path: Path
) -> None:
    # 100 points on 4 January 2027 noon, expiring 30 days later, 3 February noon.
    path = tmp_path / "fees.yaml"
    path.write_text(FEES, encoding="utf-8")
    apply_program_files(engine, [path], at("2027-01-01"))
    buy(engine, "S1", "2027-01-04", [("GOODS", "goods", "1", "100.00")])
    joined = join_club(engine, "M-1", "club", at("2027-02-01"), at("2027-02-01"))
    assert joined.charge is not None
    charge_id = joined.charge["charge_id"]
    # Paid on 2 February, recorded on the 5th: the points had lapsed by then.
    with pytest.raises(FeeError, match="has 0 spendable points"):
        pay_charge(engine, charge_id, at("2027-02-02"), at("2027-02-05"), in_points=True)
    paid = pay_charge(engine, charge_id, at("2027-02-02"), at("2027-02-02"), in_points=True)
    assert paid.charge["points"] == 100
    assert points(engine, "fee-shop") == (0, 0)
