"""Member figures, RFM scores and the weekly snapshot on both databases, worked by hand:
local purchase days in Amsterdam (across the change to summer time), an excluded category
and a partial and a full refund, points earned and redeemed, the snapshot written once per
run date with an event for each member who moved, and the scheduler running it."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.analytics.rfm import score_members
from loyalty_engine.analytics.segments import ScoreRange, SegmentMap
from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.records.member_figures import member_figures, write_snapshot
from loyalty_engine.rules.compiled_insights import ProgramInsights, RfmSettings
from loyalty_engine.services.analytics_members import (
    NoPurchasesError,
    _since,
    member_summaries,
    rfm_grid,
    rfm_scores,
    take_snapshot,
)
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.redemptions import reverse_redemption
from loyalty_engine.services.scheduling import run_tick
from loyalty_engine.store import tables

from .walk import apply_text, at, buy, refund, spend

SHOP = """\
program: rfm-shop
name: RFM Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude:
  categories: [gift-cards]
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""
RECORDED = datetime(2027, 6, 1, tzinfo=UTC)
END_OF_MARCH = at("2026-03-31T12:00:00+02:00")
APRIL = at("2026-04-10T12:00:00+02:00")


def _goods(amount: str) -> list[tuple[str, str, str, str]]:
    return [("BAG", "goods", "1", amount)]


def _march(engine: Engine, tmp_path: Path) -> None:
    """M-1: 10.00 at 00:30 on 2 March (still 1 March in UTC) and 5.00 that evening, then
    20.00 of goods and a 25.00 gift card on 20 March: 3 purchases on 2 days, 35.00
    counted, 35 points; redeems 12 points on 21 March, and 5 on 22 March reversed on the
    23rd (12 redeemed); redeems 3 more on 2 April. M-2: 30.00 on 10 March, 10.00 of it
    refunded on 12 March: 20.00 counted, 30 - 10 = 20 points. M-3: 8.00 on 15 March,
    refunded in full: counted nowhere."""
    apply_text(engine, tmp_path, SHOP)
    buy(engine, "A1", "2026-03-02T00:30:00+01:00", _goods("10.00"))
    buy(engine, "A2", "2026-03-02T18:00:00+01:00", _goods("5.00"))
    buy(engine, "A3", "2026-03-20", [("BAG", "goods", "1", "20.00"),
                                     ("GIFT-25", "gift-cards", "1", "25.00")])
    buy(engine, "B1", "2026-03-10", _goods("30.00"), member="M-2")
    refund(engine, "RB1", "B1", "2026-03-12", "10.00")
    buy(engine, "C1", "2026-03-15", _goods("8.00"), member="M-3")
    refund(engine, "RC1", "C1", "2026-03-16", "8.00")
    spend(engine, "R1", "2026-03-21", "rfm-shop", points=12)
    spend(engine, "R2", "2026-03-22", "rfm-shop", points=5)
    reverse_redemption(engine, "R2", RECORDED, at("2026-03-23"))
    spend(engine, "R3", "2026-04-02", "rfm-shop", points=3)


