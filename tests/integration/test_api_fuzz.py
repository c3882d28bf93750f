"""Schemathesis against the POS API in-process, on both databases.

Every operation of the app's own OpenAPI document is fuzzed with the admin key: positive
data (the schema's examples, then generated bodies, paths and queries) must be answered
without a 5xx, with a status and content type the document declares, a body matching the
declared schema, and every 4xx as an RFC 9457 problem document whose `status` is the HTTP
status; negative data (schemathesis' invalid-data mode) must be refused with 4xx problem
documents. The `positive_data_acceptance` check is left out on purpose: the domain refuses
many schema-valid bodies by design (unknown currencies, JSON-number amounts, totals that do
not add up, dates in the future, members that do not exist).

Hand-made requests cover what the generator does not reach (malformed JSON, other media
types, extreme decimal exponents, NUL bytes); the product bugs found that way (500s on
astronomical or vanishing amounts, a NUL byte in a fee reference on PostgreSQL) are fixed,
and these tests keep them fixed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loyalty_engine.api.problems import PROBLEM_JSON
from loyalty_engine.services.clubs import join_club
from loyalty_engine.services.fees import charges_of
from loyalty_engine.services.points import activate_pending
from tests.api_support import API_NOW, bearer, purchase
from tests.integration.conftest import Api

POSITIVE_EXAMPLES = 40  # per operation (the schema's own examples come on top)
NEGATIVE_EXAMPLES = 40  # per operation that has something to make invalid
SEEDED_EXAMPLES = 25  # per operation pinned to the seeded member, redemption and charge
PROBLEM_KEYS = {"type", "title", "status", "detail"}
SCHEMA_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Schemathesis' own negative_data_rejection check is left out: it also flags requests whose
# only invalid parts are an extra query value or header, which the API rightly ignores;
# fuzz_operation makes the same check with that exception (`accepted`).
NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
SEEDED_MEMBER = "M-42"  # the member of the schema's examples, so they meet real data
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,  # each run explores afresh; a failure prints its seed
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    print_blob=True,
)


def _content_type(headers: Mapping[str, Any]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return str(value[0] if isinstance(value, list) else value)
    return ""


def problem_failures(status: int, headers: Mapping[str, Any], content: bytes) -> list[str]:
    """What is wrong with a 4xx/5xx as an RFC 9457 document (nothing for other statuses)."""
    if status < 400:
        return []
    wrong = []
    media = _content_type(headers).split(";")[0].strip()
    if media != PROBLEM_JSON:
        wrong.append(f"content type {media!r}, not {PROBLEM_JSON}")
    try:
        body = json.loads(content)
    except ValueError:
        return [*wrong, f"body is not JSON: {content[:200]!r}"]
    if not isinstance(body, dict):
        return [*wrong, f"body is not a JSON object: {body!r}"]
    if missing := PROBLEM_KEYS - body.keys():
        wrong.append(f"keys {sorted(missing)} missing")
    if body.get("status") != status:
        wrong.append(f"status member {body.get('status')!r} is not the HTTP status {status}")
    for key in ("type", "title", "detail"):
        if key in body and not (isinstance(body[key], str) and body[key]):
            wrong.append(f"{key} is not a non-empty string: {body[key]!r}")
    for entry in body.get("errors") or []:
        if not (isinstance(entry, dict) and entry.get("field") and entry.get("detail")
                and str(entry.get("pointer", "")).startswith("#/")):
            wrong.append(f"errors entry without field, #/ pointer and detail: {entry!r}")
    return wrong


@dataclass
class Tally:
    """What a fuzz run sent and what went wrong, per operation."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def count(self, label: str | None = None) -> int:
        return sum(n for (op, _), n in self.statuses.items() if label in (None, op))

    def report(self) -> str:
        lines = [f"{op} -> {status}: {n}" for (op, status), n in sorted(self.statuses.items())]
        return "\n".join([*self.failures, "", "statuses sent back:", *lines])


