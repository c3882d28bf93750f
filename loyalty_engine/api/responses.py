"""Sending a stored write response, and the problem documents each endpoint declares."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from loyalty_engine.api.idempotency import Response as StoredResponse
from loyalty_engine.api.problems import PROBLEM_JSON

REPLAY_HEADER = "Idempotent-Replayed"


def send(stored: StoredResponse) -> Response:
    """The stored status and body; a replay says so in its headers."""
    headers = {REPLAY_HEADER: "true"} if stored.replayed else None
    return Response(stored.body, status_code=stored.status, media_type="application/json",
                    headers=headers)


class ProblemDocument(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "urn:loyalty-engine:problem:validation",
        "title": "Request cannot be processed", "status": 422,
        "detail": "items[0].unit_price: amount has more decimals than EUR allows (2)",
        "instance": "/v1/purchases",
        "errors": [{"field": "items[0].unit_price", "pointer": "#/items/0/unit_price",
                    "detail": "amount has more decimals than EUR allows (2)"}]}]})

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


_MEANING = {
    400: "malformed JSON",
    401: "no API key, or an unknown or revoked one",
    403: "the key's scope or stores do not allow this",
    404: "no such member, charge or redemption",
    409: "the idempotency key was used with a different body",
    413: "the body is over 1 MiB",
    415: "the body is not sent as application/json",
    422: "a field is invalid, or the request cannot be done (the detail says what to change)",
    503: "the database is unreachable, not migrated, or held by another write past the lock "
         "timeout: send the same request again after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the problem responses an endpoint can send: those given, and
    503, which every endpoint that reads the database can meet."""
    schema = ProblemDocument.model_json_schema()
    return {status: {"description": _MEANING[status],
                     "content": {PROBLEM_JSON: {"schema": schema}}}
            for status in sorted({*statuses, 503})}