def test_member_figures_and_scores_as_worked_by_hand(engine: Engine, tmp_path: Path) -> None:
    _march(engine, tmp_path)
    report = member_summaries(engine, "rfm-shop", END_OF_MARCH, sort="spend")
    assert (report.total, report.as_of_day, report.currency) == (2, date(2026, 3, 31), "EUR")
    one, two = (row.figures for row in report.members)
    # M-1: 2 March to 31 March is 29 days of tenure; last on 20 March, 11 days back; one
    # gap of 18 days between the two purchase days; 35.00 / 3 = 11.666... -> 11.67.
    assert (one.member_id, one.first_day, one.last_day, one.purchases, one.days,
            one.spend_minor) == ("M-1", date(2026, 3, 2), date(2026, 3, 20), 3, 2, 3500)
    assert one.first_at == datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert (one.tenure_days, one.recency_days, one.mean_gap_days,
            one.average_spend_minor) == (29, 11, 18.0, 1167)
    assert (one.points_earned, one.points_redeemed) == (35, 12)
    assert (two.member_id, two.purchases, two.days, two.spend_minor, two.recency_days,
            two.mean_gap_days, two.points_earned, two.points_redeemed) == (
        "M-2", 1, 1, 2000, 21, None, 20, 0)
    # Two members: positions 0 and 1 score 1 and floor(5/2) + 1 = 3. M-1 is more recent,
    # more frequent and spent more: R3 F3 M3, need_attention; M-2 R1 F1 M1, lost.
    scores = rfm_scores(engine, "rfm-shop", END_OF_MARCH)
    assert {m: (s.r, s.f, s.m, s.segment) for m, s in scores.items()} == {
        "M-1": (3, 3, 3, "need_attention"), "M-2": (1, 1, 1, "lost")}

    assert [r.figures.member_id for r in member_summaries(
        engine, "rfm-shop", END_OF_MARCH, sort="recency").members] == ["M-1", "M-2"]
    assert [r.figures.member_id for r in member_summaries(
        engine, "rfm-shop", END_OF_MARCH, sort="first").members] == ["M-1", "M-2"]
    lost = member_summaries(engine, "rfm-shop", END_OF_MARCH, segment="lost")
    assert (lost.total, [r.figures.member_id for r in lost.members]) == (1, ["M-2"])
    assert member_summaries(engine, "rfm-shop", END_OF_MARCH, limit=1).total == 2
    grid = rfm_grid(engine, "rfm-shop", END_OF_MARCH)
    assert {cell: n for cell, n in grid.grid.cells.items() if n} == {(3, 3): 1, (1, 1): 1}
    assert grid.scoring == {"recency": "quintiles", "frequency": "quintiles",
                            "monetary": "quintiles"}

    # Before 2 March's first purchase, nothing to report; the refund of 12 March is not
    # yet made on the 11th, so M-2 counts 30.00 then.
    with pytest.raises(NoPurchasesError, match="has no purchases by 2026-03-01T12:00:00"):
        member_summaries(engine, "rfm-shop", at("2026-03-01"))
    early = rfm_scores(engine, "rfm-shop", at("2026-03-11"))
    assert early["M-2"].figures.spend_minor == 3000
    assert rfm_scores(engine, "rfm-shop", at("2026-03-01")) == {}
    with pytest.raises(NotFoundError, match="there is no program 'nope'"):
        rfm_grid(engine, "nope", END_OF_MARCH)
    with pytest.raises(NotFoundError, match="has no segment 'vip'"):
        member_summaries(engine, "rfm-shop", END_OF_MARCH, segment="vip")


def _snapshots(engine: Engine) -> list[tuple[str, str, int, int, int, int, str]]:
    s = tables.rfm_snapshots
    with engine.connect() as conn:
        return [(r.member_id, r.as_of_date.isoformat(), r.recency_days, r.r, r.f, r.m,
                 r.segment) for r in conn.execute(
            select(s).order_by(s.c.as_of_date, s.c.member_id))]


def _moves(engine: Engine) -> list[tuple[str, str, dict[str, object]]]:
    e = tables.member_events
    with engine.connect() as conn:
        return [(r.key, r.member_id, r.data) for r in conn.execute(
            select(e).where(e.c.kind == "segment_changed").order_by(e.c.key))]


