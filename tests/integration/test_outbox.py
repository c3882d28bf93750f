"""The member events outbox: what tiers, clubs, fees and rebates record, once each, in a
stable shape a CRM can page through with `since` (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from loyalty_engine.services.clubs import advance_clubs, join_club
from loyalty_engine.services.enrolment import enrol_member
from loyalty_engine.services.fees import pay_charge
from loyalty_engine.services.groups import verify_member
from loyalty_engine.services.notices import send_notices
from loyalty_engine.services.outbox import list_events
from loyalty_engine.services.rebates import issue_rebates
from loyalty_engine.services.tiers import review_tiers

from .walk import GROCERY, ROOT, apply_files, at, buy, refund

BEAUTY = ROOT / "rules" / "glow-beauty.yaml"
WAREHOUSE = ROOT / "rules" / "big-box-warehouse.yaml"
NOW = datetime(2029, 1, 1, tzinfo=UTC)


def _kinds(engine: Engine, since: int = 0) -> list[tuple[str, str, dict[str, object]]]:
    return [(e["kind"], e["member_id"], e["data"]) for e in list_events(engine, since)]


def test_tier_moves_are_events_once_each(engine: Engine) -> None:
    apply_files(engine, BEAUTY)
    serum = [("SERUM", "skincare", "1", "400.00")]
    buy(engine, "B1", "2026-03-01", [("LIP", "makeup", "1", "20.00")], store="GB-01")
    buy(engine, "B2", "2026-04-01", serum, store="GB-01")  # 420 EUR: glow
    refund(engine, "R2", "B2", "2026-04-03", "400.00", store="GB-01")  # back to blush
    buy(engine, "B3", "2026-05-01", serum, store="GB-01")  # glow again
    review_tiers(engine, at("2028-01-02"), NOW)
    review_tiers(engine, at("2028-01-03"), NOW)  # again: nothing new
    hold = {"from": "blush", "to": "glow", "reason": "upgrade", "held_until": "2028-01-01"}
    assert _kinds(engine) == [
        ("tier_upgraded", "M-1", hold),
        ("tier_downgraded", "M-1", {"from": "glow", "to": "blush", "reason": "refund",
                                    "held_until": None}),
        ("tier_upgraded", "M-1", hold),
        # Status earned in 2026 held through 2027; nothing bought in 2027: blush in 2028.
        ("tier_downgraded", "M-1", {"from": "glow", "to": "blush", "reason": "review",
                                    "held_until": "2029-01-01"}),
    ]
    events = list_events(engine)
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert set(events[0]) == {"id", "kind", "member_id", "program_id", "occurred_at", "data"}
    # Paging: after the second id, the last two.
    assert [e["id"] for e in list_events(engine, since=events[1]["id"])] == [
        events[2]["id"], events[3]["id"]]


def test_fees_due_lapses_and_rewards_are_events(engine: Engine) -> None:
    apply_files(engine, WAREHOUSE, GROCERY)
    joined = join_club(engine, "M-1", "warehouse", at("2026-03-01"), NOW, level="basic")
    assert joined.charge is not None
    charge_id = joined.charge["charge_id"]
    pay_charge(engine, charge_id, at("2026-03-01"), NOW)
    # The renewal is raised 30 days before the term ends, then lapses after 30 days' grace.
    for day in ("2027-02-10", "2027-02-11", "2027-04-10"):
        advance_clubs(engine, at(day), NOW)
    buy(engine, "F1", "2026-06-01", [("SHOP", "groceries", "1", "500.00")], store="FM-01")
    issue_rebates(engine, at("2027-01-02"), NOW)
    issue_rebates(engine, at("2027-01-03"), NOW)
    kinds = [(kind, data.get("kind") or data.get("why") or data.get("voucher"))
             for kind, _, data in _kinds(engine)]
    # In the order they were recorded (the order the steps ran), each once.
    assert kinds == [
        ("fee_due", "join"),
        ("fee_due", "renewal"),
        ("membership_lapsed", "unpaid"),
        ("reward_issued", "fixed_amount"),
    ]
    (reward,) = [d for k, _, d in _kinds(engine) if k == "reward_issued"]
    assert (reward["amount_minor"], reward["currency"], reward["period"]) == (500, "EUR",
                                                                             "2026")


def test_advance_notices_are_recorded_once_each(engine: Engine) -> None:
    apply_files(engine, BEAUTY, GROCERY, ROOT / "rules" / "campus-books.yaml")
    # Glow reached in 2026 holds through 2027; nothing bought in 2027: drops on 1 Jan 2028.
    buy(engine, "B1", "2026-04-01", [("SERUM", "skincare", "1", "400.00")], store="GB-01")
    # Grocery points lapse 12 months after they were earned: 1 March 2027.
    buy(engine, "F1", "2026-03-01", [("SHOP", "groceries", "1", "80.00")], store="FM-01")
    enrol_member(engine, "S-1", {}, {}, at("2027-01-04"), NOW, program_id="campus-books")
    verify_member(engine, "S-1", "students", at("2027-03-31T00:00:00+02:00"), "card",
                  at("2027-01-05"), NOW)

    early = send_notices(engine, at("2027-01-10"), NOW, days=30)
    assert early.recorded == {}
    february = send_notices(engine, at("2027-02-10"), NOW, days=30)
    assert february.recorded == {"points_expiring_soon": 1}
    march = send_notices(engine, at("2027-03-05"), NOW, days=30)
    assert march.recorded == {"eligibility_expiring": 1}
    december = send_notices(engine, at("2027-12-10"), NOW, days=30)
    assert december.recorded == {"tier_will_downgrade": 1}
    assert send_notices(engine, at("2027-12-11"), NOW, days=30).recorded == {
        "tier_will_downgrade": 0}  # once per review
    notices = {kind: data for kind, _, data in _kinds(engine)}
    assert notices["points_expiring_soon"] == {
        "points": 80, "expires_at": "2027-03-01T11:00:00+00:00"}
    assert notices["eligibility_expiring"]["group"] == "students"
    warning = notices["tier_will_downgrade"]
    assert (warning["tier"], warning["would_drop_to"], warning["review_day"],
            warning["lacks"]) == ("glow", "blush", "2028-01-01", 35000)
