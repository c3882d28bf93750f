"""The POS HTTP API over real HTTP, as an integrator meets it: `loyalty serve` started by its
console script on both databases, API keys made and revoked with the CLI while it runs,
and every request sent through a socket.

One server per backend serves the whole module (tests use their own members and
transactions); the tests that need a server of their own, or none, say so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from loyalty_engine.store import tables
from loyalty_engine.store.database import open_engine
from loyalty_engine.store.migrate import SCHEMA_REVISION
from tests.api_support import bearer, purchase
from tests.e2e.cli import SHIPPED_RULES, assert_one_sentence_error, ok, run
from tests.e2e.server import (
    Server,
    ago,
    create_key,
    free_port,
    fresh_database,
    just_now,
    serving,
)

PROBLEM = "application/problem+json"
REPLAYED = "Idempotent-Replayed"
CHALLENGE = 'Bearer realm="loyalty-engine"'
# SIGTERM stops `loyalty serve` with 0 (uvicorn re-raised it after shutting down, which once
# ended a single worker with -15; see test_sigterm_stops_a_single_worker_with_0).
ONE_WORKER_EXIT = (0,)


@dataclass
class Api:
    """The served API: its base URL, database, API keys and an HTTP client."""

    backend: str
    db_url: str
    server: Server
    client: httpx2.Client
    tokens: dict[str, str]  # key name -> bearer token

    def post(self, path: str, body: Any, key: str | None = "till-ams") -> httpx2.Response:
        headers = bearer(self.tokens[key]) if key else {}
        return self.client.post(path, json=body, headers=headers)

    def get(self, path: str, key: str | None = "till-ams",
            params: dict[str, Any] | None = None) -> httpx2.Response:
        headers = bearer(self.tokens[key]) if key else {}
        return self.client.get(path, headers=headers, params=params)

    def count(self, table: Any, *where: Any) -> int:
        engine = open_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(table)
                                        .where(*where)).scalar_one())
        finally:
            engine.dispose()


# The keys every test may use, made with the CLI: name, scope, stores.
KEYS = [("till-ams", "pos", ("AMS-*", "BB-*")), ("till-utr", "pos", ("UTR-01",)),
        ("office", "admin", ()), ("till-temp", "pos", ("AMS-01",))]  # the last is revoked


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    """One served database per backend: the shipped programs, a till key for Amsterdam (and
    the Big Box stores), one for Utrecht, an office (admin) key, a key to revoke, and
    `loyalty serve` (started while the CLI stores the programs and makes the keys)."""
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"http-{backend}")
    with fresh_database(backend, folder, request) as db_url, \
            ThreadPoolExecutor(len(KEYS) + 1) as pool:
        applied = pool.submit(ok, "rules", "apply", SHIPPED_RULES, database=db_url)
        made = {name: pool.submit(create_key, db_url, name, scope, *stores)
                for name, scope, stores in KEYS}
        with serving(db_url, folder / "server.log", exit_codes=ONE_WORKER_EXIT) as server, \
                httpx2.Client(base_url=server.url, timeout=30) as client:
            assert "bean-there: version 1 stored" in applied.result().stdout
            tokens = {name: future.result() for name, future in made.items()}
            yield Api(backend, db_url, server, client, tokens)


def assert_problem(response: httpx2.Response, status: int, kind: str,
                   *fragments: str) -> dict[str, Any]:
    """An RFC 9457 problem document of this status and kind whose detail says fragments."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM, response.headers
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:loyalty-engine:problem:{kind}", problem
    assert problem["status"] == status and problem["title"], problem
    for fragment in fragments:
        assert fragment in problem["detail"], problem
    return problem


def full_ledger(api: Api, member_id: str) -> list[dict[str, Any]]:
    page = api.get(f"/v1/members/{member_id}/ledger", params={"limit": 500})
    assert page.status_code == 200, page.text
    assert page.json()["next_after"] is None
    entries: list[dict[str, Any]] = page.json()["entries"]
    return entries


def standing(api: Api, member_id: str, program_id: str = "bean-there") -> dict[str, Any]:
    shown = api.get(f"/v1/members/{member_id}")
    assert shown.status_code == 200, shown.text
    found = [p for p in shown.json()["programs"] if p["program_id"] == program_id]
    assert len(found) == 1, shown.json()
    program: dict[str, Any] = found[0]
    return program


