"""The insights over HTTP, on both databases: a member's figures per program for a POS or CRM
screen (the snapshot in force at the instant asked, tenure, share of wallet, loyalty type),
only the programs a pos key reaches; the analytics reports with the same JSON as the CLI,
for admin keys only; and every mistake a problem document.

Hand-worked (Bean There, Europe/Amsterdam, quintiles over its two purchasing members): M-1
buys on 4, 11 and 18 May 2026, M-2 once on 2 May. Quintile scores rank members from worst to
best and give position p of n the score floor(5p/n) + 1: with two members, 1 and 3. The
snapshot of 20 May: M-1 the better on all three (2 days back, 3 purchases, 21.60), R3 F3 M3
= need_attention; M-2 R1 F1 M1 = lost. M-2 buys again on 25 May; the snapshot of 27 May
finds M-2 the more recent (2 days against 9): R3, F still 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyalty_engine.domain.plain_json import dumps
from loyalty_engine.services.analytics_members import member_summaries, rfm_grid, take_snapshot
from loyalty_engine.services.wallet import import_wallet
from loyalty_engine.store.database import write_transaction
from tests.api_support import bearer, purchase
from tests.integration.conftest import Api

FIRST_SNAPSHOT = datetime(2026, 5, 20, 3, 0, tzinfo=UTC)
SECOND_SNAPSHOT = datetime(2026, 5, 27, 3, 0, tzinfo=UTC)


def _post(api: Api, transaction_id: str, member: str, when: str) -> None:
    done = api.client.post("/v1/purchases", json=purchase(transaction_id, member,
                                                          occurred_at=when),
                           headers=bearer(api.keys.admin))
    assert done.status_code == 201, done.text


def _history(api: Api) -> None:
    for n, day in enumerate(("04", "11", "18"), start=1):
        _post(api, f"A{n}", "M-1", f"2026-05-{day}T09:00:00+02:00")
    _post(api, "B1", "M-2", "2026-05-02T09:00:00+02:00")
    take_snapshot(api.engine, "bean-there", FIRST_SNAPSHOT, FIRST_SNAPSHOT.date())
    _post(api, "B2", "M-2", "2026-05-25T09:00:00+02:00")
    take_snapshot(api.engine, "bean-there", SECOND_SNAPSHOT, SECOND_SNAPSHOT.date())


def _insights(api: Api, member: str, as_of: str | None = None,
              key: str | None = None) -> Any:
    query = {} if as_of is None else {"as_of": as_of}
    return api.client.get(f"/v1/members/{member}/insights", params=query,
                          headers=bearer(key or api.keys.admin))


def _bean(found: Any) -> dict[str, Any]:
    [program] = [p for p in found.json()["programs"] if p["program_id"] == "bean-there"]
    return program


def test_a_members_insights_follow_the_snapshot_in_force(api: Api) -> None:
    _history(api)
    # Before any snapshot: no segment, no scores; tenure from the enrolment of 4 May.
    early = _bean(_insights(api, "M-1", "2026-05-19T12:00:00+02:00"))
    assert (early["segment"], early["rfm"], early["clv"], early["p_alive"]) == (
        None, None, None, None)
    assert early["tenure_days"] == 15  # 4 to 19 May
    # Between the snapshots: the first.
    between = _bean(_insights(api, "M-1", "2026-05-22T12:00:00+02:00"))
    assert between["snapshot_date"] == "2026-05-20"
    assert (between["rfm"]["r"], between["rfm"]["f"], between["segment"]) == (
        3, 3, "need_attention")
    assert between["rfm"]["recency_days"] == 2 and between["rfm"]["frequency"] == 3
    assert between["rfm"]["monetary"] == "21.60"  # three purchases of 2 x 3.60
    assert between["currency"] == "EUR"
    lost = _bean(_insights(api, "M-2", "2026-05-22T12:00:00+02:00"))
    assert (lost["rfm"]["r"], lost["rfm"]["f"], lost["segment"]) == (1, 1, "lost")
    # After the second: M-2 came back on 25 May, the more recent of the two.
    later = _bean(_insights(api, "M-2", "2026-05-28T12:00:00+02:00"))
    assert later["snapshot_date"] == "2026-05-27" and later["rfm"]["r"] == 3
    assert later["rfm"]["f"] == 1 and later["rfm"]["frequency"] == 2
    # CLV as the snapshot stored it: two members are too few for the models, so the simple
    # retention model gave a value and no P(alive).
    assert later["clv"] is not None and later["p_alive"] is None


def test_share_of_wallet_and_loyalty_type(api: Api, tmp_path: Path) -> None:
    _history(api)
    wallet = tmp_path / "wallet.csv"
    wallet.write_text("member_id,category,period,amount,currency\n"
                      "M-1,coffee,2026-05,43.20,EUR\n", encoding="utf-8")
    with write_transaction(api.engine) as conn:
        assert not import_wallet(conn, wallet, SECOND_SNAPSHOT).errors
    answer = {"kind": "nps", "score": 10, "answered_at": "2026-05-26T18:00:00+02:00"}
    assert api.client.post("/v1/members/M-1/surveys", json=answer,
                           headers=bearer(api.keys.admin)).status_code == 201
    found = _bean(_insights(api, "M-1", "2026-05-28T12:00:00+02:00"))
    # 21.60 of coffee at Bean There in May over 43.20 spent on coffee anywhere.
    assert found["share_of_wallet"] == 0.5
    assert found["nps"] == 10
    # An NPS of 10 (at least the default 9) but F 3, below the default 4: loyal in
    # attitude, not (yet) in behaviour, which is latent loyalty.
    assert found["loyalty_type"] == "latent"


def test_a_pos_key_sees_only_its_programs_and_mistakes_are_problems(api: Api) -> None:
    _history(api)
    glow = api.client.post("/v1/purchases", json=purchase(
        "G1", "M-1", store_id="GB-PARIS-01", sku="LIPSTICK", category="makeup",
        unit_price="24.00", quantity="1", occurred_at="2026-05-10T10:00:00+02:00"),
        headers=bearer(api.keys.admin))
    assert glow.status_code == 201, glow.text
    admin = {p["program_id"] for p in _insights(api, "M-1").json()["programs"]}
    till = {p["program_id"] for p in _insights(api, "M-1", key=api.keys.ams).json()["programs"]}
    assert {"bean-there", "glow-beauty"} <= admin
    assert "bean-there" in till and "glow-beauty" not in till
    missing = _insights(api, "M-NOBODY")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    naive = _insights(api, "M-1", "2026-05-28T12:00:00")
    assert naive.status_code == 422
    assert [e["field"] for e in naive.json()["errors"]] == ["as_of"], naive.text


def test_the_analytics_reports_are_the_clis_json_for_admin_keys(api: Api) -> None:
    _history(api)
    as_of = "2026-05-28T12:00:00+02:00"
    at = datetime.fromisoformat(as_of)

    def report(name: str, key: str | None = None, **query: Any) -> Any:
        return api.client.get(f"/v1/analytics/{name}",
                              params={"program": "bean-there", "as_of": as_of, **query},
                              headers=bearer(key or api.keys.admin))

    members = report("members", sort="first")
    assert members.status_code == 200, members.text
    # The same text the CLI's --json writes (domain/plain_json), read back.
    assert members.json() == json.loads(dumps(member_summaries(
        api.engine, "bean-there", at, sort="first").as_json()))
    assert report("rfm").json() == json.loads(dumps(rfm_grid(api.engine, "bean-there",
                                                             at).as_json()))
    for name in ("retention", "cohorts", "lapsed", "clv", "wallet", "loyalty-matrix"):
        answered = report(name)
        assert answered.status_code == 200, (name, answered.text)
        assert answered.json()["program"] == "bean-there", name
    forbidden = report("rfm", key=api.keys.ams)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert report("retention", period="fortnight").status_code == 422
    assert report("nonsense").status_code == 422
    early = api.client.get("/v1/analytics/rfm", params={
        "program": "bean-there", "as_of": "2026-01-01T00:00:00+01:00"},
        headers=bearer(api.keys.admin))
    assert early.status_code == 422 and "no purchases" in early.json()["detail"], early.text
    unknown = report("rfm", program="no-such-program")
    assert unknown.status_code in (404, 422), unknown.text
    assert unknown.headers["content-type"] == "application/problem+json"


def test_every_report_before_any_purchase_or_for_an_unknown_program_is_a_problem(
        api: Api) -> None:
    _history(api)
    for name in ("members", "rfm", "retention", "cohorts", "lapsed", "clv", "wallet",
                 "loyalty-matrix"):
        for program, as_of in (("bean-there", "2026-01-01T00:00:00+01:00"),
                               ("no-such-program", "2026-05-28T12:00:00+02:00")):
            answered = api.client.get(f"/v1/analytics/{name}",
                                      params={"program": program, "as_of": as_of},
                                      headers=bearer(api.keys.admin))
            # Figures of nothing may be empty reports, never a server error.
            assert answered.status_code in (200, 404, 422), (name, program, answered.text)
            if answered.status_code != 200:
                assert answered.headers["content-type"] == "application/problem+json", name
                assert answered.json()["detail"], (name, answered.text)
            else:
                assert program == "bean-there", (name, answered.text)
        naive = api.client.get(f"/v1/analytics/{name}", params={
            "program": "bean-there", "as_of": "2026-05-28T12:00:00"},
            headers=bearer(api.keys.admin))
        assert naive.status_code == 422, (name, naive.text)
        assert [e["field"] for e in naive.json()["errors"]] == ["as_of"], naive.text
