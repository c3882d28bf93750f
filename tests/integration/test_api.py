"""The POS HTTP API in-process over SQLite and PostgreSQL: every endpoint, idempotent
replays and conflicts, keys and scopes, and bad input answered with a problem document
that says what to change while nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from loyalty_engine.api.app import create_app
from loyalty_engine.services.apikeys import create_api_key, revoke_api_key
from loyalty_engine.services.clubs import join_club
from loyalty_engine.services.points import activate_pending
from tests.api_support import API_NOW, bearer, purchase
from tests.integration.conftest import Api

WRITTEN = ("members", "purchases", "purchase_items", "ledger_entries", "point_lots",
           "balances", "redemptions", "vouchers", "api_responses", "fee_charges",
           "member_consents")


def _counts(api: Api) -> dict[str, int]:
    with api.engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
                for t in WRITTEN}


@contextmanager
def nothing_written(api: Api) -> Iterator[None]:
    before = _counts(api)
    yield
    assert _counts(api) == before


def _problem(response: httpx2.Response, status: int, *fields: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and body["type"].startswith("urn:")
    if fields:
        assert [e["field"] for e in body["errors"]] == list(fields), body
    return body


def _post(api: Api, path: str, body: Any, token: str | None = None) -> httpx2.Response:
    return api.client.post(path, json=body, headers=bearer(token or api.keys.ams))


# --- purchases and idempotency ------------------------------------------------------------

def test_a_purchase_is_awarded_once_and_a_replay_returns_the_first_response(api: Api) -> None:
    first = _post(api, "/v1/purchases", purchase("T-1"))
    assert first.status_code == 201
    body = first.json()
    assert (body["member_id"], body["points"]) == ("M-1", {"bean-there": 7})
    assert body["awards"] == [{"program_id": "bean-there", "program_version": 1,
                               "rule_id": "points-per-euro", "points": 7}]
    assert "idempotent-replayed" not in first.headers
    # The same purchase written differently ("7.2" for "7.20", another offset) is a replay.
    same = purchase("T-1", unit_price="3.6", occurred_at="2026-05-30T07:30:00Z")
    again = _post(api, "/v1/purchases", same)
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert _counts(api)["ledger_entries"] == 1


def test_the_same_transaction_with_other_contents_is_a_conflict(api: Api) -> None:
    assert _post(api, "/v1/purchases", purchase("T-1")).status_code == 201
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", purchase("T-1", unit_price="3.70")), 409)
    assert "'T-1'" in body["detail"] and "different contents" in body["detail"]


def test_a_purchase_imported_before_is_answered_as_a_replay(api: Api) -> None:
    from loyalty_engine.domain.events import PurchaseEvent
    from loyalty_engine.services.purchases import record_purchase

    record_purchase(api.engine, PurchaseEvent.model_validate(purchase("T-9")), API_NOW)
    response = _post(api, "/v1/purchases", purchase("T-9"))
    assert response.status_code == 200 and response.headers["idempotent-replayed"] == "true"
    assert response.json()["points"] == {"bean-there": 7}
    assert _post(api, "/v1/purchases", purchase("T-9")).content == response.content


@pytest.mark.parametrize(("change", "status", "fields", "says"), [
    ({"total": "-7.20"}, 422, ["total"], "negative"),
    ({"total": "7.201"}, 422, ["total"], "decimals"),
    ({"occurred_at": "2026-05-30T09:30:00"}, 422, ["occurred_at"], "UTC offset"),
    ({"occurred_at": "2026-06-02T09:30:00+02:00"}, 422, ["occurred_at"], "in the future"),
    ({"total": 7.2}, 422, ["total"], "string"),
    ({"items": "FLAT-WHITE"}, 422, ["items"], "list"),
    ({"loyalty_card": "X"}, 422, ["loyalty_card"], "unknown field"),
    ({"total": "9.99"}, 422, [], "does not equal the sum"),
    ({"currency": "USD", "total": "7.20"}, 422, [], "currency USD does not match"),
    ({"tender": "apple"}, 422, ["tender"], "'card', 'app', 'cash', 'gift_card' or 'points'"),
    ({"channel": "phone"}, 422, ["channel"], "'store', 'web' or 'app'"),
])
def test_bad_purchases_say_what_to_change_and_write_nothing(
        api: Api, change: dict[str, Any], status: int, fields: list[str], says: str) -> None:
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", {**purchase("T-1"), **change}), status,
                        *fields)
    assert says in body["detail"], body


def test_item_errors_name_the_item_by_its_path(api: Api) -> None:
    bad = purchase("T-1")
    bad["items"][0]["unit_price"] = "3.605"
    bad["items"][0]["colour"] = "red"
    body = _problem(_post(api, "/v1/purchases", bad), 422, "items[0].colour")
    assert body["errors"][0]["pointer"] == "#/items/0/colour"
    del bad["items"][0]["colour"]
    body = _problem(_post(api, "/v1/purchases", bad), 422)
    assert "items[0].unit_price" in body["detail"] and "decimals" in body["detail"]


def test_malformed_json_and_other_media_types(api: Api) -> None:
    with nothing_written(api):
        broken = api.client.post("/v1/purchases", content=b'{"transaction_id": ',
                                 headers={**bearer(api.keys.ams),
                                          "content-type": "application/json"})
        assert "not valid JSON" in _problem(broken, 400)["detail"]
        form = api.client.post("/v1/purchases", content=b"a=1", headers={
            **bearer(api.keys.ams), "content-type": "application/x-www-form-urlencoded"})
        assert "Content-Type: application/json" in _problem(form, 415)["detail"]
        assert _problem(_post(api, "/v1/purchases", [purchase("T-1")]), 422)


def test_a_body_over_one_mebibyte_is_refused(api: Api) -> None:
    big = purchase("T-1")
    big["padding"] = "x" * (1024 * 1024)
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", big), 413)
    assert "1048576 bytes" in body["detail"]


# --- keys and scopes ----------------------------------------------------------------------

def test_no_key_a_bad_key_or_a_revoked_key_is_401(api: Api) -> None:
    with nothing_written(api):
        missing = api.client.post("/v1/purchases", json=purchase("T-1"))
        assert _problem(missing, 401)["detail"].startswith("send an API key")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        # The key is checked before the body: a caller without one learns nothing about it.
        assert _problem(api.client.post("/v1/purchases", content=b"{",
                                        headers={"content-type": "application/json"}), 401)
        wrong = api.keys.ams[:-3] + "xyz"
        assert "unknown or has been revoked" in _problem(
            _post(api, "/v1/purchases", purchase("T-1"), wrong), 401)["detail"]
        assert _problem(api.client.get("/v1/members/M-1",
                                       headers={"Authorization": "Basic dTpw"}), 401)
    revoke_api_key(api.engine, "till-ams", API_NOW)
    assert _problem(_post(api, "/v1/purchases", purchase("T-1")), 401)


def test_a_pos_key_writes_only_for_its_stores_and_pays_no_fees(api: Api) -> None:
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", purchase("T-1", store_id="UTR-02"),
                              api.keys.utr), 403)
        assert "'UTR-02'" in body["detail"] and "UTR-01" in body["detail"]
        refund = {"refund_id": "R-1", "store_id": "RTM-01", "original_transaction_id": "T-1",
                  "occurred_at": "2026-05-31T10:00:00+02:00", "amount": "1.00"}
        assert _problem(_post(api, "/v1/refunds", refund), 403)
        assert "admin API key" in _problem(_post(api, "/v1/fees/1/pay", {}), 403)["detail"]
    assert _post(api, "/v1/purchases", purchase("T-1", store_id="UTR-01"),
                 api.keys.utr).status_code == 201
    assert _post(api, "/v1/purchases", purchase("T-2", store_id="RTM-01"),
                 api.keys.admin).status_code == 201


# --- refunds ------------------------------------------------------------------------------

def _refund(refund_id: str, amount: str, transaction: str = "T-1") -> dict[str, Any]:
    return {"refund_id": refund_id, "store_id": "AMS-01",
            "original_transaction_id": transaction,
            "occurred_at": "2026-05-31T10:00:00+02:00", "amount": amount}


def test_a_refund_takes_back_its_share_once(api: Api) -> None:
    _post(api, "/v1/purchases", purchase("T-1", quantity="5", unit_price="4.00"))
    first = _post(api, "/v1/refunds", _refund("R-1", "8.00"))
    assert first.status_code == 201, first.text
    assert (first.json()["points"], first.json()["refunded_minor"]) == ({"bean-there": 8}, 800)
    again = _post(api, "/v1/refunds", _refund("R-1", "8.0"))
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    with nothing_written(api):
        _problem(_post(api, "/v1/refunds", _refund("R-1", "9.00")), 409)


def test_refunds_of_unknown_purchases_or_of_too_much_are_refused(api: Api) -> None:
    _post(api, "/v1/purchases", purchase("T-1"))
    with nothing_written(api):
        unknown = _problem(_post(api, "/v1/refunds", _refund("R-1", "1.00", "T-404")), 422)
        assert "T-404" in unknown["detail"]
        too_much = _problem(_post(api, "/v1/refunds", _refund("R-2", "7.21")), 422)
        assert "7.20" in too_much["detail"] or "720" in too_much["detail"], too_much
        _problem(_post(api, "/v1/refunds", _refund("R-3", "0")), 422)


# --- members ------------------------------------------------------------------------------

def test_enrol_a_member_with_attributes_and_consents(api: Api) -> None:
    body = {"member_id": "M-7", "program_id": "bean-there",
            "attributes": {"date_of_birth": "1990-05-17", "newsletter_issues": 3},
            "consents": {"marketing": True}}
    first = _post(api, "/v1/members", body)
    assert first.status_code == 201, first.text
    data = first.json()
    assert data["attributes"] == {"date_of_birth": "1990-05-17", "newsletter_issues": 3}
    assert [(c["flag"], c["given"]) for c in data["consents"]] == [("marketing", True)]
    again = _post(api, "/v1/members", body)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    # Another request for the same member is applied: a consent withdrawn, a second program.
    withdrawn = _post(api, "/v1/members", {**body, "consents": {"marketing": False}})
    assert withdrawn.status_code == 200, withdrawn.text
    assert [(c["flag"], c["given"]) for c in withdrawn.json()["consents"]] == [
        ("marketing", False)]
    second = _post(api, "/v1/members", {"member_id": "M-7", "program_id": "big-box"})
    assert second.status_code == 200, second.text
    assert _post(api, "/v1/members", body).content == first.content  # still a replay
    with nothing_written(api):
        _problem(_post(api, "/v1/members", {"member_id": "M-8", "program_id": "nope"}), 422,
                 "program_id")
        _problem(_post(api, "/v1/members", {"member_id": "M-8", "consents": {"No!": True}}),
                 422, "consents.No!.[key]")
    # A member a purchase made can still be given attributes: 200, not a new member.
    _post(api, "/v1/purchases", purchase("T-1", member_id="M-9"))
    later = _post(api, "/v1/members", {"member_id": "M-9", "attributes": {"tier": "x"}})
    assert later.status_code == 200 and later.json()["attributes"] == {"tier": "x"}


def test_a_member_at_a_glance(api: Api) -> None:
    for n in range(9):  # nine coffees fill the stamp card: a free-coffee voucher
        _post(api, "/v1/purchases", purchase(f"T-{n}", quantity="1", unit_price="3.00",
                                             occurred_at=f"2026-05-{10 + n}T09:30:00+02:00"))
    response = api.client.get("/v1/members/M-1", headers=bearer(api.keys.utr))
    assert response.status_code == 200
    member = response.json()
    [program] = member["programs"]
    # 3 points a coffee, double on Tuesday 12 May: pending for 14 days, none spendable yet.
    assert (program["program_id"], program["points"], program["pending"]) == (
        "bean-there", 0, 30)
    assert program["stamp_cards"][0]["stamps"] == 0
    assert [(v["program_id"], v["reward_id"]) for v in member["vouchers"]] == [
        ("bean-there", "free-coffee")]
    assert [c["club_id"] for c in member["clubs"]] == ["bean-club"]
    assert member["open_charges"] == []
    missing = api.client.get("/v1/members/M-404", headers=bearer(api.keys.ams))
    assert "'M-404'" in _problem(missing, 404)["detail"]


def test_tier_progress_and_open_fee_charges(api: Api) -> None:
    _post(api, "/v1/purchases", purchase("T-1", member_id="M-5", store_id="BB-01",
                                         category="groceries", sku="RICE"))
    joined = join_club(api.engine, "M-5", "warehouse", API_NOW, API_NOW, level="basic")
    assert joined.charge is not None
    member = api.client.get("/v1/members/M-5", headers=bearer(api.keys.ams)).json()
    charge_id = joined.charge["charge_id"]
    assert [c["charge_id"] for c in member["open_charges"]] == [charge_id]
    paid = _post(api, f"/v1/fees/{charge_id}/pay", {"reference": "PSP-1"}, api.keys.admin)
    assert paid.status_code == 200, paid.text
    assert paid.json()["charge"]["status"] == "paid"
    assert _post(api, f"/v1/fees/{charge_id}/pay", {"reference": "PSP-1"},
                 api.keys.admin).content == paid.content
    with nothing_written(api):
        _problem(_post(api, f"/v1/fees/{charge_id}/pay", {"reference": "PSP-2"},
                       api.keys.admin), 409)
        _problem(_post(api, "/v1/fees/999999/pay", {}, api.keys.admin), 404)
    after = api.client.get("/v1/members/M-5", headers=bearer(api.keys.ams)).json()
    assert after["open_charges"] == []


def test_the_ledger_a_page_at_a_time_with_reasons(api: Api) -> None:
    for n in range(5):
        _post(api, "/v1/purchases", purchase(f"T-{n}", occurred_at=f"2026-05-{10 + n}"
                                             "T09:30:00+02:00"))
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = api.client.get("/v1/members/M-1/ledger", params=params,
                              headers=bearer(api.keys.ams)).json()
        seen += [e["transaction_id"] for e in page["entries"]]
        assert all(e["reason"] and e["rule_id"] for e in page["entries"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"T-{n}" for n in range(5)]
    _problem(api.client.get("/v1/members/M-1/ledger", params={"limit": 0},
                            headers=bearer(api.keys.ams)), 422)


# --- redemptions --------------------------------------------------------------------------

def _spendable(api: Api, points_for: int = 3) -> None:
    """M-1 with spendable points: purchases in March, activated by June."""
    for n in range(points_for):
        _post(api, "/v1/purchases", purchase(f"T-{n}", quantity="10", unit_price="10.00",
                                             occurred_at=f"2026-03-0{n + 2}T09:30:00+01:00"))
    activate_pending(api.engine, datetime(2026, 5, 1, tzinfo=API_NOW.tzinfo))


def _redeem(redemption_id: str, **kind: Any) -> dict[str, Any]:
    return {"redemption_id": redemption_id, "member_id": "M-1", "program_id": "bean-there",
            "occurred_at": "2026-06-01T10:00:00+02:00", **kind}


def test_redeem_points_replay_and_reverse(api: Api) -> None:
    _spendable(api)
    member = api.client.get("/v1/members/M-1", headers=bearer(api.keys.ams)).json()
    spendable = member["programs"][0]["points"]
    assert spendable >= 300
    first = _post(api, "/v1/redemptions", _redeem("RD-1", points=150))
    assert first.status_code == 201, first.text
    assert (first.json()["kind"], first.json()["points"]) == ("points", 150)
    assert _post(api, "/v1/redemptions", _redeem("RD-1", points=150)).content == first.content
    with nothing_written(api):
        body = _problem(_post(api, "/v1/redemptions",
                              _redeem("RD-2", points=spendable - 149)), 422)
        assert str(spendable - 150) in body["detail"], body
        _problem(_post(api, "/v1/redemptions", _redeem("RD-1", points=10)), 409)
        _problem(_post(api, "/v1/redemptions", _redeem("RD-3", points=1, reward="x")), 422)
    reversed_ = _post(api, "/v1/redemptions/RD-1/reverse", None)
    assert reversed_.status_code == 200, reversed_.text
    assert (reversed_.json()["reversed"], reversed_.json()["restored"]) == (True, 150)
    assert _post(api, "/v1/redemptions/RD-1/reverse", None).content == reversed_.content
    _problem(_post(api, "/v1/redemptions/RD-404/reverse", None), 404)


def test_an_expired_voucher_cannot_be_used(api: Api) -> None:
    for n in range(9):  # the card fills on 2026-03-10: valid for 60 days
        _post(api, "/v1/purchases", purchase(f"T-{n}", quantity="1", unit_price="3.00",
                                             occurred_at=f"2026-03-0{n + 1}T09:30:00+01:00"))
    code = api.client.get("/v1/members/M-1/ledger", headers=bearer(api.keys.ams))
    assert code.status_code == 200
    with api.engine.connect() as conn:
        voucher = conn.execute(text("SELECT code FROM vouchers")).scalar_one()
    with nothing_written(api):
        body = _problem(_post(api, "/v1/redemptions", _redeem("RD-1", voucher=voucher)), 422)
    assert "expired" in body["detail"]
    # Dated back to when it was valid, ten weeks ago: far beyond the 24 hours a till may
    # take to send a redemption made offline.
    with nothing_written(api):
        body = _problem(_post(api, "/v1/redemptions", {
            **_redeem("RD-2", voucher=voucher), "occurred_at": "2026-03-20T10:00:00+01:00"}),
            422, "occurred_at")
    assert "more than 24 hours before the redemption is recorded" in body["detail"]


@contextmanager
def _client_at(api: Api, clock: list[datetime]) -> Iterator[TestClient]:
    """Another app on the same database whose clock reads clock[0]."""
    with TestClient(create_app(api.engine, clock=lambda: clock[0]),
                    raise_server_exceptions=False) as client:
        yield client


def test_a_redemption_dated_before_the_offline_window_is_a_422_naming_occurred_at(
    api: Api
) -> None:
    # Issue 14: a Fresh Market purchase of October 2025 (points lapse after 12 months),
    # redeemed in December 2026 dated September 2026. Before: 201, and the ledger spent
    # points that had expired on 15 October.
    token = create_api_key(api.engine, "till-fm", "pos", ["FM-*"], API_NOW)[1]
    clock = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    with _client_at(api, clock) as client:
        def post(path: str, body: dict[str, Any]) -> httpx2.Response:
            return client.post(path, json=body, headers=bearer(token))

        bought = post("/v1/purchases", purchase(
            "F-1", store_id="FM-01", occurred_at="2025-10-15T12:00:00+02:00",
            quantity="1", unit_price="100.00", sku="BASKET", category="groceries"))
        assert bought.status_code == 201, bought.text
        assert bought.json()["points"] == {"fresh-market": 100}
        late = {"redemption_id": "RD-FM", "member_id": "M-1", "program_id": "fresh-market",
                "occurred_at": "2026-09-15T10:00:00+02:00", "points": 50}
        with nothing_written(api):
            body = _problem(post("/v1/redemptions", late), 422, "occurred_at")
        assert body["type"] == "urn:loyalty-engine:problem:validation"
        assert body["errors"][0]["pointer"] == "#/occurred_at"
        assert body["detail"] == (
            "occurred_at 2026-09-15T10:00:00+02:00 is more than 24 hours before the "
            "redemption is recorded (2026-12-01T09:00:00+00:00), the longest program "
            "'fresh-market' waits for an offline till (redemptions.backdate_hours)")

        # Inside the window: made at 11:00 on the day the points lapse (noon), sent at
        # 13:00. The points had expired by the recording; no expire step has run.
        clock[0] = datetime(2026, 10, 15, 11, 0, tzinfo=UTC)  # 13:00 in Amsterdam
        offline = {**late, "occurred_at": "2026-10-15T11:00:00+02:00"}
        with nothing_written(api):
            body = _problem(post("/v1/redemptions", offline), 422)
        assert "has 0 spendable points" in body["detail"], body
        # Sent before noon, the same redemption spends them.
        clock[0] = datetime(2026, 10, 15, 9, 30, tzinfo=UTC)  # 11:30 in Amsterdam
        spent = post("/v1/redemptions", offline)
        assert spent.status_code == 201 and spent.json()["points"] == 50, spent.text


# --- health, readiness and the OpenAPI document -------------------------------------------

def test_health_and_readiness_need_no_key(api: Api) -> None:
    assert api.client.get("/v1/health").json() == {"status": "ok"}
    ready = api.client.get("/v1/ready").json()
    assert ready["status"] == "ready" and ready["schema_revision"]


def test_readiness_is_503_on_an_unmigrated_database(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from loyalty_engine.api.app import create_app
    from loyalty_engine.store.database import open_engine

    app = create_app(open_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        body = _problem(client.get("/v1/ready"), 503)
    assert "loyalty db upgrade" in body["detail"]


def test_every_body_in_the_openapi_document_has_an_example(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    def has_example(ref_or_schema: dict[str, Any]) -> bool:
        if "$ref" in ref_or_schema:
            ref_or_schema = schemas[ref_or_schema["$ref"].rsplit("/", 1)[1]]
        if "anyOf" in ref_or_schema:
            return any(has_example(s) for s in ref_or_schema["anyOf"] if s != {"type": "null"})
        return bool(ref_or_schema.get("examples") or ref_or_schema.get("example"))

    bodies = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            request = operation.get("requestBody", {}).get("content", {})
            for media in request.values():
                bodies += 1
                assert has_example(media["schema"]), (method, path)
            for status, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    if media.get("schema"):
                        bodies += 1
                        assert has_example(media["schema"]), (method, path, status)
    assert bodies >= 20
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- explicit enrolment -------------------------------------------------------------------

EXPLICIT = """\
program: staff-perks
name: Staff Perks
currency: EUR
timezone: Europe/Amsterdam
enrolment: explicit
stores: ["HQ-*"]
rules:
  - id: points-per-euro
    kind: points_per_spend
    points_per_unit: 1
    rounding: floor