# --- the service itself ----------------------------------------------------------------


def test_health_readiness_and_the_openapi_document_need_no_key(api: Api) -> None:
    health = api.client.get("/v1/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = api.client.get("/v1/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "database": api.backend,
                            "schema_revision": SCHEMA_REVISION}
    spec = api.client.get("/openapi.json")
    assert spec.status_code == 200, spec.text
    document = spec.json()
    assert document["info"]["title"] == "loyalty-engine POS API"
    for path in ("/v1/purchases", "/v1/refunds", "/v1/members", "/v1/members/{member_id}",
                 "/v1/members/{member_id}/ledger", "/v1/redemptions",
                 "/v1/fees/{charge_id}/pay", "/v1/health", "/v1/ready"):
        assert path in document["paths"], sorted(document["paths"])
    assert "HTTPBearer" in json.dumps(document["components"]["securitySchemes"])
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]


# --- purchases: idempotent, byte for byte -------------------------------------------------


def test_a_purchase_is_recorded_once_and_replayed_byte_for_byte(api: Api) -> None:
    body = purchase("WALK-1", "M-WALK", occurred_at=ago(2))  # 2 x 3.60 of coffee
    first = api.post("/v1/purchases", body)
    assert first.status_code == 201, first.text
    assert first.headers["content-type"] == "application/json"
    assert REPLAYED not in first.headers
    recorded = first.json()
    assert recorded["store_id"] == "AMS-01" and recorded["transaction_id"] == "WALK-1"
    assert recorded["member_id"] == "M-WALK"
    assert recorded["points"] == {"bean-there": 7}  # floor(7.20)
    assert recorded["awards"] == [{"program_id": "bean-there", "program_version": 1,
                                   "rule_id": "points-per-euro", "points": 7}]

    again = api.post("/v1/purchases", body)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers[REPLAYED] == "true"

    # The same purchase written otherwise (key order, spacing) is the same purchase.
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    same = api.client.post("/v1/purchases", content=reordered, headers={
        **bearer(api.tokens["till-ams"]), "Content-Type": "application/json"})
    assert (same.status_code, same.content, same.headers[REPLAYED]) == (
        201, first.content, "true")

    changed = api.post("/v1/purchases", purchase("WALK-1", "M-WALK", occurred_at=ago(2),
                                                 quantity="3"))
    assert_problem(changed, 409, "conflict", "'WALK-1'", "different contents")
    assert REPLAYED not in changed.headers

    assert api.count(tables.purchases, tables.purchases.c.transaction_id == "WALK-1") == 1
    assert [e["points"] for e in full_ledger(api, "M-WALK")] == [7]


def test_the_member_view_shows_points_pending_and_stamp_cards(api: Api) -> None:
    coffee = api.post("/v1/purchases", purchase("VIEW-1", "M-VIEW", occurred_at=ago(3)))
    beans = api.post("/v1/purchases", purchase(
        "VIEW-2", "M-VIEW", occurred_at=ago(2), quantity="1", unit_price="12.50",
        sku="BEANS-1KG", category="coffee-beans"))
    assert (coffee.status_code, beans.status_code) == (201, 201), (coffee.text, beans.text)
    assert (coffee.json()["points"], beans.json()["points"]) == (
        {"bean-there": 7}, {"bean-there": 25})  # beans count double

    shown = api.get("/v1/members/M-VIEW")
    assert shown.status_code == 200, shown.text
    member = shown.json()
    assert member["member_id"] == "M-VIEW"
    assert [p["program_id"] for p in member["programs"]] == ["bean-there"]
    program = member["programs"][0]
    # Held for 14 days against returns: all of it is pending.
    assert (program["points"], program["pending"], program["lifetime_earned"]) == (0, 32, 32)
    assert program["stamp_cards"] == [{"program_id": "bean-there", "rule_id": "coffee-card",
                                       "stamps": 2, "card_size": 9,
                                       "reward_id": "free-coffee"}]
    assert [c["club_id"] for c in member["clubs"]] == ["bean-club"]
    assert member["open_charges"] == [] and member["vouchers"] == []

    assert_problem(api.get("/v1/members/M-NOBODY"), 404, "not-found", "M-NOBODY")


