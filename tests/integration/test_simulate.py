"""Backtesting a program on stored history (services/simulation.py), on SQLite and PostgreSQL.

The history (tests/fixtures/simulate/sim-shop.yaml: 1 point per euro, 2 at Silver; 10
points on baskets of 50 euros or more; points expire after two months; Silver from 100
euros over the last two months, reviewed on the 1st), with the live scheduler run as it
went. Amsterdam is UTC+1 until 29 March 2026, UTC+2 after.

  A  10 Jan  P1 60.00    Member: 60 + basket 10 = 70        (lot 70, expires 10 Mar)
  A  20 Jan  P2 50.00    reaches Silver (110), earns at Member: 50 + 10 = 60 (expires 20 Mar)
  A  25 Jan  R1 buys ten-off for 50 points: from P1's lot (70 -> 20)
  A   1 Feb  review: Dec-Jan spend 110 -> Silver stays
  A   5 Feb  P3 20.00    Silver: 20 x 2 = 40                  (expires 5 Apr)
  A  10 Feb  refund of 25.00 of P2 (half): per-euro 25 and basket 5 back (-30)
  B  15 Feb  B1 30.00    Member: 30                           (expires 15 Apr)
  B   1 Mar  B2 80.00    reaches Silver (110), earns at Member: 80 + 10 = 90
             review on 1 Mar 03:00 (before B2): A Jan-Feb 60+50-25+20 = 105: Silver
  A  expiry  10 Mar: 20 of P1; 20 Mar: 30 of P2; 5 Apr: 40 of P3   (90)
  B  expiry  15 Apr: 30 of B1                                         (30)
             review on 1 Apr: A Feb-Mar 20 -> Member; B Feb-Mar 110 -> Silver

Over the whole history, to 1 May 00:00: issued 70 + 60 + 40 + 30 + 90 = 290, refunded 30,
redeemed 50, expired 120; tiers at the end: A member, B silver.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from loyalty_engine.domain.errors import LoyaltyError, NotFoundError
from loyalty_engine.services.program_files import load_program_file
from loyalty_engine.services.scheduling import run_tick
from loyalty_engine.services.simulation import simulate
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.tables import metadata, tier_status

from .walk import at, buy, refund, spend

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "simulate"
LIVE = FIXTURES / "sim-shop.yaml"
DOUBLE = FIXTURES / "sim-shop-double-basket.yaml"
PID = "sim-shop"
END = at("2026-05-01T00:00:00+02:00")


def tick(engine: Engine, when: str) -> None:
    instant = at(when)
    run_tick(engine, instant, lambda: instant)


def shop(engine: Engine, tx: str, day: str, amount: str, member: str) -> int:
    return buy(engine, tx, day, [("ITEM", "goods", "1", amount)], member=member,
               store="SIM-01").points


def live_history(engine: Engine) -> None:
    """The history of the module docstring, the scheduler ticking as time went by."""
    from loyalty_engine.services.programs import apply_program_files

    apply_program_files(engine, [LIVE], at("2026-01-01"))
    assert shop(engine, "P1", "2026-01-10", "60.00", "A") == 70
    assert shop(engine, "P2", "2026-01-20", "50.00", "A") == 60
    assert spend(engine, "R1", "2026-01-25", PID, member="A", reward="ten-off").points == 50
    tick(engine, "2026-02-01T04:00:00+01:00")
    assert shop(engine, "P3", "2026-02-05", "20.00", "A") == 40
    out = refund(engine, "RF1", "P2", "2026-02-10", "25.00", store="SIM-01")
    assert out.points == {PID: 30}
    assert shop(engine, "B1", "2026-02-15", "30.00", "B") == 30
    tick(engine, "2026-03-01T04:00:00+01:00")
    assert shop(engine, "B2", "2026-03-01", "80.00", "B") == 90
    tick(engine, "2026-04-01T04:00:00+02:00")
    tick(engine, "2026-04-30T23:00:00+02:00")


def row_counts(engine: Engine) -> dict[str, int]:
    with read_transaction(engine) as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables}


def test_the_stored_version_reproduces_the_live_ledger(engine: Engine) -> None:
    live_history(engine)
    before = row_counts(engine)
    result = simulate(engine, load_program_file(LIVE), None, END, verify=True)
    assert row_counts(engine) == before  # nothing written to the live tables
    assert result.verified == []  # the self-check: every (member, rule, kind) equal
    assert (result.purchases, result.refunds, result.redemptions) == (5, 1, 1)
    live, same = result.live, result.candidate
    assert (live.issued, live.refunded, live.redeemed, live.expired) == (290, 30, 50, 120)
    assert live.by_rule == {"per-euro": 60 + 50 + 40 + 30 + 80 - 25, "big-basket": 30 - 5}
    assert live.tier_mix == {"member": 1, "silver": 1}
    with read_transaction(engine) as conn:  # the live tiers, after the live reviews
        t = tier_status
        assert {m: tier for m, tier in conn.execute(select(t.c.member_id, t.c.tier))} == {
            "A": "member", "B": "silver"}
    assert live.vouchers == {"points": (1, 1000)}
    # 290 - 30 = 260 points at the default 0.01 euro: 2.60 euros.
    assert live.cost_minor == 260
    assert same.as_json() == live.as_json()
    assert result.rule_deltas == {"per-euro": 0, "big-basket": 0}
    assert result.members_changed == 0 and result.tier_changes == []


def test_a_window_after_a_warm_up_reproduces_it_too(engine: Engine) -> None:
    live_history(engine)
    start = at("2026-02-01T00:00:00+01:00")
    result = simulate(engine, load_program_file(LIVE), start, END, verify=True)
    assert result.verified == []
    # In the window: P3 40, B1 30, B2 90 issued; the refund of P2; every expiry (from 10
    # Mar); R1 (25 Jan) is before it.
    live = result.live
    assert (live.issued, live.refunded, live.redeemed, live.expired) == (160, 30, 0, 120)
    assert result.purchases == 3 and result.refunds == 1 and result.redemptions == 0
    assert result.candidate.as_json() == live.as_json()


def test_doubling_one_rule_shows_exactly_that_rules_delta(engine: Engine) -> None:
    live_history(engine)
    before = row_counts(engine)
    result = simulate(engine, load_program_file(DOUBLE), None, END, verify=True)
    assert row_counts(engine) == before
    assert result.verified == []  # the live side is still the stored version's
    # Baskets of 50 euros or more: P1, P2, B2 earn 20 instead of 10 (+30); the half refund
    # of P2 takes 10 of its 20 back instead of 5 (+5 taken back).
    assert result.rule_deltas == {"per-euro": 0, "big-basket": 30 - 5}
    live, cand = result.live, result.candidate
    assert cand.issued - live.issued == 30
    assert cand.refunded - live.refunded == 5
    # A's bigger lots expire: P1 keeps 30 after R1 (20 before), P2 35 after its refund (30).
    assert cand.expired - live.expired == 10 + 5
    assert cand.redeemed == live.redeemed == 50
    assert cand.tier_mix == live.tier_mix  # the tiers count spend, not points
    # Net per member: A earns 15 more and loses the same 15 to expiry; B keeps 10 more.
    assert [(m.member_id, m.delta) for m in result.gains] == [("B", 10)]
    assert result.losses == [] and result.members_changed == 1
    assert cand.cost_minor - live.cost_minor == 25  # 25 more points at 0.01 euro


def test_members_and_as_new(engine: Engine, tmp_path: Path) -> None:
    live_history(engine)
    only_b = simulate(engine, load_program_file(DOUBLE), None, END, members=["B"],
                      verify=True)
    assert only_b.verified == []
    assert only_b.rule_deltas == {"per-euro": 0, "big-basket": 10}
    assert (only_b.live.issued, only_b.candidate.issued) == (120, 130)
    other = tmp_path / "other.yaml"
    other.write_text(LIVE.read_text(encoding="utf-8").replace("program: sim-shop",
                                                               "program: sim-other"),
                     encoding="utf-8")
    with pytest.raises(NotFoundError, match="--as-new"):
        simulate(engine, load_program_file(other), None, END)
    fresh = simulate(engine, load_program_file(other), None, END, as_new=True)
    # As a new program from the first purchase: the purchases and the refund earn as they
    # did in sim-shop; R1 is sim-shop's and is not replayed; so less is spent, more expires.
    assert fresh.live.issued == 0 and fresh.candidate.issued == 290
    assert fresh.candidate.refunded == 30 and fresh.candidate.redeemed == 0
    assert fresh.rule_deltas == {"per-euro": 235, "big-basket": 25}


def test_bad_windows_are_refused_and_write_nothing(engine: Engine) -> None:
    live_history(engine)
    before = row_counts(engine)
    candidate = load_program_file(DOUBLE)
    with pytest.raises(LoyaltyError, match="is after --to"):
        simulate(engine, candidate, at("2026-04-01"), at("2026-03-01"))
    with pytest.raises(LoyaltyError, match="no purchases"):
        simulate(engine, candidate, at("2026-03-10"), at("2026-03-20"))
    with pytest.raises(LoyaltyError, match="no stored purchases"):
        simulate(engine, candidate, None, END, members=["NOBODY"])
    assert row_counts(engine) == before


def test_verify_finds_what_the_replay_cannot_redo(engine: Engine) -> None:
    from loyalty_engine.services.adjustments import Adjustment, adjust_points

    live_history(engine)
    adjust_points(engine, Adjustment("ADJ-1", "B", PID, 7, "goodwill", "goodwill", "test",
                                     at("2026-03-05")),
                  datetime.fromisoformat("2026-03-05T12:00:00+01:00"))
    result = simulate(engine, load_program_file(LIVE), None, END, verify=True)
    assert [m.as_json() for m in result.verified or []] == [
        {"member": "B", "rule": "", "kind": "adjust", "live": 7, "replayed": 0}]
    assert result.not_replayed == {"adjustments": 1}


# The year walks of the other integration tests, each a live history checked by hand there:
# (module, walk, program file, the end of the window). Replaying their stored versions must
# give back their ledgers exactly: stamp cards, pending points, inactivity and end-of-month
# expiry, visit bonuses, tier reviews caught up, fee clubs with renewals, rebates (one used,
# then a return after it).
WALKS = [
    ("test_year_beauty", "test_a_year_at_the_beauty_retailer", "glow-beauty-year.yaml",
     "2026-12-31"),
    ("test_year_coffee_stars", "test_a_year_of_the_app_loyalist", "coffee-stars.yaml",
     "2027-12-31"),
    ("test_year_coffee_stars", "test_a_year_at_the_counter_and_on_the_web",
     "coffee-stars.yaml", "2027-12-31"),
    ("test_year_grocery", "test_a_year_of_two_shoppers_one_keeps_shopping_one_stops",
     "grocery-year.yaml", "2027-01-02"),
    ("test_year_hotel", "test_a_year_of_stays", "hotel-nights.yaml", "2028-01-02"),
    ("test_year_warehouse", "test_two_members_through_a_membership_year_and_a_renewal",
     "warehouse-year.yaml", "2028-07-11"),
]
# Not the student walk: its member's group verification is made again after it lapsed, and
# a replay copies verifications as they stand now (docs/simulate.md, limits).


@pytest.mark.parametrize(("module", "walk", "program", "end"), WALKS,
                         ids=[f"{w[0].removeprefix('test_year_')}-{i}"
                              for i, w in enumerate(WALKS)])
def test_the_year_walks_replay_to_their_live_ledgers(engine: Engine, module: str, walk: str,
                                                     program: str, end: str) -> None:
    import importlib

    getattr(importlib.import_module(f"tests.integration.{module}"), walk)(engine)
    before = row_counts(engine)
    path = Path(__file__).resolve().parents[1] / "fixtures" / "programs" / program
    result = simulate(engine, load_program_file(path), None, at(end), verify=True)
    assert [m.as_json() for m in result.verified or []] == []
    assert result.candidate.as_json() == result.live.as_json()
    assert result.live.issued > 0
    assert row_counts(engine) == before


def test_purchases_recorded_out_of_time_order_are_counted(engine: Engine) -> None:
    from loyalty_engine.domain.events import PurchaseEvent
    from loyalty_engine.services.purchases import record_purchase

    live_history(engine)
    # A till that was offline posts A's purchase of 5 January months later: the live
    # system counted it after everything else, a replay counts it first.
    late = PurchaseEvent.model_validate({
        "transaction_id": "LATE", "store_id": "SIM-01", "member_id": "A",
        "occurred_at": at("2026-01-05"), "currency": "EUR", "total": "10.00",
        "items": [{"sku": "ITEM", "category": "goods", "quantity": "1", "unit_price": "10.00"}]})
    record_purchase(engine, late, datetime.fromisoformat("2027-07-01T12:00:00+02:00"))
    result = simulate(engine, load_program_file(LIVE), None, END, verify=True)
    assert result.out_of_order == 1
    assert result.purchases == 6