def test_a_snapshot_is_written_once_per_date_and_moves_are_events(
    engine: Engine, tmp_path: Path,
) -> None:
    _march(engine, tmp_path)
    first = take_snapshot(engine, "rfm-shop", END_OF_MARCH, date(2026, 3, 31), RECORDED)
    assert (first.members, first.written, first.moved) == (2, 2, 0)  # a first is no move
    assert _snapshots(engine) == [
        ("M-1", "2026-03-31", 11, 3, 3, 3, "need_attention"),
        ("M-2", "2026-03-31", 21, 1, 1, 1, "lost")]

    # M-2 buys 100.00 on 5 April; M-4 buys for the first time on 8 April.
    buy(engine, "B2", "2026-04-05", _goods("100.00"), member="M-2")
    buy(engine, "D1", "2026-04-08", _goods("4.00"), member="M-4")
    # Again for 31 March, later that day, with the new purchases in view: nothing new.
    again = take_snapshot(engine, "rfm-shop", APRIL, date(2026, 3, 31), RECORDED)
    assert (again.written, again.moved) == (0, 0)
    assert len(_snapshots(engine)) == 2

    # As of 10 April, three members (position p of 3 scores 5p // 3 + 1: 1, 2, 4).
    # Recency: M-1 21 days, M-2 5, M-4 2 -> R 1, 2, 4. Purchases: M-4 1, M-2 2, M-1 3 ->
    # F 1, 2, 4. Spend: M-4 4.00, M-1 35.00, M-2 120.00 -> M 1, 2, 4.
    # M-1 R1 F4: at_risk (was need_attention); M-2 R2 F2: hibernating (was lost); M-4
    # R4 F1: promising, a first snapshot.
    moved = take_snapshot(engine, "rfm-shop", APRIL, date(2026, 4, 10), RECORDED)
    assert (moved.members, moved.written, moved.moved) == (3, 3, 2)
    assert _snapshots(engine)[2:] == [
        ("M-1", "2026-04-10", 21, 1, 4, 2, "at_risk"),
        ("M-2", "2026-04-10", 5, 2, 2, 4, "hibernating"),
        ("M-4", "2026-04-10", 2, 4, 1, 1, "promising")]
    assert _moves(engine) == [
        ("segment_changed:rfm-shop:M-1:2026-04-10", "M-1",
         {"program": "rfm-shop", "from": "need_attention", "to": "at_risk",
          "as_of": "2026-04-10", "r": 1, "f": 4, "m": 2}),
        ("segment_changed:rfm-shop:M-2:2026-04-10", "M-2",
         {"program": "rfm-shop", "from": "lost", "to": "hibernating",
          "as_of": "2026-04-10", "r": 2, "f": 2, "m": 4})]
    twice = take_snapshot(engine, "rfm-shop", APRIL, date(2026, 4, 10), RECORDED)
    assert (twice.written, twice.moved) == (0, 0)
    assert len(_moves(engine)) == 2


def test_the_scheduler_takes_the_snapshot_every_monday_at_five(
    engine: Engine, tmp_path: Path,
) -> None:
    _march(engine, tmp_path)
    # First tick: the latest fire time, Monday 30 March 05:00 (summer time, 03:00 UTC).
    report = run_tick(engine, at("2026-03-30T06:00:00+02:00"), lambda: RECORDED,
                      job="rfm_snapshot")
    [run] = report.runs
    assert (run.job, run.fire, run.error) == (
        "rfm_snapshot", datetime(2026, 3, 30, 3, tzinfo=UTC), None)
    assert run.counts == {"run_date": "2026-03-30", "members": 2, "written": 2, "moved": 0}
    assert [(m, d, days, seg) for m, d, days, _, _, _, seg in _snapshots(engine)] == [
        ("M-1", "2026-03-30", 10, "need_attention"), ("M-2", "2026-03-30", 20, "lost")]
    with engine.connect() as conn:
        taken = conn.execute(select(tables.rfm_snapshots.c.taken_at)).scalars().all()
    assert set(taken) == {datetime(2026, 3, 30, 3, tzinfo=UTC)}

    buy(engine, "B2", "2026-04-05", _goods("100.00"), member="M-2")
    buy(engine, "D1", "2026-04-08", _goods("4.00"), member="M-4")
    # Two weeks on: the runs of 6 and 13 April, in order. On 6 April, of two members:
    # M-1 (17 days, 3 purchases, 35.00) R1 F3 M1 at_risk, a move; M-2 (1 day, 2
    # purchases, 120.00) R3 F1 M3 about_to_sleep, a move. On 13 April with M-4: recency
    # M-1 24, M-2 8, M-4 5 -> R 1 2 4; purchases 3 2 1 -> F 4 2 1: M-1 R1 F4 still
    # at_risk (no event), M-2 R2 F2 hibernating (a move), M-4 promising (a first).
    report = run_tick(engine, at("2026-04-13T06:00:00+02:00"), lambda: RECORDED,
                      job="rfm_snapshot")
    assert [(r.fire.date().isoformat(), r.counts["moved"]) for r in report.runs] == [
        ("2026-04-06", 2), ("2026-04-13", 1)]
    assert [(m, d, seg) for m, d, _, _, _, _, seg in _snapshots(engine)][2:] == [
        ("M-1", "2026-04-06", "at_risk"), ("M-2", "2026-04-06", "about_to_sleep"),
        ("M-1", "2026-04-13", "at_risk"), ("M-2", "2026-04-13", "hibernating"),
        ("M-4", "2026-04-13", "promising")]
    assert [(member, data["from"], data["to"], data["as_of"])
            for _, member, data in _moves(engine)] == [
        ("M-1", "need_attention", "at_risk", "2026-04-06"),
        ("M-2", "lost", "about_to_sleep", "2026-04-06"),
        ("M-2", "about_to_sleep", "hibernating", "2026-04-13")]
    # Nothing more is due the same morning.
    assert run_tick(engine, at("2026-04-13T07:00:00+02:00"), lambda: RECORDED,
                    job="rfm_snapshot").runs == []


