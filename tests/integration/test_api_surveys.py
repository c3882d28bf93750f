"""POST /v1/members/{member_id}/surveys on both databases: an NPS or commitment answer
recorded once (a replay answers the first response), errors as problem documents naming
the field, 404 for an unknown member, a pos key only for its programs' members."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from loyalty_engine.services.apikeys import create_api_key
from loyalty_engine.services.surveys import import_surveys
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction
from tests.api_support import API_NOW, bearer, purchase
from tests.integration.conftest import Api

ANSWER = {"kind": "nps", "score": 9, "answered_at": "2026-05-30T18:20:00+02:00"}


@pytest.fixture
def member(api: Api) -> str:
    """M-1, enrolled in Bean There by a purchase at AMS-01."""
    done = api.client.post("/v1/purchases", json=purchase("T-1"), headers=bearer(api.keys.ams))
    assert done.status_code == 201, done.text
    return "M-1"


def _stored(api: Api) -> list[tuple]:
    t = tables.member_surveys
    with read_transaction(api.engine) as conn:
        return [(r.member_id, r.kind, r.score, r.answered_at, r.source)
                for r in conn.execute(select(t).order_by(t.c.id))]


def _problem(response, status: int, kind: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"urn:loyalty-engine:problem:{kind}", body
    return body


def test_an_answer_is_recorded_once_and_replayed(api: Api, member: str) -> None:
    first = api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                            headers=bearer(api.keys.ams))
    assert first.status_code == 201, first.text
    body = first.json()
    assert {k: body[k] for k in ("member_id", "kind", "score", "answered_at", "source")} == {
        "member_id": "M-1", "kind": "nps", "score": 9,
        "answered_at": "2026-05-30T16:20:00Z", "source": "api:till-ams"}
    again = api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                            headers=bearer(api.keys.ams))
    assert (again.status_code, again.json(), again.headers["Idempotent-Replayed"]) == (
        201, body, "true")
    # The same instant written in another offset is the same answer.
    utc = api.client.post("/v1/members/M-1/surveys", json={
        **ANSWER, "answered_at": "2026-05-30T16:20:00Z"}, headers=bearer(api.keys.admin))
    assert utc.status_code == 201 and utc.json() == body, utc.text
    assert _stored(api) == [("M-1", "nps", 9, datetime(2026, 5, 30, 16, 20, tzinfo=UTC),
                             "api:till-ams")]


def test_the_same_answer_with_another_score_is_a_conflict(api: Api, member: str) -> None:
    assert api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                           headers=bearer(api.keys.admin)).status_code == 201
    body = _problem(api.client.post("/v1/members/M-1/surveys", json={**ANSWER, "score": 3},
                                    headers=bearer(api.keys.admin)), 409, "conflict")
    assert "already has an nps answer at 2026-05-30T16:20:00+00:00" in body["detail"]
    assert [row[2] for row in _stored(api)] == [9]


def test_an_answer_imported_first_is_found_or_conflicts(api: Api, member: str,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "surveys.csv"
    path.write_text("member_id,kind,score,answered_at\n"
                    "M-1,commitment,6,2026-05-01T10:00:00+02:00\n", encoding="utf-8")
    assert import_surveys(api.engine, path, API_NOW).committed
    other = api.client.post("/v1/members/M-1/surveys", json={
        "kind": "commitment", "score": 2, "answered_at": "2026-05-01T08:00:00Z"},
        headers=bearer(api.keys.admin))
    assert "with score 6, not 2" in _problem(other, 409, "conflict")["detail"]
    same = api.client.post("/v1/members/M-1/surveys", json={
        "kind": "commitment", "score": 6, "answered_at": "2026-05-01T08:00:00Z"},
        headers=bearer(api.keys.admin))
    assert same.status_code == 200 and same.json()["source"] == "file:surveys.csv", same.text
    assert len(_stored(api)) == 1


@pytest.mark.parametrize(("change", "field", "detail"), [
    ({"score": 11}, "score", "nps scores are 0 to 10, not 11"),
    ({"kind": "commitment", "score": 0}, "score", "commitment scores are 1 to 7, not 0"),
    ({"score": "9"}, "score", "Input should be a valid integer"),
    ({"score": 8.5}, "score", "Input should be a valid integer"),
    ({"kind": "csat"}, "kind", "Input should be 'nps' or 'commitment'"),
    ({"answered_at": "2026-05-30T18:20:00"}, "answered_at", "needs a UTC offset"),
    ({"answered_at": "2026-06-02T12:00:00Z"}, "answered_at", "is in the future"),
    ({"extra": 1}, "extra", "unknown field; remove it"),
])
def test_a_bad_field_is_named(api: Api, member: str, change: dict, field: str,
                              detail: str) -> None:
    body = _problem(api.client.post("/v1/members/M-1/surveys", json={**ANSWER, **change},
                                    headers=bearer(api.keys.admin)), 422, "validation")
    assert [e["field"] for e in body["errors"]] == [field], body
    assert detail in body["errors"][0]["detail"], body
    assert _stored(api) == []


def test_a_missing_field_is_named(api: Api, member: str) -> None:
    body = _problem(api.client.post("/v1/members/M-1/surveys", json={"kind": "nps",
                                    "score": 9}, headers=bearer(api.keys.admin)),
                    422, "validation")
    assert [(e["field"], e["detail"]) for e in body["errors"]] == [
        ("answered_at", "required field is missing")]


def test_an_unknown_member_is_404(api: Api) -> None:
    body = _problem(api.client.post("/v1/members/M-404/surveys", json=ANSWER,
                                    headers=bearer(api.keys.ams)), 404, "not-found")
    assert "'M-404'" in body["detail"]
    assert _stored(api) == []


def test_an_erased_member_takes_no_answer(api: Api, member: str) -> None:
    assert api.client.post("/v1/members/M-1/erase",
                           headers=bearer(api.keys.admin)).status_code == 200
    body = _problem(api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                                    headers=bearer(api.keys.admin)), 422, "rejected")
    assert "was erased" in body["detail"]
    assert _stored(api) == []


def test_a_pos_key_answers_only_for_its_programs_members(api: Api, member: str) -> None:
    fm = create_api_key(api.engine, "till-fm", "pos", ["FM-*"], API_NOW)[1]
    body = _problem(api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                                    headers=bearer(fm)), 403, "forbidden-member")
    assert "'M-1'" in body["detail"]
    assert _stored(api) == []
    # Utrecht's till takes part in Bean There, M-1's program.
    assert api.client.post("/v1/members/M-1/surveys", json=ANSWER,
                           headers=bearer(api.keys.utr)).status_code == 201


def test_no_key_is_401(api: Api, member: str) -> None:
    _problem(api.client.post("/v1/members/M-1/surveys", json=ANSWER), 401, "unauthenticated")


def test_the_endpoint_is_documented_with_an_example(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    post = spec["paths"]["/v1/members/{member_id}/surveys"]["post"]
    assert set(post["responses"]) >= {"200", "201", "404", "409", "422"}
    request = spec["components"]["schemas"]["SurveyRequest"]
    assert request["examples"][0] == ANSWER
