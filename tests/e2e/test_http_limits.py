"""What bounds a request to a real `loyalty serve`, through raw sockets: headers over the
size limit (431 or closed, the worker's memory unmoved), a request line or headers trickled
past the header timeout, a body trickled past the body timeout, a connection that sends
nothing; and a write behind another's lock answered 503 with Retry-After after the lock
timeout, its retry then landing once. The timeouts are set to about a second by the
server's options, so that these tests stay fast."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.api_support import bearer, purchase
from tests.e2e.cli import SHIPPED_RULES, ok
from tests.e2e.server import Server, ago, create_key, fresh_database, serving

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
LOCK_TIMEOUT_S = 1.0
MAX_HEADER_BYTES = 16 * 1024
# How much later than its limit a refusal may come on a busy 2-core test machine.
MARGIN_S = 2.5
LIMITS = ("--header-timeout", str(HEADER_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S),
          "--lock-timeout", str(LOCK_TIMEOUT_S), "--max-header-bytes", str(MAX_HEADER_BYTES))


@dataclass
class Served:
    server: Server
    db_url: str
    token: str


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    """`loyalty serve` with second-long limits over the shipped programs, and a till key."""
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"limits-{backend}")
    with fresh_database(backend, folder, request) as db_url:
        ok("rules", "apply", SHIPPED_RULES, database=db_url)
        token = create_key(db_url, "till-ams", "pos", "AMS-*")
        with serving(db_url, folder / "server.log", extra=LIMITS) as server:
            yield Served(server, db_url, token)


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it reset it)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _problem(answer: bytes, status: int, kind: str) -> dict[str, object]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"content-type: application/problem+json" in head.lower(), head
    assert b"connection: close" in head.lower(), head
    problem: dict[str, object] = json.loads(body)
    assert problem["type"] == f"urn:loyalty-engine:problem:{kind}", problem
    return problem


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _trickle_until_closed(sock: socket.socket, data: bytes, every_s: float,
                          limit_s: float) -> tuple[bytes, float]:
    """Send data a byte every `every_s` until the server closes the connection: what it
    answered, and the seconds it held the connection. Fails if it is held past `limit_s`."""
    started = time.monotonic()
    sock.settimeout(every_s)
    answer = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            chunk = None
        except ConnectionResetError:
            break
        if chunk is not None:
            answer += chunk
            if chunk == b"":
                break
        assert time.monotonic() - started < limit_s, "the trickled connection is still open"
    else:
        raise AssertionError("the whole request was sent, slowly, and not refused")
    sock.settimeout(10)
    answer += _answer(sock)
    return answer, time.monotonic() - started


def test_headers_over_the_size_limit_are_refused_with_431(served: Served) -> None:
    with _connect(served.server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000
                     + b"\r\n\r\n")
        problem = _problem(_answer(sock), 431, "headers-too-large")
    assert f"larger than {MAX_HEADER_BYTES} bytes" in str(problem["detail"])
    # Headers under the limit are served as before.
    with _connect(served.server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Ok: " + b"a" * 8_000
                     + b"\r\nConnection: close\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")


def test_a_32_mb_header_is_cut_off_without_the_worker_holding_it(served: Served) -> None:
    before = _rss_kib(served.server.process.pid)
    started = time.monotonic()
    sent = 0
    with _connect(served.server) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _answer(sock)
    assert sent < 32 * 1024 * 1024, "the server read a 32 MB header to its end"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert time.monotonic() - started < 10
    # Before the limit, this grew a worker by about 50 MB per such header.
    assert _rss_kib(served.server.process.pid) - before < 10 * 1024
    assert httpx2.get(f"{served.server.url}/v1/health").status_code == 200


def test_headers_trickled_past_the_header_timeout_are_408_and_closed(served: Served) -> None:
    request = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000
    with _connect(served.server) as sock:
        answer, held = _trickle_until_closed(sock, request, 0.1,
                                             HEADER_TIMEOUT_S + MARGIN_S)
    problem = _problem(answer, 408, "request-timeout")
    assert f"within {HEADER_TIMEOUT_S:g} s" in str(problem["detail"])
    assert HEADER_TIMEOUT_S * 0.9 <= held <= HEADER_TIMEOUT_S + MARGIN_S, held


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
        served: Served) -> None:
    with _connect(served.server) as sock:
        started = time.monotonic()
        assert _answer(sock) == b""
        held = time.monotonic() - started
    assert HEADER_TIMEOUT_S * 0.9 <= held <= HEADER_TIMEOUT_S + MARGIN_S, held


def test_a_body_trickled_past_the_body_timeout_is_408_and_closed(served: Served) -> None:
    body = json.dumps(purchase("SLOW-1", occurred_at=ago(1))).encode()
    head = (f"POST /v1/purchases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {served.token}\r\nContent-Length: {len(body)}\r\n\r\n")
    with _connect(served.server) as sock:
        sock.sendall(head.encode())
        answer, held = _trickle_until_closed(sock, body, 0.1, BODY_TIMEOUT_S + MARGIN_S)
    problem = _problem(answer, 408, "request-timeout")
    assert f"within {BODY_TIMEOUT_S:g} s" in str(problem["detail"])
    assert BODY_TIMEOUT_S * 0.9 <= held <= BODY_TIMEOUT_S + MARGIN_S, held
    # Nothing was recorded: the same purchase, sent whole, is new.
    posted = httpx2.post(f"{served.server.url}/v1/purchases", headers=bearer(served.token),
                         json=purchase("SLOW-1", occurred_at=ago(1)))
    assert posted.status_code == 201 and "idempotent-replayed" not in posted.headers


def test_a_body_trickled_after_its_answer_is_closed_after_the_body_timeout(
        served: Served) -> None:
    # Without a key the answer (401) comes before the body is read; the body that keeps
    # trickling in afterwards holds the connection no longer than the body timeout.
    head = (b"POST /v1/purchases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n")
    with _connect(served.server) as sock:
        sock.sendall(head)
        answer, held = _trickle_until_closed(sock, b"x" * 5000, 0.1,
                                             BODY_TIMEOUT_S + MARGIN_S)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert held <= BODY_TIMEOUT_S + MARGIN_S, held


def test_a_kept_alive_connection_still_serves_a_second_request(served: Served) -> None:
    with httpx2.Client(base_url=served.server.url) as client:
        for _ in range(2):
            assert client.get("/v1/health").status_code == 200
        time.sleep(HEADER_TIMEOUT_S * 0.5)
        assert client.get("/v1/health").status_code == 200


def test_a_post_behind_another_writers_lock_is_503_then_its_retry_lands(
        served: Served) -> None:
    url = served.server.url
    body = purchase("LOCKED-1", member_id="M-LOCK", occurred_at=ago(1))
    first = httpx2.post(f"{url}/v1/purchases", headers=bearer(served.token),
                        json=purchase("LOCKED-0", member_id="M-LOCK", occurred_at=ago(1)))
    assert first.status_code == 201, first.text
    points = first.json()["points"]["bean-there"]
    if served.db_url.startswith("sqlite"):
        # A long writer (an import, a backup) holding SQLite's write lock.
        path = make_url(served.db_url).database
        assert path is not None
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        release = holder.close
    else:
        # An import holding the member's row in its transaction.
        engine = create_engine(served.db_url.replace("postgresql://", "postgresql+psycopg://"))
        conn = engine.connect()
        conn.begin()
        conn.execute(text("SELECT 1 FROM members WHERE member_id = 'M-LOCK' FOR UPDATE"))

        def release() -> None:
            conn.close()
            engine.dispose()
    try:
        started = time.monotonic()
        busy = httpx2.post(f"{url}/v1/purchases", headers=bearer(served.token), json=body,
                           timeout=30)
        waited = time.monotonic() - started
    finally:
        release()
    assert busy.status_code == 503, busy.text
    assert busy.headers["retry-after"] == "2"
    assert busy.headers["content-type"] == "application/problem+json"
    assert busy.json()["type"] == "urn:loyalty-engine:problem:database-busy"
    assert LOCK_TIMEOUT_S * 0.9 <= waited <= LOCK_TIMEOUT_S + MARGIN_S, waited
    retried = httpx2.post(f"{url}/v1/purchases", headers=bearer(served.token), json=body)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers  # the 503 wrote nothing
    assert retried.json()["points"] == {"bean-there": points}
    shown = httpx2.get(f"{url}/v1/members/M-LOCK/ledger", headers=bearer(served.token))
    assert [e["points"] for e in shown.json()["entries"]] == [points, points]