def fuzz(schema: Any, auth: dict[str, str], mode: GenerationMode, examples: int,
         checks: list[Callable[..., Any]], tally: Tally,
         accepted: Callable[[Any], bool] = lambda case: False,
         only: set[str] | None = None, **pinned: Any) -> None:
    """Run every operation (or those in `only`) for `examples` cases; record failures in
    the tally instead of stopping at the first operation that has one. `accepted(case)` says
    whether a negative case may be answered with a success (when the API rightly ignores
    what was made invalid); `pinned` fixes path parameters or query values."""
    for result in schema.get_all_operations():
        operation = result.ok()
        if only is None or operation.label in only:
            fuzz_operation(operation, auth, mode, examples, checks, tally, accepted, pinned)


def fuzz_operation(operation: Any, auth: dict[str, str], mode: GenerationMode, examples: int,
                   checks: list[Callable[..., Any]], tally: Tally,
                   accepted: Callable[[Any], bool], pinned: dict[str, Any]) -> None:
    label = operation.label

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=operation.as_strategy(generation_mode=mode, **pinned))
    def run(case: Any) -> None:
        try:
            response = case.call(headers=auth)
        except Exception as exc:  # an ASGI app that raises instead of answering
            raise AssertionError(f"the app raised {type(exc).__name__}: {exc}\n"
                                 f"{case.as_curl_command()}") from exc
        tally.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except BaseExceptionGroup as exc:  # schemathesis' FailureGroup of failed checks
            raise AssertionError(str(exc)) from None
        wrong = problem_failures(response.status_code, response.headers, response.content)
        if mode == GenerationMode.NEGATIVE and response.status_code < 400 \
                and not accepted(case):
            wrong.append("invalid data was accepted")
        assert not wrong, (f"{label} -> {response.status_code}: {'; '.join(wrong)}\n"
                           f"{case.as_curl_command()}\n{response.content[:500]!r}")

    try:
        run()
    except Unsatisfiable:
        # Negative mode on an operation without inputs (health, ready): nothing to break.
        if mode != GenerationMode.NEGATIVE:
            raise
    except Exception as exc:
        tally.failures.append(f"{label} ({mode.value}): {exc}")


def load_schema(api: Api) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", api.client.app)


def admin(api: Api) -> dict[str, str]:
    return bearer(api.keys.admin)


def test_every_operation_conforms_to_the_openapi_document(api: Api) -> None:
    """Generated valid requests: no 5xx, declared statuses and media types, bodies matching
    the schema, and 4xx answers as problem documents."""
    schema = load_schema(api)
    tally = Tally()
    fuzz(schema, admin(api), GenerationMode.POSITIVE, POSITIVE_EXAMPLES, SCHEMA_CHECKS, tally)
    assert not tally.failures, tally.report()
    # The admin key is sent with every request: a 401 would mean the run tested nothing.
    assert not [s for (_, s) in tally.statuses if s == 401], tally.report()
    labels = {op for (op, _) in tally.statuses}
    # Eleven operations of the POS API (a survey answer the eleventh, issue 17), four of the
    # operator's (api/operator.py) and two of insights (api/insights.py: a member's, the
    # analytics reports).
    assert len(labels) == 17, tally.report()
    assert tally.count() >= 17 * POSITIVE_EXAMPLES // 2, tally.report()


def test_a_pos_key_of_one_store_gets_only_declared_answers(api: Api) -> None:
    """The same checks with a pos key scoped to one store (UTR-01): whatever it sends, the
    answers are declared ones (403 where it may not act), never a 5xx."""
    schema = load_schema(api)
    tally = Tally()
    fuzz(schema, bearer(api.keys.utr), GenerationMode.POSITIVE, POSITIVE_EXAMPLES // 2,
         SCHEMA_CHECKS, tally)
    assert not tally.failures, tally.report()
    statuses = {s for (_, s) in tally.statuses}
    assert 403 in statuses and 401 not in statuses and not {s for s in statuses if s >= 500}, \
        tally.report()