def test_enrolment_with_attributes_and_consents_is_replayed(api: Api) -> None:
    body = {"member_id": "M-ENROL", "program_id": "bean-there",
            "attributes": {"date_of_birth": "1990-05-17", "home_store": "AMS-01"},
            "consents": {"marketing": True}}
    first = api.post("/v1/members", body)
    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    enrolled = first.json()
    assert enrolled["member_id"] == "M-ENROL"
    assert enrolled["attributes"] == body["attributes"]
    assert [(c["flag"], c["given"], c["withdrawn_at"]) for c in enrolled["consents"]] == [
        ("marketing", True, None)]

    again = api.post("/v1/members", body)
    assert (again.status_code, again.content, again.headers[REPLAYED]) == (
        201, first.content, "true")

    # Another request for the same member is applied to it: attributes merge in.
    other = api.post("/v1/members", {**body, "attributes": {"home_store": "UTR-01"}})
    assert other.status_code == 200 and REPLAYED not in other.headers, other.text

    member = api.get("/v1/members/M-ENROL").json()
    assert member["attributes"] == {"date_of_birth": "1990-05-17", "home_store": "UTR-01"}
    assert [(p["program_id"], p["points"], p["pending"]) for p in member["programs"]] == [
        ("bean-there", 0, 0)]


# --- refunds and redemptions: refused requests write nothing ------------------------------


def test_a_refund_and_an_over_refund_that_changes_nothing(api: Api) -> None:
    bought = api.post("/v1/purchases", purchase("REF-1", "M-REFUND", occurred_at=ago(3),
                                                quantity="4"))  # 14.40 -> 14 points
    assert bought.status_code == 201 and bought.json()["points"] == {"bean-there": 14}, bought.text
    refund = {"refund_id": "RF-1", "store_id": "AMS-01", "original_transaction_id": "REF-1",
              "occurred_at": just_now(), "amount": "7.20",
              "items": [{"sku": "FLAT-WHITE", "quantity": "2", "amount": "7.20"}]}
    first = api.post("/v1/refunds", refund)
    assert first.status_code == 201, first.text
    done = first.json()
    assert (done["amount_minor"], done["refunded_minor"], done["total_minor"]) == (
        720, 720, 1440)
    assert done["points"] == {"bean-there": 7}
    again = api.post("/v1/refunds", refund)
    assert (again.status_code, again.content, again.headers[REPLAYED]) == (
        201, first.content, "true")

    ledger = full_ledger(api, "M-REFUND")
    view = api.get("/v1/members/M-REFUND").json()
    assert [e["points"] for e in ledger] == [14, -7]
    over = {**refund, "refund_id": "RF-2", "amount": "10.00", "items": None}
    assert_problem(api.post("/v1/refunds", over), 422, "rejected",
                   "more than what remains", "7.20 of 14.40")
    # Refused: nothing written, nothing stored (the same request is refused again).
    assert full_ledger(api, "M-REFUND") == ledger
    assert api.get("/v1/members/M-REFUND").json() == view
    assert api.count(tables.refunds, tables.refunds.c.refund_id == "RF-2") == 0
    assert api.count(tables.api_responses, tables.api_responses.c.endpoint == "refunds",
                     tables.api_responses.c.idem_key.like("%RF-2")) == 0
    assert_problem(api.post("/v1/refunds", over), 422, "rejected", "more than what remains")


