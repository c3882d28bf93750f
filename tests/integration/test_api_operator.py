"""The operator endpoints over HTTP on both databases: admin keys only, adjustments
idempotent and in the ledger, member search with a total, export and erasure."""

from __future__ import annotations

from typing import Any

from loyalty_engine.ledger.check import check_balances
from tests.api_support import bearer, purchase
from tests.integration.conftest import Api


def _adjustment(points: int = 50, **extra: Any) -> dict[str, Any]:
    return {"adjustment_id": "ADJ-1", "member_id": "M-1", "program_id": "bean-there",
            "points": points, "reason": "coffee spilt at the till", **extra}


def _seed(api: Api) -> None:
    done = api.client.post("/v1/purchases", json=purchase("T-1"), headers=bearer(api.keys.ams))
    assert done.status_code == 201, done.text


def test_an_adjustment_is_admin_only_idempotent_and_audited(api: Api) -> None:
    _seed(api)
    admin, pos = bearer(api.keys.admin), bearer(api.keys.ams)
    refused = api.client.post("/v1/adjustments", json=_adjustment(), headers=pos)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    first = api.client.post("/v1/adjustments", json=_adjustment(), headers=admin)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["points"], body["actor"], body["kind"]) == (50, "api:office", "goodwill")
    again = api.client.post("/v1/adjustments", json=_adjustment(), headers=admin)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == body
    conflict = api.client.post("/v1/adjustments", json=_adjustment(60), headers=admin)
    assert conflict.status_code == 409
    too_much = api.client.post("/v1/adjustments", json=_adjustment(
        -(body["balance"] + 1), adjustment_id="ADJ-2", kind="correction"), headers=admin)
    assert too_much.status_code == 422 and "below zero" in too_much.json()["detail"]
    blank = api.client.post("/v1/adjustments", json=_adjustment(reason=" ",
                                                                adjustment_id="ADJ-3"),
                            headers=admin)
    assert blank.status_code == 422
    assert check_balances(api.engine).mismatches == []
    export = api.client.get("/v1/members/M-1/export", headers=admin).json()
    assert [(r["actor"], r["reason"]) for r in export["tables"]["audit_records"]] == [
        ("api:office", "coffee spilt at the till")]
    ledger = api.client.get("/v1/members/M-1/ledger", headers=admin).json()
    assert "adjust" in {e["kind"] for e in ledger["entries"]}


def test_members_are_listed_with_search_sort_paging_and_a_total(api: Api) -> None:
    admin = bearer(api.keys.admin)
    for member in ("M-1", "M-2", "M-3"):
        api.client.post("/v1/purchases", json=purchase(f"T-{member}", member),
                        headers=bearer(api.keys.ams))
    api.client.post("/v1/members", json={"member_id": "M-2", "attributes": {
        "email": "bo@example.com"}}, headers=admin)
    assert api.client.get("/v1/members", headers=bearer(api.keys.ams)).status_code == 403
    page = api.client.get("/v1/members", params={"sort": "member_id:desc", "limit": 2,
                                                 "offset": 1}, headers=admin).json()
    assert (page["total"], [m["member_id"] for m in page["members"]]) == (3, ["M-2", "M-1"])
    assert page["members"][0]["balances"][0]["program_id"] == "bean-there"
    found = api.client.get("/v1/members", params={"search": "BO@"}, headers=admin).json()
    assert (found["total"], found["members"][0]["member_id"]) == (1, "M-2")
    bad = api.client.get("/v1/members", params={"sort": "points"}, headers=admin)
    assert bad.status_code == 422 and "needs a program" in bad.json()["detail"]


def test_erasure_over_http_keeps_the_books_and_refuses_the_id(api: Api) -> None:
    _seed(api)
    admin = bearer(api.keys.admin)
    api.client.post("/v1/members", json={"member_id": "M-1", "attributes": {
        "email": "m1@example.com"}, "consents": {"marketing": True}}, headers=admin)
    before = api.client.get("/v1/members/M-1", headers=admin).json()
    stored = api.client.get("/v1/members/M-1/export", headers=admin).json()["tables"]
    assert "m1@example.com" in stored["api_responses"][0]["body"]
    assert api.client.post("/v1/members/M-1/erase",
                           headers=bearer(api.keys.ams)).status_code == 403
    erased = api.client.post("/v1/members/M-1/erase", json={"reason": "ticket 17"},
                             headers=admin)
    assert erased.status_code == 200, erased.text
    assert erased.json()["removed"]["attributes"] == ["email"]
    replay = api.client.post("/v1/members/M-1/erase", json={"reason": "ticket 17"},
                             headers=admin)
    assert replay.json() == erased.json()
    after = api.client.get("/v1/members/M-1", headers=admin).json()
    assert after["programs"] == before["programs"]
    export = api.client.get("/v1/members/M-1/export", headers=admin).json()["tables"]
    assert export["members"][0]["attributes"] == {} and export["member_consents"] == []
    assert export["api_responses"] == [] and erased.json()["removed"]["stored_responses"] == 1
    again = api.client.post("/v1/members", json={"member_id": "M-1", "attributes": {
        "email": "new@example.com"}}, headers=admin)
    assert again.status_code == 422 and "erased" in again.json()["detail"]
    assert check_balances(api.engine).mismatches == []
    assert api.client.post("/v1/members/M-404/erase", headers=admin).status_code == 404
