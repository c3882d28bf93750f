"""A pos key acts only inside its stores' programs (issue 14, item 1), on both databases:
the purchase a refund names, the program of a redemption or an enrolment, a redemption
reversed, a member's data and ledger — 403 otherwise, and nothing written."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from loyalty_engine.services.apikeys import create_api_key
from loyalty_engine.services.points import activate_pending
from tests.api_support import API_NOW, bearer, purchase
from tests.integration.conftest import Api
from tests.integration.test_api import _counts, nothing_written


def _grocery(transaction_id: str, member_id: str = "M-1") -> dict[str, Any]:
    return purchase(transaction_id, member_id, store_id="FM-01", unit_price="25.00",
                    quantity="1", sku="SHOP", category="groceries")


@pytest.fixture
def fm(api: Api) -> str:
    """A till of Fresh Market (stores FM-*), a chain of its own."""
    return create_api_key(api.engine, "till-fm", "pos", ["FM-*"], API_NOW)[1]


def _forbidden(response: httpx2.Response, kind: str, *fragments: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["type"].endswith(kind) and response.headers["content-type"] == \
        "application/problem+json", body
    for fragment in fragments:
        assert fragment in body["detail"], body


def _as_admin(api: Api, path: str, body: Any) -> httpx2.Response:
    done = api.client.post(path, json=body, headers=bearer(api.keys.admin))
    assert done.status_code in (200, 201), done.text
    return done


def test_a_refund_is_checked_on_the_purchase_it_refunds_not_only_its_own_store(
        api: Api, fm: str) -> None:
    _as_admin(api, "/v1/purchases", _grocery("G-1"))
    refund = {"refund_id": "R-1", "store_id": "AMS-01", "original_store_id": "FM-01",
              "original_transaction_id": "G-1", "occurred_at": "2026-05-31T10:00:00+02:00",
              "amount": "25.00"}
    with nothing_written(api):
        _forbidden(api.client.post("/v1/refunds", json=refund, headers=bearer(api.keys.ams)),
                   "forbidden-store", "'FM-01'")
    # Fresh Market's own till may, at its own store.
    own = api.client.post("/v1/refunds", json={**refund, "store_id": "FM-01"},
                          headers=bearer(fm))
    assert own.status_code == 201, own.text


def test_a_pos_key_redeems_and_reverses_only_in_its_programs(api: Api, fm: str) -> None:
    _as_admin(api, "/v1/purchases", purchase("T-1", occurred_at="2026-04-01T09:30:00+02:00",
                                              unit_price="50.00", quantity="1"))
    activate_pending(api.engine, API_NOW)  # its 50 points become spendable
    redemption = {"redemption_id": "RD-1", "member_id": "M-1", "program_id": "bean-there",
                  "occurred_at": "2026-06-01T11:00:00+02:00", "points": 10}
    with nothing_written(api):
        _forbidden(api.client.post("/v1/redemptions", json=redemption, headers=bearer(fm)),
                   "forbidden-program", "'till-fm'", "'bean-there'")
    # The coffee chain's Utrecht till takes part in Bean There: it may.
    done = api.client.post("/v1/redemptions", json=redemption, headers=bearer(api.keys.utr))
    assert done.status_code == 201, done.text
    with nothing_written(api):
        _forbidden(api.client.post("/v1/redemptions/RD-1/reverse", headers=bearer(fm)),
                   "forbidden-program", "'bean-there'")
    back = api.client.post("/v1/redemptions/RD-1/reverse", headers=bearer(api.keys.ams))
    assert back.status_code == 200 and back.json()["reversed"] is True, back.text
    # An unknown redemption is still 404, whoever asks.
    assert api.client.post("/v1/redemptions/NOPE/reverse",
                           headers=bearer(fm)).status_code == 404


def test_a_pos_key_reads_only_its_programs_of_a_member(api: Api, fm: str) -> None:
    _as_admin(api, "/v1/purchases", purchase("T-1"))            # M-1: Bean There only
    for path in ("/v1/members/M-1", "/v1/members/M-1/ledger"):
        _forbidden(api.client.get(path, headers=bearer(fm)), "forbidden-member", "'M-1'")
    _as_admin(api, "/v1/purchases", _grocery("G-1"))            # now Fresh Market too
    seen = api.client.get("/v1/members/M-1", headers=bearer(fm))
    assert seen.status_code == 200, seen.text
    assert [p["program_id"] for p in seen.json()["programs"]] == ["fresh-market"]
    assert [c["program_id"] for c in seen.json()["clubs"]] == []  # the Bean Club is not its
    ledger = api.client.get("/v1/members/M-1/ledger", headers=bearer(fm)).json()
    assert {e["program_id"] for e in ledger["entries"]} == {"fresh-market"}
    everything = api.client.get("/v1/members/M-1/ledger", headers=bearer(api.keys.admin))
    assert {e["program_id"] for e in everything.json()["entries"]} == {
        "bean-there", "fresh-market"}
    both = api.client.get("/v1/members/M-1", headers=bearer(api.keys.ams)).json()
    assert [p["program_id"] for p in both["programs"]] == ["bean-there"]


def test_a_pos_key_enrols_only_into_its_programs_and_only_its_members(
        api: Api, fm: str) -> None:
    with nothing_written(api):
        _forbidden(api.client.post("/v1/members", headers=bearer(fm), json={
            "member_id": "M-NEW", "program_id": "bean-there"}), "forbidden-program",
            "'bean-there'")
    made = api.client.post("/v1/members", headers=bearer(fm), json={
        "member_id": "M-NEW", "program_id": "fresh-market", "attributes": {"city": "Utrecht"}})
    assert made.status_code == 201, made.text
    _as_admin(api, "/v1/purchases", purchase("T-1", member_id="M-COFFEE"))
    before = _counts(api)
    _forbidden(api.client.post("/v1/members", headers=bearer(fm), json={
        "member_id": "M-COFFEE", "attributes": {"city": "Elsewhere"}}), "forbidden-member",
        "'M-COFFEE'")
    assert _counts(api) == before