# A map that splits on M as well, so that the snapshot's segment CASE reads all three.
BY_MONEY = SegmentMap((
    ("big_recent", (ScoreRange(r=(4, 5), m=(4, 5)),)),
    ("recent", (ScoreRange(r=(4, 5)),)),
    ("big", (ScoreRange(m=(3, 5)), ScoreRange(f=(5, 5)))),
    ("rest", (ScoreRange(),)),
))


@pytest.mark.parametrize("insights", [
    ProgramInsights(),
    ProgramInsights(rfm=RfmSettings(recency_days=(7, 30, 60, 120), frequency=(1, 2, 3, 5),
                                    monetary_minor=(500, 1500, 3000, 6000)),
                    segments=BY_MONEY),
    ProgramInsights(rfm=RfmSettings(frequency=(1, 2, 3, 5), window_months=2)),
], ids=["quintiles", "fixed", "window"])
def test_the_snapshot_scores_members_as_the_core_does(
    engine: Engine, tmp_path: Path, insights: ProgramInsights,
) -> None:
    """The snapshot scores in SQL (one INSERT ... SELECT); the reports score in Python
    (analytics/rfm.py). On 60 members with many ties (few distinct days and amounts) and a
    refund, both give every member the same measures, scores and segment."""
    apply_text(engine, tmp_path, SHOP)
    rng = random.Random(5)
    for n in range(60):
        for k in range(rng.choice((1, 1, 2, 3, 5, 8))):
            day = date(2026, 1, 5) + timedelta(days=rng.choice((0, 7, 30, 45, 60, 61, 90)))
            buy(engine, f"T{n}-{k}", day.isoformat(),
                _goods(rng.choice(("5.00", "10.00", "10.00", "25.00", "40.00"))),
                member=f"M-{n:02d}")
    refund(engine, "R-1", "T0-0", "2026-04-09", "2.50")
    with engine.begin() as conn:
        stored = load_catalog(conn).in_force("rfm-shop", APRIL)
        assert stored is not None
        program = replace(stored.program, insights=insights)
        since = _since(program, APRIL)
        expected = score_members(member_figures(conn, program, APRIL, since), insights.rfm,
                                 insights.segments)
        written = write_snapshot(conn, program, APRIL, date(2026, 4, 10), RECORDED, since)
        s = tables.rfm_snapshots
        rows = {r.member_id: (r.recency_days, r.frequency, r.monetary_minor, r.r, r.f, r.m,
                              r.segment) for r in conn.execute(select(s))}
    assert written == len(expected) == len(rows)
    assert rows == {m: (x.figures.recency_days, x.figures.purchases, x.figures.spend_minor,
                        x.r, x.f, x.m, x.segment) for m, x in expected.items()}
    assert len({x.segment for x in expected.values()}) > 2