def test_the_documented_examples_are_accepted(api: Api) -> None:
    """The request examples of the OpenAPI document get through to the database (whether
    the generator above happens to send them varies from run to run)."""
    document = api.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, schema_name in (("/v1/purchases", "PurchaseEvent"),
                              ("/v1/members", "EnrolRequest")):
        for example in schemas[schema_name]["examples"]:
            response = api.client.post(path, json=example, headers=admin(api))
            # (The purchase example's member exists by the time it is enrolled: 200.)
            assert response.status_code in (200, 201), (path, response.text)


@dataclass(frozen=True)
class Seeded:
    member_id: str
    redemption_id: str
    charge_id: int


def seed(api: Api) -> Seeded:
    """A member with matured points, a stamp-card voucher, a redemption to reverse, club
    memberships and a due fee charge: the read models then have something in every list."""
    client, auth = api.client, admin(api)
    posted = [
        purchase("SEED-1", SEEDED_MEMBER, occurred_at="2026-05-01T10:00:00+02:00",
                 unit_price="300.00", quantity="1"),
        purchase("SEED-2", SEEDED_MEMBER, occurred_at="2026-05-02T10:00:00+02:00",
                 unit_price="3.00", quantity="9"),
        purchase("SEED-3", SEEDED_MEMBER, store_id="BB-01",
                 occurred_at="2026-05-03T10:00:00+02:00", sku="TV", category="electronics"),
    ]
    for body in posted:
        response = client.post("/v1/purchases", json=body, headers=auth)
        assert response.status_code == 201, response.text
    response = client.post("/v1/members", headers=auth, json={
        "member_id": SEEDED_MEMBER, "attributes": {"home_store": "AMS-01", "age": 41},
        "consents": {"marketing": True}})
    assert response.status_code == 200, response.text
    activate_pending(api.engine, API_NOW)
    response = client.post("/v1/redemptions", headers=auth, json={
        "redemption_id": "RD-SEED", "member_id": SEEDED_MEMBER, "program_id": "bean-there",
        "occurred_at": "2026-06-01T10:00:00+02:00", "points": 50})
    assert response.status_code == 201, response.text
    join_club(api.engine, SEEDED_MEMBER, "warehouse", datetime(2026, 5, 20, tzinfo=UTC),
              API_NOW)
    (charge,) = charges_of(api.engine, SEEDED_MEMBER, "due")
    return Seeded(SEEDED_MEMBER, "RD-SEED", int(charge["charge_id"]))


def test_operations_on_seeded_data_conform(api: Api) -> None:
    """The same checks with the paths pinned to a member, redemption and fee charge that
    exist, so 200 responses of the read endpoints (balances, tiers, vouchers, clubs, open
    charges, ledger pages) and real reversals and payments are validated against the
    schema too."""
    seeded = seed(api)
    member = api.client.get(f"/v1/members/{seeded.member_id}", headers=admin(api)).json()
    assert member["vouchers"] and member["open_charges"] and member["clubs"], member
    schema = load_schema(api)
    tally = Tally()
    auth = admin(api)
    fuzz(schema, auth, GenerationMode.POSITIVE, SEEDED_EXAMPLES, SCHEMA_CHECKS, tally,
         only={"GET /v1/members/{member_id}", "GET /v1/members/{member_id}/ledger"},
         path_parameters={"member_id": seeded.member_id})
    fuzz(schema, auth, GenerationMode.POSITIVE, SEEDED_EXAMPLES, SCHEMA_CHECKS, tally,
         only={"POST /v1/redemptions/{redemption_id}/reverse"},
         path_parameters={"redemption_id": seeded.redemption_id})
    fuzz(schema, auth, GenerationMode.POSITIVE, SEEDED_EXAMPLES, SCHEMA_CHECKS, tally,
         only={"POST /v1/fees/{charge_id}/pay"},
         path_parameters={"charge_id": seeded.charge_id})
    assert not tally.failures, tally.report()
    assert tally.statuses[("GET /v1/members/{member_id}", 200)] >= 1, tally.report()
    assert tally.statuses[("GET /v1/members/{member_id}/ledger", 200)] >= 1, tally.report()
    assert tally.statuses[("POST /v1/redemptions/{redemption_id}/reverse", 200)] >= 1, \
        tally.report()


