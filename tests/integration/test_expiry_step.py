"""`loyalty points expire`'s step on both databases: it expires points, vouchers past their
validity and lapsed stamps, with the events the scheduler's expire job records, and a
second run (by hand or by the scheduler) changes nothing.

The program below, worked by hand (Amsterdam, winter time +01:00):
- K1, 2027-01-04 12:00: 5 coffees at 3.00 -> 15 points expiring 2027-04-04 12:00, and a
  full card of 5 stamps -> a free coffee valid 30 days, until 2027-02-03 12:00;
- K2, 2027-01-20 12:00: 2 coffees -> 6 points expiring 2027-04-20 12:00, and 2 stamps that
  lapse on 2027-02-20 (one month after the day they were earned).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from loyalty_engine.ledger.check import check_balances
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.scheduling import run_tick
from loyalty_engine.store import tables

from .walk import apply_text, at, buy

NOW = datetime(2027, 6, 1, tzinfo=UTC)  # the wall clock stamped on rows

PROGRAM = (Path(__file__).resolve().parents[1] / "fixtures" / "programs"
           / "expiry-shop.yaml").read_text(encoding="utf-8")


def _setup(engine: Engine, tmp_path: Path) -> str:
    apply_text(engine, tmp_path, PROGRAM)
    buy(engine, "K1", "2027-01-04", [("FLAT-WHITE", "coffee", "5", "3.00")])
    buy(engine, "K2", "2027-01-20", [("FLAT-WHITE", "coffee", "2", "3.00")])
    with engine.connect() as conn:
        code: str = conn.execute(select(tables.vouchers.c.code)).scalar_one()
    return code


def _events(engine: Engine) -> list[tuple[str, str, str, datetime, dict[str, Any]]]:
    e = tables.member_events
    with engine.connect() as conn:
        return [(r.key, r.kind, r.member_id, r.occurred_at.astimezone(UTC), r.data)
                for r in conn.execute(select(e).where(e.c.kind.in_(
                    ("voucher_expired", "stamps_expired"))).order_by(e.c.key))]


def _clock() -> datetime:
    return NOW


def test_expire_step_expires_points_vouchers_and_stamps_once(
    engine: Engine, tmp_path: Path
) -> None:
    code = _setup(engine, tmp_path)

    # 21 February: the voucher (valid until 3 February) and K2's 2 stamps (lapsed on the
    # 20th) go; no points are due yet.
    first = expire_due(engine, at("2027-02-21T12:00:00+01:00"), NOW)
    assert first.as_json() == {
        "lots_expired": 0, "points_expired_by_program": {}, "members_with_points_expired": 0,
        "vouchers_expired": 1, "stamps_lapsed": 2, "members_with_stamps_lapsed": 1}
    assert first.rewards.codes == [code]
    with engine.connect() as conn:
        assert conn.execute(select(tables.vouchers.c.status)).scalars().all() == ["expired"]
    # The events the scheduler's job records: one per voucher, one per member and lapse day.
    assert _events(engine) == [
        ("stamps_expired:expiry-shop:coffee-card:M-1:2027-02-20", "stamps_expired", "M-1",
         datetime(2027, 2, 19, 23, 0, tzinfo=UTC),
         {"rule": "coffee-card", "stamps": 2, "lapsed_on": "2027-02-20", "card_size": 5}),
        (f"voucher_expired:{code}", "voucher_expired", "M-1",
         datetime(2027, 2, 3, 11, 0, tzinfo=UTC),
         {"voucher": code, "reward": "free-coffee", "kind": "free_item", "amount_minor": None,
          "expired_at": "2027-02-03T11:00:00+00:00"}),
    ]

    # Again: nothing new.
    again = expire_due(engine, at("2027-02-21T12:00:00+01:00"), NOW)
    assert again.as_json() == {**{k: 0 for k in first.as_json()}, "points_expired_by_program": {}}
    assert len(_events(engine)) == 2

    # 21 April: both lots have expired, 15 + 6 points, one entry each.
    later = expire_due(engine, at("2027-04-21T12:00:00+01:00"), NOW)
    assert (later.points.lots, later.points.points, later.points.members) == (2, 21, 1)
    assert (later.rewards.vouchers, later.rewards.stamps) == (0, 0)
    with engine.connect() as conn:
        expired = conn.execute(select(tables.ledger_entries.c.points).where(
            tables.ledger_entries.c.kind == "expire").order_by(
            tables.ledger_entries.c.points)).scalars().all()
        assert expired == [-15, -6]
        assert conn.execute(select(tables.balances.c.points)).scalar_one() == 0
    assert check_balances(engine).mismatches == []


def test_the_scheduler_after_a_manual_expiry_finds_nothing_to_do(
    engine: Engine, tmp_path: Path
) -> None:
    _setup(engine, tmp_path)
    when = at("2027-04-21T12:00:00+02:00")
    # What the scheduler's expire job would do (a dry run writes nothing) is what the step
    # by hand does: its fire time on the 21st is 01:00 in Amsterdam (summer time).
    fire = at("2027-04-21T01:00:00+02:00")
    dry = run_tick(engine, when, _clock, job="expire", dry_run=True)
    [planned] = dry.runs
    assert planned.fire == fire
    by_hand = expire_due(engine, fire, NOW)
    assert planned.counts == by_hand.as_json()
    assert by_hand.as_json() == {
        "lots_expired": 2, "points_expired_by_program": {"expiry-shop": 21},
        "members_with_points_expired": 1,
        "vouchers_expired": 1, "stamps_lapsed": 2, "members_with_stamps_lapsed": 1}
    events = _events(engine)

    # The scheduler's own run afterwards expires nothing and records no event twice.
    [run] = run_tick(engine, when, _clock, job="expire").runs
    assert run.error is None
    assert run.counts == {**{k: 0 for k in by_hand.as_json()}, "points_expired_by_program": {}}
    assert _events(engine) == events
    assert check_balances(engine).mismatches == []
