"""Lenient input refused over HTTP (issue 14, item 8), on both databases, with nothing
written: media types that are not JSON, bodies not in UTF-8, two Authorization headers,
instants as numbers, amounts and ids spelt so that two tills' spellings could be two
different things."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api_support import bearer, purchase
from tests.integration.conftest import Api
from tests.integration.test_api import _problem, nothing_written


def _raw(api: Api, body: bytes, content_type: str, token: str | None = None) -> Any:
    return api.client.post("/v1/purchases", content=body, headers={
        **bearer(token or api.keys.ams), "content-type": content_type})


@pytest.mark.parametrize("content_type", [
    "application/jsonx", "text/json", "application/json; charset=latin-1", "text/plain", "",
])
def test_a_body_that_is_not_json_by_its_media_type_is_415(api: Api, content_type: str) -> None:
    with nothing_written(api):
        body = _problem(_raw(api, json.dumps(purchase("T-1")).encode(), content_type), 415)
    assert "Content-Type: application/json" in body["detail"]


def test_json_media_types_that_are_fine() -> None:
    from loyalty_engine.api.request_shape import is_json_media_type

    assert all(is_json_media_type(t) for t in (
        "application/json", "Application/JSON", "application/json; charset=utf-8",
        'application/json;charset="UTF-8"', "application/problem+json"))


@pytest.mark.parametrize(("encoding", "fragment"), [
    ("utf-16", "byte-order mark"), ("utf-16-le", "NUL"), ("utf-32-be", "NUL"),
    ("utf-8-sig", "byte-order mark"), ("latin-1", "not UTF-8"),
])
def test_a_body_not_in_utf8_is_refused_not_guessed(api: Api, encoding: str,
                                                   fragment: str) -> None:
    text = json.dumps({**purchase("T-1"), "member_id": "M-Zoë"}, ensure_ascii=False)
    with nothing_written(api):
        body = _problem(_raw(api, text.encode(encoding), "application/json"), 400)
    assert fragment in body["detail"], body
    # The same request in UTF-8 is taken.
    assert _raw(api, text.encode(), "application/json").status_code == 201


def test_two_authorization_headers_are_refused(api: Api) -> None:
    with nothing_written(api):
        response = api.client.post(
            "/v1/purchases", json=purchase("T-1"),
            headers=[("authorization", f"Bearer {api.keys.utr}"),
                     ("authorization", f"Bearer {api.keys.ams}")])
        assert "one Authorization header" in _problem(response, 400)["detail"]


@pytest.mark.parametrize(("change", "field"), [
    ({"occurred_at": 0}, "occurred_at"),
    ({"total": " 7.20 "}, "total"),
    ({"total": "+7.20"}, "total"),
    ({"total": "\uff17.\uff12\uff10"}, "total"),
    ({"store_id": "AMS-01 "}, "store_id"),
    ({"member_id": "M-1\u2028"}, "member_id"),
    ({"member_id": "M-\u202e1"}, "member_id"),
    ({"transaction_id": "T-\x851"}, "transaction_id"),
])
def test_lenient_fields_are_422_naming_the_field(api: Api, change: dict[str, Any],
                                                 field: str) -> None:
    with nothing_written(api):
        _problem(api.client.post("/v1/purchases", json={**purchase("T-1"), **change},
                                 headers=bearer(api.keys.ams)), 422, field)


def test_a_path_id_with_a_text_direction_character_is_422(api: Api) -> None:
    response = api.client.get("/v1/members/M-\u202e1", headers=bearer(api.keys.admin))
    assert response.status_code == 422, response.text
