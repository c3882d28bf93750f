"""The scheduler on both databases: each job runs when due, missed fire times are caught up
in order and once, a backwards tick is refused, a dry run writes nothing, and failures
(of a whole job, or of one member) are recorded and retried."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select

from loyalty_engine.domain.errors import RedemptionRejectedError
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.engine import standing
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.services import jobs, programs
from loyalty_engine.services.redemptions import redeem
from loyalty_engine.services.scheduling import BackwardsTickError, TickReport, run_tick
from loyalty_engine.store import tables

from .walk import apply_text, at, buy

RECORDED = datetime(2027, 6, 1, tzinfo=UTC)

SHOP = """\
program: sched-shop
name: Scheduler Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
points:
  pending_days: 14
  expiry: {after_months: 3}
rewards:
  - id: free-coffee
    name: A free coffee
    kind: free_item
    category: coffee
    valid_days: 30
tiers:
  measure: visits
  window: {rolling_months: 1}
  downgrade: qualified
  levels:
    - {id: member, threshold: 0}
    - {id: regular, threshold: 3}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
  - id: third-visit
    kind: nth_visit
    visit: 3
    period: month
    points: 50
    award: at_period_end
  - id: big-month
    kind: spend_threshold
    threshold: "100.00"
    period: month
    points: 30
    award: at_period_end
  - id: coffee-card
    kind: stamp_card
    when: {categories: [coffee]}
    stamp_per: item
    card_size: 5
    reward: free-coffee
    stamps_expire: {after_months: 1}