def _only_ignorable_parts_negated(case: Any) -> bool:
    """A negative case whose only invalid parts are extra headers or query values, which
    the API rightly ignores (the body and path, when present, were generated valid)."""
    meta = case.meta
    if meta is None:
        return False
    negated = {location.value for location, info in meta.components.items()
               if info.mode == GenerationMode.NEGATIVE}
    return bool(negated) and negated <= {"header", "query"}


def test_invalid_requests_get_4xx_problem_documents(api: Api) -> None:
    """Schemathesis' negative mode (bodies, paths, queries and headers that break the
    schema, the key included): never a 5xx; invalid bodies and paths are refused with 4xx,
    each a problem document with the HTTP status in it."""
    schema = load_schema(api)
    tally = Tally()
    fuzz(schema, admin(api), GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, NEGATIVE_CHECKS,
         tally, accepted=_only_ignorable_parts_negated)
    assert not tally.failures, tally.report()
    assert tally.count() >= 200, tally.report()
    refused = sum(n for (_, status), n in tally.statuses.items() if 400 <= status < 500)
    assert refused >= tally.count() * 3 // 4, tally.report()


# Hand-made requests the generator does not send.

MALFORMED: list[tuple[str, bytes, str, int]] = [
    ("not JSON", b"{", "application/json", 400),
    ("bad UTF-8", b'{"transaction_id": "\xff\xfe"}', "application/json", 400),
    ("integer over the digit limit", b'{"total": ' + b"9" * 5000 + b"}",
     "application/json", 400),
    ("nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    ("empty body", b"", "application/json", 422),
    ("null", b"null", "application/json", 422),
    ("array", b"[]", "application/json", 422),
    ("NaN quantity", b'{"transaction_id": "T", "store_id": "AMS-01", "occurred_at": '
     b'"2026-05-01T10:00:00Z", "currency": "EUR", "total": "1.00", "items": [{"sku": "A", '
     b'"category": "c", "quantity": NaN, "unit_price": "1.00"}]}', "application/json", 422),
    ("text/plain", b"{}", "text/plain", 415),
    ("form", b"a=b", "application/x-www-form-urlencoded", 415),
]


@pytest.mark.parametrize(("body", "media_type", "status"),
                         [pytest.param(b, m, s, id=i) for i, b, m, s in MALFORMED])
def test_malformed_bodies_get_problem_documents(api: Api, body: bytes, media_type: str,
                                                status: int) -> None:
    response = api.client.post("/v1/purchases", content=body,
                               headers={**admin(api), "Content-Type": media_type})
    assert response.status_code == status, response.text
    assert not problem_failures(response.status_code, response.headers, response.content)


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/purchases", 405),
    ("DELETE", "/v1/members/M-1", 405),
    ("GET", "/v1/nothing-here", 404),
    ("GET", "/nothing-here", 404),
    ("GET", "/v1/members/" + "x" * 65, 422),
    ("GET", "/v1/members/%00", 422),
    ("GET", "/v1/members/M-1/ledger?after=" + "9" * 5000, 422),
    ("GET", "/v1/members/M-1/ledger?limit=0", 422),
    ("POST", "/v1/fees/0/pay", 422),
    ("POST", f"/v1/fees/{2**62 + 1}/pay", 422),
    ("POST", "/v1/redemptions/%7F/reverse", 422),
])
def test_bad_paths_and_methods_get_problem_documents(api: Api, method: str, path: str,
                                                     status: int) -> None:
    response = api.client.request(method, path, headers=admin(api))
    assert response.status_code == status, response.text
    assert not problem_failures(response.status_code, response.headers, response.content)


