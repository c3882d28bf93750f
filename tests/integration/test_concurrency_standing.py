"""Two writers at once against tiers and clubs: an upgrade is recorded once, a review and
purchases of the same members interleave without losing either, and two membership
clocks raise one renewal charge per term.

On PostgreSQL the writers run side by side; on SQLite they queue on the write lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from loyalty_engine.services.clubs import advance_clubs, join_club
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.tiers import review_tiers, show_tiers
from loyalty_engine.store import tables
from tests.integration.test_concurrency import _run_together

from .walk import ROOT, apply_files, assert_ledger_exact, at, buy

BEAUTY = ROOT / "rules" / "glow-beauty.yaml"
WAREHOUSE = ROOT / "rules" / "big-box-warehouse.yaml"
NOW = datetime(2027, 6, 1, tzinfo=UTC)


def _history(engine: Engine, member: str) -> list[tuple[str, str, str]]:
    h = tables.tier_history
    with engine.connect() as conn:
        return [(r.from_tier, r.to_tier, r.reason) for r in conn.execute(
            select(h).where(h.c.member_id == member).order_by(h.c.id))]


def test_two_tills_crossing_a_threshold_upgrade_the_member_once(
    db_url: str, engine: Engine
) -> None:
    apply_files(engine, BEAUTY)
    # Eight purchases of 50 EUR in March: the seventh takes the year to 350 EUR (glow).
    days = [f"2026-03-{d:02d}" for d in range(2, 10)]
    serum = [("SERUM", "skincare", "1", "50.00")]

    def till(offset: int) -> Any:
        def post(e: Engine) -> None:
            for day in days[offset:] + days[:offset]:
                buy(e, f"GB-{day}", day, serum, member="M-1", store="GB-01")
        return post

    _run_together(db_url, [till(0), till(4)])
    assert _history(engine, "M-1") == [("", "blush", "enrolment"), ("blush", "glow", "upgrade")]
    (tier,) = show_tiers(engine, "M-1", at("2026-04-01"))
    assert (tier["tier"], tier["credit"]) == ("glow", 40000)
    assert_ledger_exact(engine)


def test_a_review_and_purchases_of_the_same_members_both_count(
    db_url: str, engine: Engine
) -> None:
    apply_files(engine, BEAUTY)
    members = [f"M-{n}" for n in range(20)]
    for member in members:  # glow in 2026 (400 EUR), so each has a 2027-01-01 review due
        buy(engine, f"GB-{member}-0", "2026-05-01", [("SERUM", "skincare", "1", "400.00")],
            member=member, store="GB-01")

    def shop(e: Engine) -> None:
        for member in members:  # 2027 purchases while the review runs
            buy(e, f"GB-{member}-1", "2027-01-02", [("SERUM", "skincare", "1", "10.00")],
                member=member, store="GB-01")

    def review(e: Engine) -> None:
        review_tiers(e, at("2027-01-02T00:00:00+01:00"), NOW)

    _run_together(db_url, [shop, review, review])
    h = tables.tier_history
    with engine.connect() as conn:
        reviews = conn.execute(select(func.count()).select_from(h)
                               .where(h.c.reason == "review")).scalar_one()
        reviewed = conn.execute(select(func.count()).select_from(tables.tier_status).where(
            tables.tier_status.c.reviewed_on.is_not(None))).scalar_one()
    # glow held through 2027: the review changes nobody, but records every member reviewed.
    assert reviews == 0 and reviewed == len(members)
    for member in members:
        (tier,) = show_tiers(engine, member, at("2027-01-03"))
        assert (tier["tier"], tier["credit"]) == ("glow", 1000), member  # 2027: 10 EUR
    assert_ledger_exact(engine)


def test_two_membership_clocks_raise_one_renewal_charge_per_term(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    apply_files(engine, WAREHOUSE)
    for n in range(10):
        joined = join_club(engine, f"M-{n}", "warehouse", at("2026-03-01"), NOW, level="basic")
        assert joined.charge is not None
        pay_charge(engine, joined.charge["charge_id"], at("2026-03-01"), NOW)

    def clock(e: Engine) -> None:
        advance_clubs(e, at("2027-02-15"), NOW)  # within 30 days of the term's end

    _run_together(db_url, [clock, clock])
    c = tables.fee_charges
    with engine.connect() as conn:
        renewals = conn.execute(select(c.c.member_id, func.count()).where(
            c.c.kind == "renewal").group_by(c.c.member_id)).all()
    assert sorted(renewals) == [(f"M-{n}", 1) for n in range(10)]
