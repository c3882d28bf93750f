"""RFC 9457 problem details: every 4xx and 5xx the API sends, with the offending fields named
by their path."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from loyalty_engine.api.idempotency import IdempotencyConflictError
from loyalty_engine.domain import errors
from loyalty_engine.domain.events import id_rule
from loyalty_engine.services.members import MemberNotFoundError
from loyalty_engine.store.errors import DATABASE_ERRORS, DatabaseError, as_database_error

PROBLEM_JSON = "application/problem+json"
# Seconds a till is told to wait before sending a write again that met a busy or lost
# database: its transaction was rolled back, and its idempotency key makes the retry safe.
RETRY_AFTER_S = 2
_log = logging.getLogger("loyalty_engine.api")

_TITLES = {
    400: "Malformed request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Content too large",
    415: "Unsupported media type", 422: "Request cannot be processed",
    500: "Internal server error", 503: "Service unavailable",
}


class Problem(Exception):
    """An error the API answers with a problem document."""

    def __init__(self, status: int, kind: str, detail: str,
                 errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = errors
        self.headers = headers


def problem_response(status: int, kind: str, detail: str, instance: str | None = None,
                     errors: list[dict[str, str]] | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    """A problem+json response: type names the kind of problem, detail says what to change."""
    body: dict[str, Any] = {
        "type": f"urn:loyalty-engine:problem:{kind}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(readable path, JSON pointer) of a validation error's location, without its 'body'."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    readable = ""
    for part in parts:
        readable += f"[{part}]" if isinstance(part, int) else (
            f".{part}" if readable else str(part))
    pointer = "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return readable, pointer


_FRIENDLY = {
    "extra_forbidden": "unknown field; remove it",
    "missing": "required field is missing",
    "timezone_aware": "needs a UTC offset, e.g. 2026-03-01T09:30:00+01:00 (a time without one "
                      "is ambiguous)",
}


def validation_errors(raw: list[Any]) -> list[dict[str, str]]:
    """One entry per failed field: its path, a JSON pointer to it, and what is wrong."""
    found = []
    for error in raw:
        loc = tuple(error.get("loc", ()))
        readable, pointer = field_path(loc)
        blamed = getattr((error.get("ctx") or {}).get("error"), "field", None)
        if not readable and isinstance(blamed, str):  # a check across fields names one
            readable = blamed
            pointer = "#/" + "/".join(p for p in re.split(r"[.\[\]]+", blamed) if p)
        message = str(error.get("msg", "is invalid"))
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        message = _FRIENDLY.get(str(error.get("type")), id_rule(error) or message)
        entry = {"field": readable or "body", "pointer": pointer, "detail": message}
        if loc and loc[0] in ("query", "path", "header"):
            entry["in"] = str(loc[0])
        found.append(entry)
    return found


# Service errors by the status they mean; the first match wins (subclasses first).
_STATUS: list[tuple[type[Exception], int, str]] = [
    (errors.PurchaseConflictError, 409, "conflict"),
    (errors.RefundConflictError, 409, "conflict"),
    (errors.RedemptionConflictError, 409, "conflict"),
    (IdempotencyConflictError, 409, "conflict"),
    (errors.AdjustmentConflictError, 409, "conflict"),
    (MemberNotFoundError, 404, "not-found"),
    (errors.NotFoundError, 404, "not-found"),
    (errors.SchemaNotCurrentError, 503, "schema-not-current"),
    (errors.LoyaltyError, 422, "rejected"),
]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(exc.status, exc.kind, exc.detail, request.url.path,
                                exc.errors, exc.headers)

    @app.exception_handler(errors.LoyaltyError)
    async def _service(request: Request, exc: errors.LoyaltyError) -> Response:
        status, kind = next((s, k) for t, s, k in _STATUS if isinstance(exc, t))
        return problem_response(status, kind, str(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        raw = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in raw):
            error = next(e for e in raw if e.get("type") == "json_invalid")
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = error.get("loc", ("body", 0))[-1]
            return problem_response(400, "malformed-json",
                                    f"the body is not valid JSON: {reason} at character "
                                    f"{position}", request.url.path)
        content_type = request.headers.get("content-type", "")
        if any(tuple(e.get("loc", ())) == ("body",) for e in raw) and "json" not in content_type:
            return problem_response(415, "media-type", "send the body as JSON, with "
                                    "'Content-Type: application/json'", request.url.path)
        found = validation_errors(raw)
        detail = "; ".join(f"{e['field']}: {e['detail']}" for e in found[:5])
        if len(found) > 5:
            detail += f"; and {len(found) - 5} more"
        return problem_response(422, "validation", detail, request.url.path, found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
        kind = "http"
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            kind, detail = "malformed-json", ("the body could not be read as JSON (not UTF-8, "
                                              "a number too long, or nested too deep)")
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no endpoint {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, kind, detail, request.url.path,
                                headers=getattr(exc, "headers", None))

    async def _database(request: Request, exc: Exception) -> Response:
        failure = as_database_error(exc)
        if failure is None or not failure.unavailable:
            raise exc  # to _unexpected below: logged, 500
        _log.warning("database unavailable on %s %s (answered 503): %s: %s", request.method,
                     request.url.path, failure.name, failure.detail)
        return problem_response(503, "database-busy", "the database could not take this "
                                "request now (another write held its lock past the lock "
                                "timeout, or the connection was lost); nothing was written: "
                                f"send it again, with the same body, after {RETRY_AFTER_S} s",
                                request.url.path, headers={"Retry-After": str(RETRY_AFTER_S)})

    # Registered by class, not inside the catch-all: Starlette re-raises what reaches that
    # one (a traceback in the log), and a busy database is an answer, not a fault.
    for database_error in (*DATABASE_ERRORS, DatabaseError):
        app.add_exception_handler(database_error, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # Logged with the traceback for the operator; the caller gets no internals.
        _log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal", "the server failed to handle this request; "
                                "it has been logged, and nothing was written",
                                request.url.path)
