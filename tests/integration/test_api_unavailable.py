"""A write that meets a busy or lost database is answered 503 with Retry-After within the
stated lock timeout, nothing written, and the till's retry then lands exactly once: on
SQLite behind another writer's lock, on PostgreSQL behind a member's row lock (a running
import's) and with its connection killed mid-request."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from loyalty_engine.api.app import create_app
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.store.database import open_engine, write_transaction
from tests.api_support import API_NOW, bearer, prepare, purchase

LOCK_TIMEOUT_S = 1.0
# A 503 must come after the lock timeout and well before the old 30-60 s; the margin is
# for a busy 2-core test machine.
MARGIN_S = 3.0


@dataclass(frozen=True)
class Till:
    """The API over an engine whose lock timeout is LOCK_TIMEOUT_S, as `loyalty serve`
    opens it, and the Amsterdam till's key."""

    client: TestClient
    engine: Engine
    token: str

    def post(self, transaction_id: str) -> tuple[httpx2.Response, float]:
        started = time.monotonic()
        response = self.client.post("/v1/purchases", json=purchase(transaction_id),
                                    headers=bearer(self.token))
        return response, time.monotonic() - started


@pytest.fixture
def till(db_url: str) -> Iterator[Till]:
    engine = open_engine(db_url, lock_timeout=LOCK_TIMEOUT_S)
    keys = prepare(engine)
    with TestClient(create_app(engine, clock=lambda: API_NOW),
                    raise_server_exceptions=False) as client:
        yield Till(client, engine, keys.ams)
    engine.dispose()


def _busy(response: httpx2.Response, waited: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "2"
    body: dict[str, Any] = response.json()
    assert body["type"] == "urn:loyalty-engine:problem:database-busy", body
    assert "nothing was written" in body["detail"] and "send it again" in body["detail"]
    assert LOCK_TIMEOUT_S * 0.9 <= waited <= LOCK_TIMEOUT_S + MARGIN_S, waited


def _written(engine: Engine) -> tuple[int, int, int]:
    """(purchases, ledger entries, stored responses)."""
    with engine.connect() as conn:
        return tuple(int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
                     for t in ("purchases", "ledger_entries", "api_responses"))  # type: ignore[return-value]


def _points(engine: Engine) -> tuple[int, int]:
    """M-1's Bean There points: (in the ledger, spendable + pending in the balance)."""
    with engine.connect() as conn:
        return (int(conn.execute(text(
                    "SELECT SUM(points) FROM ledger_entries WHERE member_id = 'M-1' AND "
                    "program_id = 'bean-there'")).scalar_one()),
                int(conn.execute(text(
                    "SELECT points + pending FROM balances WHERE member_id = 'M-1' AND "
                    "program_id = 'bean-there'")).scalar_one()))


def _retry_lands_once(till: Till, before: tuple[int, int, int]) -> None:
    """Nothing of the refused post was written; its retry is a 201 worth 7 points (7.20 EUR
    at Bean There), and a second retry a replay: 14 points in all, the ledger agreeing."""
    assert _written(till.engine) == before
    again, _ = till.post("T-2")
    assert again.status_code == 201, again.text
    assert again.json()["points"] == {"bean-there": 7}
    replay, _ = till.post("T-2")
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    purchases, entries, responses = before
    assert _written(till.engine) == (purchases + 1, entries + 1, responses + 1)
    assert _points(till.engine) == (14, 14)
    assert check_balances(till.engine).mismatches == []


@pytest.mark.parametrize("holder", ["loyalty-writer", "other-sqlite-client"])
def test_a_post_behind_a_long_sqlite_writer_is_503_after_the_lock_timeout(
        till: Till, backend: str, holder: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's write lock (PostgreSQL's row locks are tested below)")
    assert till.post("T-1")[0].status_code == 201
    before = _written(till.engine)
    path = make_url(str(till.engine.url)).database
    assert path is not None
    if holder == "loyalty-writer":
        # An import of this package, in another engine (the command line's 30 s timeout),
        # holding its write transaction open: the till queues on the writer's turn.
        importer = open_engine(str(till.engine.url))
        with write_transaction(importer) as conn:
            conn.execute(text("UPDATE balances SET updated_at = updated_at"))
            response, waited = till.post("T-2")
        importer.dispose()
    else:
        # Any other client of the file (sqlite3, a backup) holding the write lock: the till
        # waits in SQLite's own busy handler.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        response, waited = till.post("T-2")
        other.execute("ROLLBACK")
        other.close()
    _busy(response, waited)
    _retry_lands_once(till, before)


def _locker(till: Till) -> Engine:
    # Outside the till's engine: no lock_timeout (as the command line's import).
    return create_engine(till.engine.url)


def test_a_post_waiting_for_a_member_an_import_holds_is_503_after_the_lock_timeout(
        till: Till, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite's write lock is tested above)")
    assert till.post("T-1")[0].status_code == 201
    before = _written(till.engine)
    locker = _locker(till)
    with locker.connect() as conn, conn.begin():
        # What an import holds while it works through a file: the member's row (written by
        # it, or locked as here), which every write of the member's references.
        conn.execute(text("SELECT * FROM members WHERE member_id = 'M-1' FOR UPDATE"))
        response, waited = till.post("T-2")
    locker.dispose()
    _busy(response, waited)
    _retry_lands_once(till, before)


def test_a_post_whose_connection_is_lost_mid_request_is_503_and_its_retry_lands(
        db_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("a server connection to lose: PostgreSQL")
    # A long lock timeout: the request is still waiting when its connection is killed.
    engine = open_engine(db_url, lock_timeout=60)
    keys = prepare(engine)
    with TestClient(create_app(engine, clock=lambda: API_NOW),
                    raise_server_exceptions=False) as client:
        till = Till(client, engine, keys.ams)
        assert till.post("T-1")[0].status_code == 201
        before = _written(engine)
        locker = _locker(till)
        # pg_stat_activity is read afresh only outside a transaction.
        with locker.connect().execution_options(isolation_level="AUTOCOMMIT") as admin, \
                locker.connect() as holding, ThreadPoolExecutor(1) as pool:
            holding.begin()
            holding.execute(text("SELECT * FROM members WHERE member_id = 'M-1' FOR UPDATE"))
            posted = pool.submit(till.post, "T-2")
            killed = _kill_the_waiting_backend(admin, posted.done)
            response, waited = posted.result(timeout=30)
            holding.rollback()
        locker.dispose()
        assert killed, "the request never waited for the lock"
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "2"
        assert response.json()["type"] == "urn:loyalty-engine:problem:database-busy"
        assert waited < 30
        # The pool drops the dead connection; the retry lands once.
        _retry_lands_once(till, before)
    engine.dispose()


def _kill_the_waiting_backend(admin: Any, done: Any) -> bool:
    """Terminate the backend that waits for a lock (the request's), as a failover or a
    restarted PostgreSQL would; False if none waited within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not done():
        pid = admin.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND "
            "wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar()
        if pid is not None:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            return True
        threading.Event().wait(0.05)
    return False
