"""The set-based tier review (records/tier_reviews.py) decides exactly as the
member-by-member one (services/tiers.py with engine/standing.review_tier): the same
members, stored state, history and events, for every downgrade policy and shared window,
over seeded random member states on both databases."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

import loyalty_engine.services.tiers as tiers_service
from loyalty_engine.services.tiers import review_tiers
from loyalty_engine.store import tables
from loyalty_engine.store.database import open_engine, write_transaction
from tests.conftest import _fresh_database

from .walk import apply_text

NOW = datetime(2027, 6, 1, tzinfo=UTC)
ZONE_NOTE = "Europe/Amsterdam"


def _program(window: str, policy: str) -> str:
    return f"""\
program: ladder
name: Ladder
currency: EUR
timezone: {ZONE_NOTE}
enrolment: open
tiers:
  measure: visits
  window: {window}
  downgrade: {policy}
  levels:
    - {{id: bronze, threshold: 1}}
    - {{id: silver, threshold: 5}}
    - {{id: gold, threshold: 10}}
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


@pytest.fixture
def other_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    (tmp_path / "other").mkdir()
    yield from _fresh_database(backend, tmp_path / "other", request, migrated=True)


def _members(seed: int, review_day: date, previous: date) -> list[dict[str, Any]]:
    """Member states around a review day: every tier (and none, and one the ladder
    dropped), holds before and after it, one or several reviews due or none, floors that
    end before it or last past it, upgrades since it, credit around the thresholds."""
    rng = random.Random(seed)
    found = []
    for n in range(80):
        enrolled = previous - timedelta(days=rng.randrange(0, 800))
        after = rng.choice([
            None, previous, previous + timedelta(days=rng.randrange(1, 25)),
            previous - timedelta(days=rng.randrange(1, 400)), review_day])
        manual = rng.random() < 0.15
        found.append({
            "member_id": f"M-{n:03d}",
            "tier": rng.choice(["", "bronze", "silver", "gold", "platinum"]),
            "held_until": rng.choice([None, review_day, review_day + timedelta(days=200),
                                      review_day - timedelta(days=30)]),
            "manual_tier": rng.choice(["silver", "gold"]) if manual else None,
            "manual_until": (datetime.combine(review_day, datetime.min.time(), UTC)
                             + timedelta(days=rng.choice([-40, -1, 1, 90])))
            if manual else None,
            "enrolled_on": enrolled,
            "reviewed_on": None if after is None or after < enrolled else after,
            "visits": {(review_day - timedelta(days=rng.randrange(1, 400))).isoformat():
                       rng.randrange(1, 4) for _ in range(rng.randrange(0, 8))},
            "moved": rng.random() < 0.1,
        })
    return found


def _load(engine: Engine, members: list[dict[str, Any]], review_day: date) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with write_transaction(engine) as conn:
        conn.execute(tables.members.insert(), [
            {"member_id": m["member_id"], "created_at": at, "attributes": {}}
            for m in members])
        conn.execute(tables.tier_status.insert(), [
            {"member_id": m["member_id"], "program_id": "ladder", "tier": m["tier"],
             "base_tier": m["tier"], "held_until": m["held_until"],
             "base_held_until": m["held_until"], "manual_tier": m["manual_tier"],
             "manual_until": m["manual_until"], "manual_reason": None,
             "enrolled_on": m["enrolled_on"], "reviewed_on": m["reviewed_on"],
             "updated_at": at} for m in members])
        conn.execute(tables.progress_counters.insert(), [
            {"member_id": m["member_id"], "program_id": "ladder", "counter": "*:visits",
             "period": day, "value": value}
            for m in members for day, value in m["visits"].items()])
        moved = [m for m in members if m["moved"]]
        if moved:
            conn.execute(tables.tier_history.insert(), [
                {"member_id": m["member_id"], "program_id": "ladder", "from_tier": m["tier"],
                 "to_tier": "gold", "reason": "upgrade",
                 "changed_at": datetime.combine(review_day, datetime.min.time(), UTC)
                 + timedelta(hours=5), "detail": {}, "ref": None} for m in moved])
            conn.execute(tables.tier_status.update().where(
                tables.tier_status.c.member_id.in_([m["member_id"] for m in moved])
            ).values(tier="gold"))


def _outcome(engine: Engine) -> dict[str, Any]:
    s, h, e = tables.tier_status, tables.tier_history, tables.member_events
    with engine.connect() as conn:
        return {
            "status": [tuple(r) for r in conn.execute(
                select(s.c.member_id, s.c.tier, s.c.base_tier, s.c.held_until,
                       s.c.base_held_until, s.c.manual_tier, s.c.manual_until,
                       s.c.reviewed_on).order_by(s.c.member_id))],
            "history": sorted((r.member_id, r.from_tier, r.to_tier, r.reason, r.ref,
                               str(sorted(r.detail.items())), r.changed_at.isoformat())
                              for r in conn.execute(select(h))),
            "events": sorted((r.key, r.kind, str(sorted(r.data.items())))
                             for r in conn.execute(select(e))),
        }


