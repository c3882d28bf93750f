"""The two expiry policies of issue 16 item 3, time-exact on both databases: points gone "at
the end of the sixth month" after earning, and the whole balance gone after N months without
activity. From the instant, nothing is spendable nor shown (members show, the member list,
the API), whether or not the expire step has run; the step only records what happened (an
entry per lot dated at the instant, a member event) and a second run records nothing.

Amsterdam is UTC+1 in winter, UTC+2 in summer. A bare date in these tests is noon +01:00
(walk.at), which in summer is 13:00 local.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from loyalty_engine.api.app import create_app
from loyalty_engine.domain.errors import ProgramApplyError, RedemptionRejectedError
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.importing import import_purchases
from loyalty_engine.services.members import list_members, show_member
from loyalty_engine.services.notices import send_notices
from loyalty_engine.services.outbox import list_events
from loyalty_engine.services.points import StepResult, activate_pending, expire_points
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_transaction
from tests.api_support import bearer, prepare
from tests.integration.walk import apply_text, assert_ledger_exact, at, buy, points, spend

PROGRAM = """\
program: {program}
name: Expiry Shop
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
NOW = datetime(2027, 6, 1, tzinfo=UTC)


def _apply(engine: Engine, tmp_path: Path, program: str, expiry: str, pending: int = 0) -> None:
    apply_text(engine, tmp_path, PROGRAM.format(program=program, expiry=expiry,
                                                pending=pending))


def _basket(euros: str) -> list[tuple[str, str, str, str]]:
    return [("BASKET", "groceries", "1", euros)]


def _shown(engine: Engine, when: str, member: str = "M-1") -> list[tuple[str, int, int]]:
    balances: list[dict[str, Any]] = show_member(engine, member, at(when))["balances"]
    return [(b["program_id"], b["points"], b["pending"]) for b in balances]


def _expiries(engine: Engine) -> list[tuple[str, int, datetime, bool]]:
    """Expire entries: (member, points, dated, by inactivity)."""
    e = tables.ledger_entries
    with read_transaction(engine) as conn:
        return [(r.member_id, r.points, r.occurred_at.astimezone(UTC),
                 bool(r.reason.get("inactive")))
                for r in conn.execute(select(e.c.member_id, e.c.points, e.c.occurred_at,
                                             e.c.reason)
                                      .where(e.c.kind == "expire").order_by(e.c.id))]


def _events(engine: Engine, *kinds: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e["kind"], e["member_id"], e["data"]) for e in list_events(engine, 0, 1000)
            if e["kind"] in kinds]


# --- "the end of the sixth month" ------------------------------------------------------------

def test_points_last_to_the_end_of_the_sixth_month_and_no_longer(
    engine: Engine, tmp_path: Path,
) -> None:
    _apply(engine, tmp_path, "half-year", "{after_months: 6, then: end_of_month}")
    # 15 January 2027, 12:00 CET: 30 points. Six months run out on 15 July; they last to
    # the end of July: gone from 1 August 00:00 CEST = 31 July 22:00 UTC.
    buy(engine, "T-1", "2027-01-15", _basket("30.00"))
    notices = send_notices(engine, at("2027-07-10T09:00:00+02:00"), NOW, days=30)
    assert notices.recorded == {"points_expiring_soon": 1}
    assert _events(engine, "points_expiring_soon") == [
        ("points_expiring_soon", "M-1",
         {"points": 30, "expires_at": "2027-07-31T22:00:00+00:00"})]
    spend(engine, "RD-1", "2027-07-31T20:00:00+02:00", "half-year", points=10)
    assert _shown(engine, "2027-07-31T23:59:00+02:00") == [("half-year", 20, 0)]  # 30 - 10
    assert _shown(engine, "2027-08-01T00:00:00+02:00") == [("half-year", 0, 0)]
    assert list_members(engine, as_of=at("2027-08-01T00:00:00+02:00")).rows[0].balances == {
        "half-year": (0, 0)}
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        spend(engine, "RD-2", "2027-08-01T00:30:00+02:00", "half-year", points=1)
    assert points(engine, "half-year") == (20, 0)  # nothing recorded yet
    assert expire_points(engine, at("2027-08-02")) == StepResult(1, 20, 1, {"half-year": 20})
    assert _expiries(engine) == [("M-1", -20, datetime(2027, 7, 31, 22, tzinfo=UTC), False)]
    assert points(engine, "half-year") == (0, 0)
    assert _shown(engine, "2027-08-02") == [("half-year", 0, 0)]
    assert expire_points(engine, at("2027-08-03")) == StepResult(0, 0, 0)
    assert_ledger_exact(engine)


