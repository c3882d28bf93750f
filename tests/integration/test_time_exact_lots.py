"""Time-exact lots on both databases (issue 15 item 2): a lot whose expiry came by as_of is
not spendable, not shown as spendable and not activated, whether or not the expire step has
run; the step only records what already happened.

Lapse Shop: one point per euro, points expire 30 days after they were earned. A purchase
of 30.00 on 2 March 2027 earns 30 points that expire on 1 April; they are asked about on
5 April, before any expire step has run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from loyalty_engine.api.app import create_app
from loyalty_engine.domain.errors import RedemptionRejectedError
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.services.members import list_members, show_member
from loyalty_engine.services.points import StepResult, activate_pending, expire_points
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.redemptions import redeem
from tests.api_support import API_NOW, bearer, prepare
from tests.integration.walk import (
    GROCERY,
    apply_text,
    assert_ledger_exact,
    at,
    buy,
    points,
    state,
)

SHOP = """\
program: lapse-shop
name: Lapse Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
points:
  pending_days: {pending}
  expiry: {{after_days: 30}}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""
BASKET = [("BASKET", "groceries", "1", "30.00")]
ASKED = "2027-04-05"


def _shown(engine: Engine, when: str) -> list[tuple[str, int, int]]:
    balances: list[dict[str, Any]] = show_member(engine, "M-1", at(when))["balances"]
    return [(b["program_id"], b["points"], b["pending"]) for b in balances]


def _redeem(engine: Engine, rid: str, when: str, how_many: int) -> None:
    redeem(engine, RedemptionRequest(redemption_id=rid, member_id="M-1",
                                     program_id="lapse-shop", occurred_at=at(when),
                                     points=how_many), at(when))


def test_an_expired_lot_is_neither_spendable_nor_shown_before_the_step_runs(
    engine: Engine, tmp_path: Path,
) -> None:
    apply_text(engine, tmp_path, SHOP.format(pending=0))
    buy(engine, "T-1", "2027-03-02", BASKET)
    assert _shown(engine, "2027-03-31") == [("lapse-shop", 30, 0)]
    assert points(engine, "lapse-shop") == (30, 0)  # the cached row: nothing recorded yet
    # 5 April, the expire step not run: the member has nothing to spend and is shown so.
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    [line] = list_members(engine, as_of=at(ASKED)).rows
    assert line.balances == {"lapse-shop": (0, 0)}
    assert list_members(engine, as_of=at("2027-03-31")).rows[0].balances == {
        "lapse-shop": (30, 0)}
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(engine, "RD-1", ASKED, 1)
    before = state(engine)
    # The step records what already happened: the entry is dated at the expiry, and what
    # the member is shown does not change.
    assert expire_points(engine, at(ASKED)) == StepResult(1, 30, 1, {"lapse-shop": 30})
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    assert state(engine)["lots"] == [(lot, 0) for lot, _ in before["lots"]]
    assert points(engine, "lapse-shop") == (0, 0)
    assert_ledger_exact(engine)


def test_a_lot_that_expired_while_pending_is_not_activated_nor_shown(
    engine: Engine, tmp_path: Path,
) -> None:
    # Pending for 14 days (to 16 March), expired on 1 April; activation never ran by then.
    apply_text(engine, tmp_path, SHOP.format(pending=14))
    buy(engine, "T-1", "2027-03-02", BASKET)
    assert _shown(engine, "2027-03-10") == [("lapse-shop", 0, 30)]
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    assert activate_pending(engine, at(ASKED)) == StepResult(0, 0, 0)
    assert points(engine, "lapse-shop") == (0, 30)  # still pending: never spendable
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(engine, "RD-1", ASKED, 1)
    assert expire_points(engine, at(ASKED)) == StepResult(1, 30, 1, {"lapse-shop": 30})
    assert points(engine, "lapse-shop") == (0, 0)
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    assert_ledger_exact(engine)


def test_a_lot_activated_in_time_is_spendable_until_its_expiry(
    engine: Engine, tmp_path: Path,
) -> None:
    apply_text(engine, tmp_path, SHOP.format(pending=14))
    buy(engine, "T-1", "2027-03-02", BASKET)
    assert activate_pending(engine, at("2027-03-20")) == StepResult(1, 30, 1,
                                                                    {"lapse-shop": 30})
    _redeem(engine, "RD-1", "2027-03-25", 10)
    assert _shown(engine, "2027-03-31") == [("lapse-shop", 20, 0)]
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    with pytest.raises(RedemptionRejectedError, match="has 0 spendable points"):
        _redeem(engine, "RD-2", ASKED, 1)
    assert expire_points(engine, at(ASKED)) == StepResult(1, 20, 1, {"lapse-shop": 20})
    assert _shown(engine, ASKED) == [("lapse-shop", 0, 0)]
    assert_ledger_exact(engine)


def test_the_api_shows_no_expired_points_before_the_step_runs(engine: Engine) -> None:
    # Fresh Market: points lapse 12 months after they were earned. 100 points of 15 May
    # 2025 expired on 15 May 2026; the API's clock says 1 June 2026, no expire step run.
    apply_program_files(engine, [GROCERY], datetime(2025, 1, 1, tzinfo=UTC))
    buy(engine, "F1", "2025-05-15T12:00:00+02:00", [("BASKET", "groceries", "1", "100.00")],
        store="FM-01")
    keys = prepare(engine)  # the shipped programs (Fresh Market unchanged) and keys
    clock = [at("2026-05-14T12:00:00+02:00")]
    app = create_app(engine, clock=lambda: clock[0])
    with TestClient(app) as client:
        def fresh_market() -> tuple[int, int]:
            answer = client.get("/v1/members/M-1", headers=bearer(keys.admin))
            assert answer.status_code == 200, answer.text
            [found] = [p for p in answer.json()["programs"] if p["program_id"] == "fresh-market"]
            return found["points"], found["pending"]

        def listed() -> list[dict[str, Any]]:
            answer = client.get("/v1/members", params={"program": "fresh-market"},
                                headers=bearer(keys.admin))
            assert answer.status_code == 200, answer.text
            [member] = answer.json()["members"]
            balances: list[dict[str, Any]] = member["balances"]
            return balances

        assert fresh_market() == (100, 0)
        assert listed() == [{"program_id": "fresh-market", "points": 100, "pending": 0}]
        clock[0] = API_NOW
        assert fresh_market() == (0, 0)
        assert listed() == [{"program_id": "fresh-market", "points": 0, "pending": 0}]
    assert points(engine, "fresh-market") == (100, 0)  # the cached row: nothing recorded