"""


def _clock() -> datetime:
    return RECORDED


def tick(engine: Engine, when: str, **options: Any) -> TickReport:
    return run_tick(engine, at(when), _clock, **options)


def _coffee(engine: Engine, tx: str, day: str, cups: int = 1, member: str = "M-1") -> None:
    buy(engine, tx, day, [("FLAT-WHITE", "coffee", str(cups), "3.00")], member=member)


def _shop(engine: Engine, tx: str, day: str, amount: str, member: str = "M-1") -> None:
    buy(engine, tx, day, [("BAG", "goods", "1", amount)], member=member)


def _rows(engine: Engine, query: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def _runs(report: TickReport, job: str) -> list[str]:
    return [r.fire.isoformat() for r in report.runs if r.job == job]


def _history(engine: Engine, member: str) -> list[tuple[str, str, str]]:
    h = tables.tier_history
    return [(r.ref, r.from_tier, r.to_tier) for r in _rows(
        engine, select(h).where(h.c.member_id == member, h.c.reason == "review")
        .order_by(h.c.changed_at, h.c.id))]


def _state(engine: Engine) -> dict[str, Any]:
    """What the jobs write, without ids and recording times."""
    led, v, ev, fx = tables.ledger_entries, tables.vouchers, tables.member_events, \
        tables.job_effects
    return {
        "ledger": sorted((r.member_id, r.kind, r.points, r.ref or "") for r in _rows(
            engine, select(led))),
        "vouchers": sorted((r.code, r.status) for r in _rows(engine, select(v))),
        "events": sorted(r.key for r in _rows(engine, select(ev))),
        "effects": sorted((r.job, r.member_id, r.effect_key) for r in _rows(
            engine, select(fx))),
        "tiers": sorted((r.member_id, r.tier, str(r.reviewed_on)) for r in _rows(
            engine, select(tables.tier_status))),
        "balances": sorted((r.member_id, r.points, r.pending) for r in _rows(
            engine, select(tables.balances))),
    }


def test_three_missed_monthly_reviews_each_happen_once_in_order(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2026-12-01T12:00:00+01:00")  # the scheduler's first day
    for n, day in enumerate(("2026-12-02", "2026-12-09", "2026-12-16")):
        _shop(engine, f"D{n}", day, "10.00")  # three visits: regular at once
    _shop(engine, "J1", "2027-01-10", "10.00")  # one visit in January, none after

    # Down from 1 December to 15 March: the reviews of 1 January, 1 February and
    # 1 March (03:00 in Amsterdam) each run, in that order.
    report = tick(engine, "2027-03-15T12:00:00+01:00")
    assert _runs(report, "review_tiers") == [
        "2027-01-01T02:00:00+00:00", "2027-02-01T02:00:00+00:00", "2027-03-01T02:00:00+00:00"]
    fires = [r.fire for r in report.runs]
    assert fires == sorted(fires)
    # January's judged December (3 visits: stays regular), February's January (1: down).
    assert _history(engine, "M-1") == [("review:2027-02-01", "regular", "member")]
    status = _rows(engine, select(tables.tier_status))
    assert [(r.tier, r.reviewed_on.isoformat()) for r in status] == [("member", "2027-03-01")]

    # Run again, and again later the same day: nothing is due, nothing changes.
    before = _state(engine)
    assert tick(engine, "2027-03-15T12:00:00+01:00").runs == []
    assert _runs(tick(engine, "2027-03-15T18:00:00+01:00"), "review_tiers") == []
    assert _state(engine) == before
    marks = {(r.job): r.ran_to.isoformat() for r in _rows(
        engine, select(tables.scheduler_watermarks))}
    assert marks["review_tiers"] == "2027-03-01T02:00:00+00:00"
    assert check_balances(engine).mismatches == []


def test_period_end_bonuses_are_paid_once_to_those_who_reached_them(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    for n, day in enumerate(("2027-01-05", "2027-01-12", "2027-01-19")):
        _shop(engine, f"A{n}", day, "40.00")  # 3 visits, 120.00: both bonuses
    _shop(engine, "B1", "2027-01-05", "150.00", member="M-2")  # one visit, over 100.00
    _shop(engine, "C1", "2027-01-31T23:30:00+01:00", "20.00", member="M-3")
    # Nothing at the purchase that reached them: they are paid at the month's end.
    bonus = tables.ledger_entries
    earned = select(bonus.c.member_id, bonus.c.rule_id, bonus.c.points, bonus.c.occurred_at
                    ).where(bonus.c.rule_id.in_(("third-visit", "big-month"))
                            ).order_by(bonus.c.member_id, bonus.c.rule_id)
    assert _rows(engine, earned) == []

    # Not before 02:30 on 1 February (Amsterdam), when the job fires.
    early = tick(engine, "2027-02-01T02:00:00+01:00")
    assert sum(r.counts["bonuses"] for r in early.runs if r.job == "period_bonuses") == 0
    report = tick(engine, "2027-02-01T02:30:00+01:00")
    run = next(r for r in report.runs if r.job == "period_bonuses")
    assert (run.counts["bonuses"], run.counts["points"]) == (3, 50 + 30 + 30)
    end = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)  # midnight in Amsterdam
    assert [(m, r, p, o.astimezone(UTC)) for m, r, p, o in _rows(engine, earned)] == [
        ("M-1", "big-month", 30, end), ("M-1", "third-visit", 50, end),
        ("M-2", "big-month", 30, end)]
    events = _rows(engine, select(tables.member_events).where(
        tables.member_events.c.kind == "reward_issued"))
    assert sorted((e.member_id, e.data["rule"], e.data["points"]) for e in events) == [
        ("M-1", "big-month", 30), ("M-1", "third-visit", 50), ("M-2", "big-month", 30)]

    # The same month again, by a later tick or a replayed one: nothing new.
    tick(engine, "2027-02-10T12:00:00+01:00")
    run_tick(engine, at("2027-02-10T12:00:00+01:00"), _clock, job="period_bonuses",
             dry_run=True)
    assert len(_rows(engine, earned)) == 3
    assert check_balances(engine).mismatches == []


def test_vouchers_and_stamps_expire_once_with_an_event(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    _coffee(engine, "K1", "2027-01-04", cups=5)  # a full card: a free coffee, 30 days
    _coffee(engine, "K2", "2027-01-20", cups=2)  # two stamps, lapsing on 20 February
    code = _rows(engine, select(tables.vouchers.c.code))[0][0]

    report = tick(engine, "2027-02-21T12:00:00+01:00")
    expire = [r for r in report.runs if r.job == "expire"]
    assert len(expire) == 1  # coalesced: one run at the latest due time
    assert (expire[0].counts["vouchers_expired"], expire[0].counts["stamps_lapsed"]) == (1, 2)
    assert _rows(engine, select(tables.vouchers.c.status)) == [("expired",)]
    kinds = sorted((e.kind, e.member_id) for e in _rows(engine, select(
        tables.member_events).where(tables.member_events.c.kind.in_(
            ("voucher_expired", "stamps_expired")))))
    assert kinds == [("stamps_expired", "M-1"), ("voucher_expired", "M-1")]

    # Later runs find nothing new; the expired voucher cannot be used now...
    tick(engine, "2027-03-05T12:00:00+01:00")
    assert len(_rows(engine, select(tables.job_effects))) == 1
    with pytest.raises(RedemptionRejectedError, match="expired"):
        redeem(engine, RedemptionRequest.model_validate({
            "redemption_id": "X1", "member_id": "M-1", "program_id": "sched-shop",
            "voucher": code, "occurred_at": at("2027-03-05")}), at("2027-03-05"))


def test_a_voucher_used_offline_before_it_expired_counts_within_the_window(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    _coffee(engine, "K1", "2027-01-04", cups=5)  # a free coffee valid until 3 Feb 12:00
    _coffee(engine, "K2", "2027-01-05", cups=5, member="M-2")  # M-2's: until 4 Feb 12:00
    codes = dict(_rows(engine, select(tables.vouchers.c.member_id, tables.vouchers.c.code)))
    # The expire job of 4 February, 01:00, marks M-1's voucher expired.
    tick(engine, "2027-02-04T02:00:00+01:00")
    assert dict(_rows(engine, select(tables.vouchers.c.member_id,
                                     tables.vouchers.c.status))) == {
        "M-1": "expired", "M-2": "issued"}

    def use(member: str, made: str, sent: str) -> None:
        redeem(engine, RedemptionRequest.model_validate({
            "redemption_id": f"X-{member}", "member_id": member, "program_id": "sched-shop",
            "voucher": codes[member], "occurred_at": at(made)}), at(sent))

    # A till offline overnight sends M-1's use of 3 February 11:00 at 09:00 the next day:
    # within the default 24 hours, and made while the voucher was valid.
    use("M-1", "2027-02-03T11:00:00+01:00", "2027-02-04T09:00:00+01:00")
    # M-2's, made on the 4th at 11:00 and sent on the 6th, is too late to accept.
    with pytest.raises(RedemptionRejectedError, match="more than 24 hours"):
        use("M-2", "2027-02-04T11:00:00+01:00", "2027-02-06T09:00:00+01:00")
    assert dict(_rows(engine, select(tables.vouchers.c.member_id,
                                     tables.vouchers.c.status))) == {
        "M-1": "redeemed", "M-2": "issued"}  # no expire job has run since its end


def test_pending_points_activate_and_old_points_expire_on_schedule(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    _shop(engine, "P1", "2027-01-05T10:00:00+01:00", "42.00")

    def balance() -> tuple[int, int]:
        row = _rows(engine, select(tables.balances.c.points, tables.balances.c.pending))[0]
        return int(row.points), int(row.pending)

    tick(engine, "2027-01-19T09:30:00+01:00")  # 14 days are not over until 10:00
    assert balance() == (0, 42)
    tick(engine, "2027-01-19T10:30:00+01:00")  # the hourly activation at 10:00 ran
    assert balance() == (42, 0)
    lot = _rows(engine, select(tables.point_lots.c.activated_at))[0]
    assert lot.activated_at.astimezone(UTC) == datetime(2027, 1, 19, 9, 0, tzinfo=UTC)
    # Down for a week: the catch-up releases the points as of when their window ended.
    _shop(engine, "P2", "2027-01-06T10:00:00+01:00", "8.00")
    tick(engine, "2027-01-27T12:00:00+01:00")
    late = _rows(engine, select(tables.point_lots.c.activated_at).order_by(
        tables.point_lots.c.entry_id))[1]
    assert late.activated_at.astimezone(UTC) == datetime(2027, 1, 20, 9, 0, tzinfo=UTC)
    assert balance() == (50, 0)
    tick(engine, "2027-04-07T12:00:00+02:00")  # three months after earning: gone
    assert balance() == (0, 0)
    assert check_balances(engine).mismatches == []


def test_a_backwards_tick_is_refused_and_a_dry_run_writes_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    for n, day in enumerate(("2027-01-05", "2027-01-12", "2027-01-19")):
        _shop(engine, f"A{n}", day, "40.00")
    tick(engine, "2027-01-20T12:00:00+01:00")
    before = _state(engine)
    with pytest.raises(BackwardsTickError, match="cannot go back in time"):
        tick(engine, "2027-01-10T12:00:00+01:00")
    assert _state(engine) == before

    # A dry run reports what would happen up to March, and leaves everything as it was.
    dry = tick(engine, "2027-03-02T12:00:00+01:00", dry_run=True)
    assert dry.dry_run
    bonuses = [r for r in dry.runs if r.job == "period_bonuses" and r.counts["bonuses"]]
    assert [(r.fire.isoformat(), r.counts["bonuses"]) for r in bonuses] == [
        ("2027-02-01T01:30:00+00:00", 2)]
    assert _runs(dry, "review_tiers") == ["2027-02-01T02:00:00+00:00",
                                          "2027-03-01T02:00:00+00:00"]
    assert _state(engine) == before
    # Backwards is allowed on a dry run (it writes nothing).
    assert tick(engine, "2027-01-10T12:00:00+01:00", dry_run=True).runs == []
    # The real run then does what the dry run said.
    real = tick(engine, "2027-03-02T12:00:00+01:00")
    assert [(r.job, r.fire, r.counts) for r in real.runs] == [
        (r.job, r.fire, r.counts) for r in dry.runs]


@pytest.mark.parametrize("job", ["activate", "expire", "period_bonuses", "review_tiers",
                                 "notices"])
def test_a_tick_loads_the_catalog_once_and_each_job_runs_on_the_planners_version(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job: str
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    for n, day in enumerate(("2027-01-05", "2027-01-12", "2027-01-19")):
        _coffee(engine, f"C{n}", day)
    loads: list[str] = []
    real_load = programs.load_catalog

    def counted(conn: Connection) -> ProgramCatalog:
        loads.append("catalog")
        return real_load(conn)

    seen: list[tuple[str, tuple[int, ...]]] = []
    real = jobs.BY_NAME[job]

    class Watched(type(real)):  # type: ignore[misc]
        def run(self, conn: Connection, version: VersionInForce, due: jobs.Due,
                now: datetime) -> jobs.Outcome:
            seen.append((due.fire.isoformat(), tuple(v.id for v in due.versions)))
            return super().run(conn, version, due, now)

    for module in list(sys.modules.values()):  # wherever it was imported by name
        if module.__name__.startswith("loyalty_engine.") and getattr(
                module, "load_catalog", None) is real_load:
            monkeypatch.setattr(module, "load_catalog", counted)
    monkeypatch.setitem(jobs.BY_NAME, job, Watched())
    report = tick(engine, "2027-03-02T12:00:00+01:00", job=job)  # a catch-up of weeks
    assert report.failed == 0 and len(report.runs) >= 1
    assert loads == ["catalog"]  # the planner's one catalog; no job reloads it
    # Every run got the one version in force at its fire time, chosen by the planner.
    assert len(seen) == len(report.runs)
    [(version_id,)] = _rows(engine, select(tables.program_versions.c.id))
    assert {ids for _, ids in seen} == {(version_id,)}


def test_a_job_that_fails_is_recorded_held_back_and_retried_while_others_carry_on(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    for n, day in enumerate(("2027-01-05", "2027-01-12", "2027-01-19")):
        _shop(engine, f"A{n}", day, "40.00")
    real = jobs.BY_NAME["period_bonuses"]

    class Broken(jobs.PeriodBonuses):
        def run(self, *args: Any) -> Any:
            raise RuntimeError("the bonus service is down")

    monkeypatch.setitem(jobs.BY_NAME, "period_bonuses", Broken())
    report = tick(engine, "2027-02-03T12:00:00+01:00")
    failed = [r for r in report.runs if r.error is not None]
    # The first due fire time failed; later ones of the same job wait for it.
    assert [(r.job, r.fire.isoformat()) for r in failed] == [
        ("period_bonuses", "2027-01-02T01:30:00+00:00")]
    assert report.failed == 1
    assert _runs(report, "review_tiers") == ["2027-02-01T02:00:00+00:00"]  # carried on
    rows = _rows(engine, select(tables.job_failures))
    assert [(r.job, r.member_id, r.attempts, r.resolved_at) for r in rows] == [
        ("period_bonuses", "*", 1, None)]
    # A code and one sentence: an unexpected error's own text (which may hold anything)
    # is not stored; LOYALTY_DEBUG=1 logs it.
    assert rows[0].reason == ("internal_error: RuntimeError (run with LOYALTY_DEBUG=1 to log "
                              "the details)")

    # Still broken at the next tick: the same failure, a second attempt.
    tick(engine, "2027-02-03T13:00:00+01:00")
    assert [r.attempts for r in _rows(engine, select(tables.job_failures))] == [2]

    monkeypatch.setitem(jobs.BY_NAME, "period_bonuses", real)
    retried = tick(engine, "2027-02-03T14:00:00+01:00")
    again = _runs(retried, "period_bonuses")  # from the failed one on, every day, in order
    assert (len(again), again[0], again[-1]) == (
        33, "2027-01-02T01:30:00+00:00", "2027-02-03T01:30:00+00:00")
    assert [r.resolved_at is not None for r in _rows(engine, select(
        tables.job_failures))] == [True]
    ledger = tables.ledger_entries
    assert _rows(engine, select(func.count()).select_from(ledger).where(
        ledger.c.rule_id.in_(("third-visit", "big-month")))) == [(2,)]


def test_one_members_failed_review_is_recorded_and_retried_at_the_next_run(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2026-12-20T12:00:00+01:00")
    for member in ("M-1", "M-2", "M-3"):
        for n, day in enumerate(("2027-01-05", "2027-01-12", "2027-01-19")):
            _shop(engine, f"{member}-{n}", day, "10.00", member=member)
    real: Callable[..., Any] = standing.review_tier
    import loyalty_engine.services.tiers as tiers_service

    def fails_for_credit_of_m2(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("corrupt tier row")

    calls: list[str] = []

    def review_tier(ladder: Any, tier: str, held: Any, credit: int, day: Any,
                    enrolled: Any) -> Any:
        calls.append(tier)
        if len(calls) == 2:  # the second member reviewed (M-2: members go in id order)
            return fails_for_credit_of_m2()
        return real(ladder, tier, held, credit, day, enrolled)

    monkeypatch.setattr(tiers_service, "review_tier", review_tier)
    # Members are judged one by one (where a member can fail alone) when the set-based
    # path cannot take them; here, as if none could.
    monkeypatch.setattr(tiers_service, "shared_review", lambda *args: None)
    report = tick(engine, "2027-02-01T04:00:00+01:00", job="review_tiers")
    run = report.runs[-1]  # 1 February's (1 January's found nobody due yet)
    assert _runs(report, "review_tiers")[-1] == "2027-02-01T02:00:00+00:00"
    assert run.error is None
    assert run.counts["reviewed"] == 2
    assert run.member_failures == [("M-2", "2027-02-01", "internal_error: ValueError (run "
                                    "with LOYALTY_DEBUG=1 to log the details)")]
    failures = _rows(engine, select(tables.job_failures))
    assert [(f.member_id, f.failure_key, f.resolved_at) for f in failures] == [
        ("M-2", "2027-02-01", None)]
    reviewed = {r.member_id: r.reviewed_on for r in _rows(engine, select(tables.tier_status))}
    assert reviewed["M-1"].isoformat() == reviewed["M-3"].isoformat() == "2027-02-01"
    assert reviewed["M-2"] is None  # never reviewed: still due

    # Next month's run reviews M-2 for February first, then for March; resolved.
    monkeypatch.setattr(tiers_service, "review_tier", real)
    monkeypatch.undo()
    tick(engine, "2027-03-01T04:00:00+01:00", job="review_tiers")
    assert [h[0] for h in _history(engine, "M-2")] == ["review:2027-03-01"]
    assert _history(engine, "M-2") == _history(engine, "M-1")
    assert [f.resolved_at is not None for f in _rows(engine, select(
        tables.job_failures))] == [True]


def test_a_database_failure_is_stored_and_logged_as_one_sentence_without_sql_or_members(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    apply_text(engine, tmp_path, SHOP)
    tick(engine, "2027-01-01T12:00:00+01:00")
    members = [f"M-SECRET-{n:04d}" for n in range(200)]

    class DuplicateMembers(jobs.PeriodBonuses):
        def run(self, conn: Connection, *args: Any) -> Any:
            # A job whose SQL fails with a long statement naming many members.
            for _ in range(2):
                conn.execute(tables.members.insert(), [
                    {"member_id": m, "attributes": {}, "created_at": at("2027-01-01")}
                    for m in members])

    monkeypatch.setitem(jobs.BY_NAME, "period_bonuses", DuplicateMembers())
    with caplog.at_level("INFO", logger="loyalty.scheduler"):
        report = tick(engine, "2027-01-02T12:00:00+01:00", job="period_bonuses")
    [run] = [r for r in report.runs if r.error is not None]
    [row] = _rows(engine, select(tables.job_failures))
    for text in (run.error, row.reason, caplog.text):
        assert "M-SECRET" not in text and "INSERT" not in text.upper(), text[:500]
    assert row.reason.startswith("database_error: ") and "\n" not in row.reason
    assert len(row.reason) < 200 and len(caplog.text) < 1000, caplog.text