# --- the whole balance after 12 months without activity -------------------------------------

IDLE = "{inactive_months: 12}"
# M-1: 40 points on 10 March 2025, 20 on 20 June, 10 redeemed on 1 September 2025 at 11:00
# UTC (13:00 CEST): the last activity. The balance, 40 + 20 - 10 = 50, lapses 12 months
# later at the same local time: 1 September 2026 13:00 CEST = 11:00 UTC.
LAPSE = datetime(2026, 9, 1, 11, tzinfo=UTC)


def _idle_year(engine: Engine, tmp_path: Path) -> None:
    _apply(engine, tmp_path, "idle-shop", IDLE)
    buy(engine, "T-1", "2025-03-10", _basket("40.00"))
    buy(engine, "T-2", "2025-06-20", _basket("20.00"))
    spend(engine, "RD-1", "2025-09-01", "idle-shop", points=10)
    # M-2 keeps shopping: 40 on 10 March 2025, 10 on 1 March 2026 (before 10 March 2026,
    # when 12 months without activity would have run out); nothing lapses.
    buy(engine, "T-21", "2025-03-10", _basket("40.00"), member="M-2")
    buy(engine, "T-22", "2026-03-01", _basket("10.00"), member="M-2")


def test_a_balance_lapses_after_months_without_activity_before_the_step_runs(
    engine: Engine, tmp_path: Path,
) -> None:
    _idle_year(engine, tmp_path)
    notices = send_notices(engine, at("2026-08-15"), NOW, days=30)
    assert notices.recorded == {"balance_lapsing_soon": 1}  # M-2's lapses in March 2027
    assert _events(engine, "balance_lapsing_soon") == [
        ("balance_lapsing_soon", "M-1",
         {"points": 50, "lapses_at": "2026-09-01T11:00:00+00:00"})]
    assert _shown(engine, "2026-09-01T12:59:00+02:00") == [("idle-shop", 50, 0)]
    assert _shown(engine, "2026-09-01T13:00:00+02:00") == [("idle-shop", 0, 0)]
    assert _shown(engine, "2026-09-01T13:00:00+02:00", "M-2") == [("idle-shop", 50, 0)]
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        spend(engine, "RD-2", "2026-09-02", "idle-shop", points=1)
    # New activity after the instant: 15 new points; the 50 do not come back.
    buy(engine, "T-3", "2026-10-05", _basket("15.00"))
    assert _shown(engine, "2026-10-06") == [("idle-shop", 15, 0)]
    listed = {r.member_id: r.balances for r in list_members(engine, as_of=at("2026-10-06")).rows}
    assert listed == {"M-1": {"idle-shop": (15, 0)}, "M-2": {"idle-shop": (50, 0)}}
    assert points(engine, "idle-shop") == (65, 0)  # the cached row: 50 + 15, nothing recorded

    keys = prepare(engine)
    app = create_app(engine, clock=lambda: at("2026-10-06"))
    with TestClient(app) as client:
        answer = client.get("/v1/members/M-1", headers=bearer(keys.admin))
        assert answer.status_code == 200, answer.text
        [idle] = [p for p in answer.json()["programs"] if p["program_id"] == "idle-shop"]
        assert (idle["points"], idle["pending"]) == (15, 0)

    # The step records it: the two old lots (40 - 10 = 30 and 20) dated at the lapse.
    done = expire_due(engine, at("2026-10-06"), NOW)
    assert done.points == StepResult(2, 50, 1, {"idle-shop": 50},
                                     {("M-1", "idle-shop", LAPSE): 50})
    assert _expiries(engine) == [("M-1", -30, LAPSE, True), ("M-1", -20, LAPSE, True)]
    assert _events(engine, "balance_lapsed") == [
        ("balance_lapsed", "M-1", {"points": 50, "lapsed_at": "2026-09-01T11:00:00+00:00"})]
    assert points(engine, "idle-shop") == (15, 0)
    assert _shown(engine, "2026-10-06") == [("idle-shop", 15, 0)]
    assert expire_due(engine, at("2026-10-07"), NOW).points == StepResult(0, 0, 0)
    # The 15 points of 5 October 2026 (13:00 CEST) lapse 12 months later in their turn.
    assert _shown(engine, "2027-10-05T12:59:00+02:00") == [("idle-shop", 15, 0)]
    assert _shown(engine, "2027-10-05T13:00:00+02:00") == [("idle-shop", 0, 0)]
    assert_ledger_exact(engine)