def test_a_redemption_beyond_the_spendable_balance_is_refused(api: Api) -> None:
    # Bought three weeks ago: 2 x 12.50 of whole beans, counted double -> 50 points.
    bought = api.post("/v1/purchases", purchase(
        "RED-1", "M-REDEEM", occurred_at=ago(21), quantity="2", unit_price="12.50",
        sku="BEANS-1KG", category="coffee-beans"))
    assert bought.status_code == 201 and bought.json()["points"] == {"bean-there": 50}, bought.text
    redeem = {"redemption_id": "RD-1", "member_id": "M-REDEEM", "program_id": "bean-there",
              "occurred_at": just_now(), "points": 30}
    # Pending until the 14-day window is over and the activation step has run.
    assert (standing(api, "M-REDEEM")["points"], standing(api, "M-REDEEM")["pending"]) == (
        0, 50)
    assert_problem(api.post("/v1/redemptions", redeem), 422, "rejected",
                   "has 0 spendable points")
    # The scheduler's hourly step, run by hand while the server serves.
    activated = ok("points", "activate", "--allow-future", "--program", "bean-there", "--json",
                   database=api.db_url).json()
    assert activated["points_by_program"]["bean-there"] >= 50
    assert (standing(api, "M-REDEEM")["points"], standing(api, "M-REDEEM")["pending"]) == (
        50, 0)

    first = api.post("/v1/redemptions", redeem)
    assert first.status_code == 201, first.text
    assert first.json() == {"redemption_id": "RD-1", "member_id": "M-REDEEM",
                            "program_id": "bean-there", "kind": "points", "points": 30,
                            "voucher": None, "reversed": False, "restored": None}
    again = api.post("/v1/redemptions", redeem)
    assert (again.status_code, again.content, again.headers[REPLAYED]) == (
        201, first.content, "true")

    ledger = full_ledger(api, "M-REDEEM")
    assert [e["points"] for e in ledger] == [50, -30]
    too_many = {**redeem, "redemption_id": "RD-2"}
    assert_problem(api.post("/v1/redemptions", too_many), 422, "rejected",
                   "has 20 spendable points", "30 are needed")
    assert full_ledger(api, "M-REDEEM") == ledger
    # Affordable, but dated two days back: beyond the 24 hours Bean There waits for an
    # offline till (issue 14: back-dating once reached points that had since expired).
    late = {**redeem, "redemption_id": "RD-3", "points": 10, "occurred_at": ago(2)}
    problem = assert_problem(api.post("/v1/redemptions", late), 422, "validation",
                             "more than 24 hours before the redemption is recorded",
                             "redemptions.backdate_hours")
    assert [(e["field"], e["pointer"]) for e in problem["errors"]] == [
        ("occurred_at", "#/occurred_at")]
    assert full_ledger(api, "M-REDEEM") == ledger
    assert standing(api, "M-REDEEM")["points"] == 20
    assert api.count(tables.redemptions, tables.redemptions.c.member_id == "M-REDEEM") == 1


def test_the_ledger_is_paged_with_limit_and_after(api: Api) -> None:
    for n in range(5):
        posted = api.post("/v1/purchases", purchase(f"LED-{n}", "M-LEDGER",
                                                    occurred_at=ago(5 - n)))
        assert posted.status_code == 201, posted.text
    everything = full_ledger(api, "M-LEDGER")
    assert len(everything) == 5
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    assert [e["transaction_id"] for e in everything] == [f"LED-{n}" for n in range(5)]

    pages, after = [], None
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = api.get("/v1/members/M-LEDGER/ledger", params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json()["entries"])
        after = page.json()["next_after"]
        if after is None:
            break
        assert after == pages[-1][-1]["id"]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e for p in pages for e in p] == everything
    # A page that ends exactly at the last entry says there is no next page.
    exact = api.get("/v1/members/M-LEDGER/ledger", params={"limit": 5}).json()
    assert (exact["entries"], exact["next_after"]) == (everything, None)
    beyond = api.get("/v1/members/M-LEDGER/ledger", params={"after": ids[-1]}).json()
    assert (beyond["entries"], beyond["next_after"]) == ([], None)

    for bad in ({"limit": 0}, {"limit": 501}, {"after": -1}, {"limit": "ten"}):
        problem = assert_problem(api.get("/v1/members/M-LEDGER/ledger", params=bad), 422,
                                 "validation")
        assert problem["errors"][0]["in"] == "query", problem
    assert_problem(api.get("/v1/members/M-NOBODY/ledger"), 404, "not-found")


# --- keys -------------------------------------------------------------------------------


