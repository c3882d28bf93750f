"""What the API tells its operators: a metric and an access log line for every request, and
GET /metrics (Prometheus text format, no key: see the README's Observability section)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_engine import metrics

access_log = logging.getLogger("loyalty.access")
router = APIRouter()
METRICS_ENV = "LOYALTY_METRICS"  # "off" turns GET /metrics off (`serve --no-metrics`)
UNMATCHED = "unmatched"  # the route label of a path no route knows (bounded, unlike paths)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A client may send any token as a method: labels keep the standard ones, the rest "other".
METHODS = WRITE_METHODS | {"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"}
# Writes by route template; a write route not named here is counted under its last literal
# path segment, so that new routes are counted too.
WRITE_KINDS = {
    "/v1/purchases": "purchase",
    "/v1/refunds": "refund",
    "/v1/members": "enrolment",
    "/v1/redemptions": "redemption",
    "/v1/redemptions/{redemption_id}/reverse": "reversal",
    "/v1/fees/{charge_id}/pay": "fee_payment",
}


def metrics_enabled(explicit: bool | None = None) -> bool:
    """Whether GET /metrics is served: as asked, else unless LOYALTY_METRICS says off."""
    if explicit is not None:
        return explicit
    return os.environ.get(METRICS_ENV, "on").strip().lower() not in {"off", "0", "false", "no"}


@router.get("/metrics", include_in_schema=False)
def get_metrics() -> Response:
    """Every counter and histogram, across the server's workers."""
    return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)


def route_template(scope: Scope, routes: Sequence[BaseRoute] = ()) -> str:
    """The template of the route that answered, or else of the one of `routes` that would
    have (a request refused before routing: by the key check, the body limit), never the
    raw path."""
    route = scope.get("route")
    if route is None:
        for candidate in routes:
            match, _ = candidate.matches(scope)
            if match is not Match.NONE:
                route = candidate
                if match is Match.FULL:
                    break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def write_kind(route: str) -> str:
    """What a write route writes, for loyalty_writes_total."""
    if route in WRITE_KINDS:
        return WRITE_KINDS[route]
    literal = [part for part in route.split("/") if part and not part.startswith("{")]
    return literal[-1] if literal else UNMATCHED


def write_outcome(status: int, replayed: bool) -> str:
    """recorded, replayed, refused (4xx: nothing written) or failed (5xx)."""
    if status >= 500:
        return "failed"
    if status >= 400:
        return "refused"
    return "replayed" if replayed else "recorded"


class Observe:
    """Outermost middleware: times every HTTP request, counts it by method, route template
    and status (a write also by kind and outcome), and logs one access line without any
    header (so never the API key)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes  # to name the route of a request refused before routing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "replayed": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["replayed"] = any(
                    k.lower() == b"idempotent-replayed" and v.lower() == b"true"
                    for k, v in message.get("headers", ()))
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:  # an unexpected error still counts, as the 500 it becomes
            self._record(scope, int(seen["status"]), bool(seen["replayed"]),
                         time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, replayed: bool, seconds: float) -> None:
        method = str(scope.get("method", ""))
        route = route_template(scope, self.routes)
        label = method if method in METHODS else "other"
        metrics.HTTP_REQUESTS.labels(label, route, str(status)).inc()
        metrics.HTTP_DURATION.labels(label, route).observe(seconds)
        if method in WRITE_METHODS and route.startswith("/v1/"):
            metrics.WRITES.labels(write_kind(route), write_outcome(status, replayed)).inc()
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            where = f"{client[0]}:{client[1]}" if client else "-"
            path = str(scope.get("path", ""))
            # uvicorn's own shape (which this replaces), with the time taken
            access_log.info(
                '%s - "%s %s HTTP/%s" %d %.1f ms', where, method, path,
                scope.get("http_version", "1.1"), status, seconds * 1000,
                extra={"method": method, "path": path, "route": route, "status": status,
                       "duration_ms": round(seconds * 1000, 3), "client": where})