def test_a_balance_lapsed_and_recorded_before_new_activity_stays_lapsed(
    engine: Engine, tmp_path: Path,
) -> None:
    _idle_year(engine, tmp_path)
    done = expire_due(engine, at("2026-09-02"), NOW)
    assert done.points == StepResult(2, 50, 1, {"idle-shop": 50},
                                     {("M-1", "idle-shop", LAPSE): 50})
    assert points(engine, "idle-shop") == (0, 0)
    assert points(engine, "idle-shop", "M-2") == (50, 0)  # active: untouched
    buy(engine, "T-3", "2026-10-05", _basket("15.00"))
    assert _shown(engine, "2026-10-06") == [("idle-shop", 15, 0)]
    assert expire_due(engine, at("2026-10-06"), NOW).points == StepResult(0, 0, 0)
    assert points(engine, "idle-shop") == (15, 0)
    assert len(_events(engine, "balance_lapsed")) == 1
    assert_ledger_exact(engine)


def test_pending_points_lapse_with_the_balance_and_are_never_activated(
    engine: Engine, tmp_path: Path,
) -> None:
    # 40 points on 10 March 2025, pending 14 days; no activation ran. 12 months without
    # activity run out on 10 March 2026 12:00 CET: the pending lot lapses with the balance.
    _apply(engine, tmp_path, "idle-shop", IDLE, pending=14)
    buy(engine, "T-1", "2025-03-10", _basket("40.00"))
    assert _shown(engine, "2025-03-20") == [("idle-shop", 0, 40)]
    assert _shown(engine, "2026-03-10T11:59:00+01:00") == [("idle-shop", 0, 40)]
    assert _shown(engine, "2026-03-10T12:00:00+01:00") == [("idle-shop", 0, 0)]
    assert activate_pending(engine, at("2026-03-11")) == StepResult(0, 0, 0)
    assert expire_points(engine, at("2026-03-11")).lots == 1
    assert points(engine, "idle-shop") == (0, 0)
    assert_ledger_exact(engine)


def test_inactivity_can_come_before_a_lots_own_expiry(engine: Engine, tmp_path: Path) -> None:
    # Both policies: 30 points on 15 January 2027 (their own expiry: end of July) and 10 on
    # 1 March (end of September). 3 months without activity after 1 March 12:00 CET run out
    # on 1 June 12:00 CEST = 10:00 UTC, before either: both lots go then.
    _apply(engine, tmp_path, "both-ways",
           "{after_months: 6, then: end_of_month, inactive_months: 3}")
    buy(engine, "T-1", "2027-01-15", _basket("30.00"))
    buy(engine, "T-2", "2027-03-01", _basket("10.00"))
    assert _shown(engine, "2027-06-01T11:59:00+02:00") == [("both-ways", 40, 0)]
    assert _shown(engine, "2027-06-01T12:00:00+02:00") == [("both-ways", 0, 0)]
    lapse = datetime(2027, 6, 1, 10, tzinfo=UTC)
    assert expire_points(engine, at("2027-06-02")) == StepResult(
        2, 40, 1, {"both-ways": 40}, {("M-1", "both-ways", lapse): 40})
    assert _expiries(engine) == [("M-1", -30, lapse, True), ("M-1", -10, lapse, True)]
    assert_ledger_exact(engine)