@pytest.mark.parametrize("authorization", [None, "Basic abc", "Bearer", "Bearer nope",
                                           "Bearer " + "x" * 10_000])
def test_missing_or_unknown_keys_get_401_problem_documents(api: Api,
                                                           authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = api.client.post("/v1/purchases", json=purchase("T-1"), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert not problem_failures(response.status_code, response.headers, response.content)


# Bugs this file found, fixed: each answered with a 500 before.

REFUND = {"refund_id": "R-1", "store_id": "AMS-01", "original_transaction_id": "T-1",
          "occurred_at": "2026-05-31T10:00:00+02:00"}


@pytest.mark.parametrize("body", [
    pytest.param({**REFUND, "amount": "1e999999999"}, id="amount"),
    pytest.param({**REFUND, "amount": "1", "items": [
        {"sku": "FLAT-WHITE", "amount": "9e999999999"},
        {"sku": "FLAT-WHITE", "amount": "9e999999999"}]}, id="items"),
])
def test_refund_with_an_astronomical_amount_is_a_422(api: Api, body: dict[str, Any]) -> None:
    auth = admin(api)
    assert api.client.post("/v1/purchases", json=purchase("T-1"), headers=auth
                           ).status_code == 201
    response = api.client.post("/v1/refunds", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert not problem_failures(response.status_code, response.headers, response.content)


def test_refund_of_a_vanishingly_small_amount_is_a_422(api: Api) -> None:
    auth = admin(api)
    assert api.client.post("/v1/purchases", json=purchase("T-1"), headers=auth
                           ).status_code == 201
    response = api.client.post("/v1/refunds", json={**REFUND, "amount": "1e-999999999"},
                               headers=auth)
    assert response.status_code == 422, response.text
    assert not problem_failures(response.status_code, response.headers, response.content)


def test_fee_reference_with_a_nul_byte_is_not_a_server_error(api: Api) -> None:
    join_club(api.engine, "M-F", "warehouse", datetime(2026, 5, 20, tzinfo=UTC), API_NOW)
    (charge,) = charges_of(api.engine, "M-F", "due")
    response = api.client.post(f"/v1/fees/{charge['charge_id']}/pay",
                               json={"reference": "PSP\u00001"}, headers=admin(api))
    assert response.status_code < 500, response.text
    assert not problem_failures(response.status_code, response.headers, response.content)


def test_415_is_a_documented_status(api: Api) -> None:
    """A body that is not JSON is answered 415, and every write declares that status."""
    schema = load_schema(api)
    case = schema["/v1/purchases"]["POST"].Case(body=purchase("T-1"),
                                                 media_type="application/json")
    response = api.client.post("/v1/purchases", content=json.dumps(purchase("T-1")),
                               headers={**admin(api), "Content-Type": "text/plain"})
    assert response.status_code == 415
    case.validate_response(response, checks=[status_code_conformance,
                                             content_type_conformance,
                                             response_schema_conformance])


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def test_problem_responses_declare_the_problem_schema(api: Api) -> None:
    """Every declared 4xx/5xx is application/problem+json only, with a schema requiring
    type, title, status and detail (so schemathesis validates problem bodies too)."""
    document = api.client.get("/openapi.json").json()
    wrong = []
    declared = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                declared += 1
                where = f"{method.upper()} {path} {status}"
                content = response.get("content", {})
                if set(content) != {PROBLEM_JSON}:
                    wrong.append(f"{where}: media types {sorted(content)}")
                    continue
                schema = _resolve(document, content[PROBLEM_JSON].get("schema", {}))
                if not set(schema.get("required", [])) >= PROBLEM_KEYS:
                    wrong.append(f"{where}: schema requires {schema.get('required')}")
    assert declared >= 40
    assert not wrong, "\n".join(wrong)