@pytest.mark.parametrize("policy", ["qualified", "one_level", "hold_next_period"])
@pytest.mark.parametrize("window", ["calendar_year", "{rolling_months: 3}"])
def test_the_set_based_review_decides_as_the_member_by_member_one(
    db_url: str, other_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    policy: str, window: str,
) -> None:
    if window == "calendar_year":
        review_day, previous = date(2027, 1, 1), date(2026, 1, 1)
        as_of = datetime(2027, 1, 1, 3, tzinfo=UTC)
    else:
        review_day, previous = date(2027, 3, 1), date(2027, 2, 1)
        as_of = datetime(2027, 3, 1, 3, tzinfo=UTC)
    members = _members(hash((policy, window)) & 0xFFFF, review_day, previous)
    outcomes = []
    reports = []
    for url, set_based in ((db_url, True), (other_url, False)):
        engine = open_engine(url)
        try:
            apply_text(engine, tmp_path, _program(window, policy))
            _load(engine, members, review_day)
            with monkeypatch.context() as patch:
                if not set_based:
                    patch.setattr(tiers_service, "shared_review", lambda *args: None)
                reports.append(review_tiers(engine, as_of, NOW).as_json())
            outcomes.append(_outcome(engine))
        finally:
            engine.dispose()
    fast, slow = outcomes
    assert fast["status"] == slow["status"]
    assert fast["history"] == slow["history"]
    assert fast["events"] == slow["events"]
    for key in ("reviewed", "upgraded", "downgraded", "held"):
        assert reports[0][key] == reports[1][key], key
    assert reports[0]["reviewed"]["ladder"] > 20  # the case is not empty


def _two_measures(window: str, policy: str, combine: str) -> str:
    return _program(window, policy).replace(
        "measure: visits", f"measure: {{{combine}: {{visits: visits, days: days}}}}").replace(
        "threshold: 1}", "thresholds: {visits: 1, days: 1}}").replace(
        "threshold: 5}", "thresholds: {visits: 5, days: 3}}").replace(
        "threshold: 10}", "thresholds: {visits: 10, days: 6}}")


def _load_days(engine: Engine, members: list[dict[str, Any]], seed: int) -> None:
    """Days counters on the members' visit days: 0 (every purchase refunded), 1 or 2."""
    rng = random.Random(seed)
    with write_transaction(engine) as conn:
        rows = [{"member_id": m["member_id"], "program_id": "ladder", "counter": "*:days",
                 "period": day, "value": rng.choice([0, 1, 1, 2])}
                for m in members for day in m["visits"]]
        if rows:
            conn.execute(tables.progress_counters.insert(), rows)


@pytest.mark.parametrize("combine", ["any", "all"])
@pytest.mark.parametrize("policy", ["qualified", "one_level", "hold_next_period"])
@pytest.mark.parametrize("window", ["calendar_year", "{rolling_months: 3, review: quarterly}"])
def test_the_set_based_review_of_two_measures_decides_as_the_member_by_member_one(
    db_url: str, other_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    policy: str, window: str, combine: str,
) -> None:
    if window == "calendar_year":
        review_day, previous = date(2027, 1, 1), date(2026, 1, 1)
    else:  # quarterly: 1 April follows 1 January
        review_day, previous = date(2027, 4, 1), date(2027, 1, 1)
    as_of = datetime.combine(review_day, datetime.min.time(), UTC) + timedelta(hours=3)
    seed = hash((policy, window, combine)) & 0xFFFF
    members = _members(seed, review_day, previous)
    outcomes, reports = [], []
    for url, set_based in ((db_url, True), (other_url, False)):
        engine = open_engine(url)
        try:
            apply_text(engine, tmp_path, _two_measures(window, policy, combine))
            _load(engine, members, review_day)
            _load_days(engine, members, seed)
            with monkeypatch.context() as patch:
                if not set_based:
                    patch.setattr(tiers_service, "shared_review", lambda *args: None)
                reports.append(review_tiers(engine, as_of, NOW).as_json())
            outcomes.append(_outcome(engine))
        finally:
            engine.dispose()
    fast, slow = outcomes
    assert fast["status"] == slow["status"]
    assert fast["history"] == slow["history"]
    assert fast["events"] == slow["events"]
    for key in ("reviewed", "upgraded", "downgraded", "held"):
        assert reports[0][key] == reports[1][key], key
    assert reports[0]["reviewed"]["ladder"] > 20
    assert reports[0]["review_days"]["ladder"][-1] == review_day.isoformat()