def test_an_import_spanning_a_lapse_records_it_within_the_file(
    engine: Engine, tmp_path: Path,
) -> None:
    # One file, one transaction, balances written at its end: 40 points on 10 March 2025
    # 12:00 CET, then nothing for 12 months (the balance lapses 10 March 2026 12:00 CET =
    # 11:00 UTC), then 15 points on 1 April 2026. Only the 15 are left.
    _apply(engine, tmp_path, "idle-shop", IDLE)
    lines = [{"transaction_id": tid, "store_id": "AMS-01", "member_id": "M-1",
              "occurred_at": when, "currency": "EUR", "total": euros,
              "items": [{"sku": "BASKET", "category": "groceries", "quantity": "1",
                         "unit_price": euros}]}
             for tid, when, euros in (("I-1", "2025-03-10T12:00:00+01:00", "40.00"),
                                      ("I-2", "2026-04-01T12:00:00+02:00", "15.00"))]
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert import_purchases(engine, path, NOW).recorded == 2
    assert points(engine, "idle-shop") == (55, 0)  # the cached row: 40 + 15
    assert _shown(engine, "2026-04-02") == [("idle-shop", 15, 0)]
    lapse = datetime(2026, 3, 10, 11, tzinfo=UTC)
    assert expire_points(engine, at("2026-04-02")) == StepResult(
        1, 40, 1, {"idle-shop": 40}, {("M-1", "idle-shop", lapse): 40})
    assert points(engine, "idle-shop") == (15, 0)
    assert_ledger_exact(engine)


@pytest.mark.parametrize(("effective", "asked", "expected"), [
    # Dropped on 1 June 2025, before the deadline (10 March 2026): the 40 points stay.
    ("2025-06-01", "2026-04-01", 40),
    # Dropped on 1 June 2026, after it: the balance had lapsed under the old rules.
    ("2026-06-01", "2026-07-01", 0),
])
def test_dropping_inactive_months_ends_the_deadlines_still_ahead(
    engine: Engine, tmp_path: Path, effective: str, asked: str, expected: int,
) -> None:
    _apply(engine, tmp_path, "idle-shop", IDLE)
    buy(engine, "T-1", "2025-03-10", _basket("40.00"))  # lapses 10 March 2026 without more
    path = tmp_path / "idle-shop-v2.yaml"
    path.write_text(PROGRAM.format(program="idle-shop", expiry="never", pending=0),
                    encoding="utf-8")
    [applied] = apply_program_files(engine, [path], NOW, at(effective))
    assert (applied.version, applied.created) == (2, True)
    assert _shown(engine, asked) == [("idle-shop", expected, 0)]
    assert expire_points(engine, at(asked)).points == 40 - expected
    assert points(engine, "idle-shop") == (expected, 0)
    assert_ledger_exact(engine)


def test_dropping_inactive_months_from_a_later_date_is_refused(
        engine: Engine, tmp_path: Path) -> None:
    # Dropped from 1 July 2027 while it is 1 June: purchases under version 1 until then
    # would write deadlines that outlive it (a balance lapsing under version 2, which has no
    # inactivity expiry). Such a version must take effect now; nothing is stored.
    _apply(engine, tmp_path, "idle-shop", IDLE)
    buy(engine, "T-1", "2027-03-10", _basket("40.00"))  # lapses 10 March 2028 without more
    path = tmp_path / "idle-shop-v2.yaml"
    path.write_text(PROGRAM.format(program="idle-shop", expiry="never", pending=0),
                    encoding="utf-8")
    with pytest.raises(ProgramApplyError, match=r"drops inactive_months.*take effect now"):
        apply_program_files(engine, [path], NOW, at("2027-07-01"))
    with read_transaction(engine) as conn:
        versions = conn.execute(select(tables.program_versions.c.version).where(
            tables.program_versions.c.program_id == "idle-shop")).scalars().all()
    assert versions == [1]
    [applied] = apply_program_files(engine, [path], NOW)  # from now: taken
    assert (applied.version, applied.created) == (2, True)
    assert _shown(engine, "2028-04-01") == [("idle-shop", 40, 0)]