def test_no_key_or_an_unknown_key_is_401_with_a_challenge(api: Api) -> None:
    cases = [
        api.client.get("/v1/members/M-WALK"),
        api.client.post("/v1/purchases", json=purchase("AUTH-1", "M-AUTH", occurred_at=ago(1))),
        api.client.get("/v1/members/M-WALK", headers={"Authorization": "Basic dXNlcjpwdw=="}),
        api.client.get("/v1/members/M-WALK", headers={"Authorization": "Bearer"}),
        api.client.get("/v1/members/M-WALK",
                       headers=bearer("lk_000000000000_NotAKeyThisServerEverMade")),
    ]
    for response in cases:
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == CHALLENGE
    assert "unknown or has been revoked" in cases[-1].json()["detail"]
    assert api.count(tables.purchases, tables.purchases.c.transaction_id == "AUTH-1") == 0


def test_a_key_revoked_while_the_server_runs_is_refused_on_the_next_request(api: Api) -> None:
    body = purchase("REV-1", "M-REVOKE", occurred_at=ago(1))
    first = api.post("/v1/purchases", body, key="till-temp")
    assert first.status_code == 201, first.text
    assert api.get("/v1/members/M-REVOKE", key="till-temp").status_code == 200

    revoked = ok("apikeys", "revoke", "till-temp", "--json", database=api.db_url).json()
    assert revoked["revoked_at"] is not None

    for response in (api.get("/v1/members/M-REVOKE", key="till-temp"),
                     api.post("/v1/purchases", body, key="till-temp")):  # not even a replay
        assert_problem(response, 401, "unauthenticated", "revoked")
        assert response.headers["www-authenticate"] == CHALLENGE
    # The other keys are untouched.
    assert api.post("/v1/purchases", body).headers[REPLAYED] == "true"


def test_a_pos_key_writes_only_for_its_stores(api: Api) -> None:
    for_utrecht = purchase("STORE-1", "M-STORE", store_id="UTR-01", occurred_at=ago(1))
    refused = api.post("/v1/purchases", for_utrecht, key="till-ams")
    assert_problem(refused, 403, "forbidden-store", "'till-ams'", "'UTR-01'")
    assert api.count(tables.purchases, tables.purchases.c.transaction_id == "STORE-1") == 0
    refund = {"refund_id": "RF-S", "store_id": "AMS-01", "original_transaction_id": "STORE-1",
              "original_store_id": "UTR-01", "occurred_at": just_now(), "amount": "1.00"}
    assert_problem(api.post("/v1/refunds", refund, key="till-utr"), 403, "forbidden-store",
                   "'AMS-01'")

    accepted = api.post("/v1/purchases", for_utrecht, key="till-utr")
    assert accepted.status_code == 201, accepted.text
    # The Amsterdam till may read what Utrecht wrote, but still not write for it.
    assert api.get("/v1/members/M-STORE", key="till-ams").status_code == 200
    assert_problem(api.post("/v1/purchases", for_utrecht, key="till-ams"), 403,
                   "forbidden-store")


def test_paying_a_fee_needs_an_admin_key(api: Api) -> None:
    enrolled = api.post("/v1/members", {"member_id": "M-FEE", "program_id": "big-box"})
    assert enrolled.status_code == 201, enrolled.text
    joined = ok("clubs", "join", "M-FEE", "warehouse", "--json", database=api.db_url).json()
    charge = joined["charge"]
    assert (charge["status"], charge["amount_minor"]) == ("due", 6000)
    member = api.get("/v1/members/M-FEE").json()
    assert [c["status"] for c in member["open_charges"]] == ["due"]

    path = f"/v1/fees/{charge['charge_id']}/pay"
    payment = {"reference": "PSP-1"}
    assert_problem(api.post(path, payment, key="till-ams"), 403, "forbidden-scope",
                   "admin API key", "'till-ams' is a pos key")
    assert api.get("/v1/members/M-FEE").json()["open_charges"] == member["open_charges"]

    paid = api.post(path, payment, key="office")
    assert paid.status_code == 200, paid.text
    assert paid.json()["charge"]["status"] == "paid"
    assert paid.json()["membership"]["status"] == "active"
    again = api.post(path, payment, key="office")
    assert (again.status_code, again.content, again.headers[REPLAYED]) == (
        200, paid.content, "true")
    assert api.get("/v1/members/M-FEE").json()["open_charges"] == []
    assert_problem(api.post("/v1/fees/999999/pay", {}, key="office"), 404, "not-found")


