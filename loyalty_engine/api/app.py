"""The FastAPI application: routes, problem documents, the body limit and the database."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI
from sqlalchemy import Engine

from loyalty_engine.api import (
    docs_assets,
    insights,
    limits,
    observe,
    operator,
    problems,
    reads,
    writes,
)
from loyalty_engine.api.auth import Authenticate
from loyalty_engine.api.request_shape import RequestBody
from loyalty_engine.store.database import open_engine

Clock = Callable[[], datetime]


def _system_clock() -> datetime:
    return datetime.now(UTC)


def create_app(engine: Engine | None = None, clock: Clock | None = None,
               metrics: bool | None = None) -> FastAPI:
    """The API over `engine` (default: LOYALTY_DATABASE_URL, else ./loyalty.db); `clock`
    gives "now" (tests and rehearsals pass their own); GET /metrics unless `metrics` is
    False (default: unless LOYALTY_METRICS=off)."""
    if engine is None:
        # Request threads share the pool; SQLite writers queue on its lock anyway. A write
        # that waits longer than the lock timeout, for a lock or for a pooled connection, is
        # answered 503 (api/problems.py).
        wait = limits.from_environment().lock_timeout
        engine = open_engine(os.environ.get("LOYALTY_DATABASE_URL"), lock_timeout=wait,
                             pool_size=8, max_overflow=16, pool_timeout=wait)
    app = FastAPI(
        title="loyalty-engine POS API",
        version="1",
        summary="Post purchases and refunds, look up members, redeem; every write is "
                "idempotent and every error is application/problem+json.",
        docs_url=None, redoc_url=None,  # served from local assets: docs_assets
    )
    app.state.engine = engine
    app.state.clock = clock or _system_clock
    problems.install(app)
    # The last added runs first: the key is checked before the body is read (its size, then
    # its shape: media type, encoding).
    app.add_middleware(RequestBody)
    app.add_middleware(Authenticate)
    routers = [writes.router, reads.router, insights.router, operator.router,
               docs_assets.router]
    if observe.metrics_enabled(metrics):
        routers.append(observe.router)
    # Outermost: it sees every answer, 401s too, and names their routes by template.
    app.add_middleware(observe.Observe, routes=[r for rt in routers for r in rt.routes])
    for router in routers:
        app.include_router(router)
    return app