"""


def test_a_program_that_enrols_explicitly_refuses_strangers(api: Api, tmp_path: Any) -> None:
    from loyalty_engine.services.programs import apply_program_files

    path = tmp_path / "staff-perks.yaml"
    path.write_text(EXPLICIT, encoding="utf-8")
    apply_program_files(api.engine, [path], API_NOW)
    hq = purchase("T-1", member_id="S-1", store_id="HQ-01", category="lunch", sku="SOUP")
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", hq, api.keys.admin), 422)
    assert "no member 'S-1'" in body["detail"] and "enrol them first" in body["detail"]
    # Known but not enrolled (a coffee customer): recorded, earns nothing at HQ.
    _post(api, "/v1/purchases", purchase("T-2", member_id="S-2"))
    other = _post(api, "/v1/purchases", {**hq, "transaction_id": "T-3", "member_id": "S-2"},
                  api.keys.admin)
    assert (other.status_code, other.json()["points"]) == (201, {})
    # Enrolled first: earns, and the rejected purchase can now be posted again.
    assert _post(api, "/v1/members", {"member_id": "S-1", "program_id": "staff-perks"},
                 api.keys.admin).status_code == 201
    again = _post(api, "/v1/purchases", hq, api.keys.admin)
    assert (again.status_code, again.json()["points"]) == (201, {"staff-perks": 7}), again.text


def test_an_unexpected_failure_is_a_500_problem_that_reveals_nothing(
        api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from loyalty_engine.api import writes

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("disk on fire at /var/secret/path")

    monkeypatch.setattr(writes, "record_purchase", broken)
    with nothing_written(api):
        body = _problem(_post(api, "/v1/purchases", purchase("T-1")), 500)
    assert "nothing was written" in body["detail"] and "secret" not in str(body)
    assert "disk on fire" in caplog.text  # the operator's log has it
    assert api.keys.ams not in caplog.text


def test_on_an_unmigrated_database_every_request_is_a_503(tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from loyalty_engine.api.app import create_app
    from loyalty_engine.store.database import open_engine

    app = create_app(open_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    with TestClient(app) as client:
        body = _problem(client.get("/v1/members/M-1", headers=bearer("lk_0123456789ab_x")),
                        503)
    assert "/v1/ready" in body["detail"]


def test_twin_fee_payments_at_the_same_moment_get_the_same_answer(api: Api) -> None:
    """A till retrying while its first request still runs: one payment, and both get its
    response (not 'already paid' for the second)."""
    from concurrent.futures import ThreadPoolExecutor

    _post(api, "/v1/purchases", purchase("T-1", member_id="M-5", store_id="BB-01",
                                         category="groceries", sku="RICE"))
    joined = join_club(api.engine, "M-5", "warehouse", API_NOW, API_NOW, level="basic")
    assert joined.charge is not None
    path = f"/v1/fees/{joined.charge['charge_id']}/pay"
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(
            lambda _: _post(api, path, {"reference": "PSP-1"}, api.keys.admin), range(4)))
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1