# --- bodies -------------------------------------------------------------------------------


def test_a_body_over_one_mebibyte_is_413(api: Api) -> None:
    big = json.dumps({"transaction_id": "BIG", "padding": "x" * (2 * 1024 * 1024)}).encode()
    headers = {**bearer(api.tokens["till-ams"]), "Content-Type": "application/json"}
    declared = api.client.post("/v1/purchases", content=big, headers=headers)
    assert_problem(declared, 413, "too-large", "1048576 bytes")
    chunks = (big[i:i + 65536] for i in range(0, len(big), 65536))  # no Content-Length
    streamed = api.client.post("/v1/purchases", content=chunks, headers=headers)
    assert_problem(streamed, 413, "too-large")
    assert api.client.get("/v1/health").status_code == 200


def test_malformed_json_is_400_and_a_bad_field_is_422(api: Api) -> None:
    headers = {**bearer(api.tokens["till-ams"]), "Content-Type": "application/json"}
    broken = api.client.post("/v1/purchases", content=b'{"transaction_id": "BAD-1", ',
                             headers=headers)
    assert_problem(broken, 400, "malformed-json", "not valid JSON")
    as_text = api.client.post("/v1/purchases", content=b"{}", headers={
        **headers, "Content-Type": "text/plain"})
    assert_problem(as_text, 415, "media-type", "application/json")
    bad = purchase("BAD-2", "M-BAD", occurred_at=ago(1), unit_price="3.605")
    problem = assert_problem(api.post("/v1/purchases", bad), 422, "validation")
    assert [e["pointer"] for e in problem["errors"]] == ["#/items/0/unit_price"], problem
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert_problem(api.post("/v1/purchases", purchase("BAD-3", "M-BAD", occurred_at=ahead)),
                   422, "validation", "in the future")
    assert api.count(tables.purchases, tables.purchases.c.transaction_id.like("BAD-%")) == 0


# --- starting the server ------------------------------------------------------------------


def test_serve_on_a_port_in_use_says_so_in_one_sentence(api: Api) -> None:
    taken = run("serve", "--port", str(api.server.port), database=api.db_url, timeout=30)
    assert_one_sentence_error(taken, f"cannot listen on 127.0.0.1:{api.server.port}",
                              "choose another --port")
    assert api.client.get("/v1/health").status_code == 200  # the running one is unharmed


def test_serve_on_an_unmigrated_database_says_so_in_one_sentence(empty_db_url: str) -> None:
    refused = run("serve", "--port", str(free_port()), database=empty_db_url, timeout=30)
    if empty_db_url.startswith("sqlite:///"):  # a path where there is no file yet
        path = Path(empty_db_url.removeprefix("sqlite:///"))
        assert_one_sentence_error(refused, "there is no database", str(path),
                                  "loyalty db upgrade")
        assert not path.exists()
    else:  # a PostgreSQL database without tables
        assert_one_sentence_error(refused, "is empty", "loyalty db upgrade")


def test_sigterm_stops_a_single_worker_with_0(sqlite_db_url: str, tmp_path: Path) -> None:
    with serving(sqlite_db_url, tmp_path / "server.log", exit_codes=ONE_WORKER_EXIT) as server:
        assert httpx2.get(f"{server.url}/v1/ready").status_code == 200
    assert "Application shutdown complete" in server.log()
    assert server.exit_code == 0, server.log()


# --- last: what the server logged ---------------------------------------------------------


def test_no_api_key_ever_reaches_the_server_log(api: Api) -> None:
    # Make sure every kind of request has been logged at least once by now.
    assert api.get("/v1/members/M-WALK", key="office").status_code == 200
    log = api.server.log()
    assert '"POST /v1/purchases HTTP/1.1" 201' in log, log  # the access log is on
    assert '"GET /v1/members/M-WALK HTTP/1.1" 401' in log, log
    for name, token in api.tokens.items():
        secret = token[len("lk_") + 13:]  # lk_<key id>_<secret>
        assert token not in log and secret not in log, f"the key {name!r} was logged:\n{log}"
    assert "NotAKeyThisServerEverMade" not in log
    assert "Bearer" not in log and "authorization" not in log.lower(), log
