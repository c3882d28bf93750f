"""The pieces of `scripts/bench.py api`: the bare baseline app, the server processes and the
load generator (the engine's set-up and the report stay in bench.py).

The bare app is served by uvicorn as a factory, in its own processes:

    BENCH_BARE_DATABASE_URL=sqlite:///... python -m uvicorn --factory bench_api:bare_app

(with scripts/ on PYTHONPATH). It has one POST /v1/purchases that parses the body with a
plain pydantic model (no domain validation) and inserts one row into `purchases` with
SQLAlchemy Core, one committed transaction per request, through a pool as large as the
engine's; and a GET /v1/ready like the engine's, to wait on. It opens its database with the
product's `open_engine`, so SQLite gets the same WAL journal, busy timeout and BEGIN
IMMEDIATE for writes as the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

from loyalty_engine.store.database import open_engine

BARE_URL_ENV = "BENCH_BARE_DATABASE_URL"
POOL = {"pool_size": 8, "max_overflow": 16}  # as loyalty_engine.api.app.create_app
READY_TIMEOUT = 60.0  # seconds for a server to answer GET /v1/ready
STOP_TIMEOUT = 20.0  # seconds for a server to exit after SIGTERM before it is killed
REQUEST_TIMEOUT = 60.0  # per request (SQLite writers may wait 30 s on the busy timeout)

# --- the bare app --------------------------------------------------------------------------

metadata = MetaData()
bare_purchases = Table(
    "purchases", metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=True),
    Column("store_id", String(64), nullable=False),
    Column("transaction_id", String(64), nullable=False),
    Column("member_id", String(64)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("store_id", "transaction_id"),
)


class BareItem(BaseModel):
    sku: str
    category: str
    quantity: Decimal
    unit_price: Decimal


class BarePurchase(BaseModel):
    transaction_id: str
    store_id: str
    member_id: str | None = None
    occurred_at: datetime
    currency: str
    total: Decimal
    items: list[BareItem]


def create_bare_schema(engine: Engine) -> None:
    """CREATE TABLE purchases in an empty database."""
    metadata.create_all(engine)


def bare_app() -> FastAPI:
    """The baseline: parse, insert one row, commit, answer 201 (uvicorn factory)."""
    engine = open_engine(os.environ[BARE_URL_ENV], **POOL)
    app = FastAPI(title="bare purchases", docs_url=None, redoc_url=None)

    @app.post("/v1/purchases", status_code=201)
    def post_purchase(body: BarePurchase) -> dict[str, Any]:
        row = {"store_id": body.store_id, "transaction_id": body.transaction_id,
               "member_id": body.member_id, "occurred_at": body.occurred_at,
               "currency": body.currency, "total_minor": int(body.total * 100),
               "item_count": len(body.items), "recorded_at": datetime.now(UTC)}
        with engine.connect() as conn:
            # loyalty_write: BEGIN IMMEDIATE on SQLite, as the engine's writes (no-op on PG).
            conn = conn.execution_options(loyalty_write=True)
            with conn.begin():
                pid = conn.execute(bare_purchases.insert().values(row)
                                   .returning(bare_purchases.c.id)).scalar_one()
        return {"purchase_id": pid, "store_id": body.store_id,
                "transaction_id": body.transaction_id}

    @app.get("/v1/ready")
    def ready() -> dict[str, str]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ready", "database": engine.dialect.name}

    return app


# --- server processes ----------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass(frozen=True)
class Server:
    """A running server: where it answers, and its process group (supervisor and workers)."""

    base: str
    pgid: int

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) used so far by the processes of its group, from /proc
        (None where there is no /proc). Exited processes' time is not counted, so read it
        while the workers are up."""
        try:
            entries = os.listdir("/proc")
        except OSError:
            return None
        ticks = 0
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) == self.pgid:  # fields: state, ppid, pgrp, ..., utime, stime
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(name: str, command: Sequence[str], port: int, log: Path,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[Server]:
    """Start a server in its own process group, wait until GET /v1/ready answers 200, yield
    it; stop it with SIGTERM afterwards (SIGKILL to the group if it lingers), also when the
    benchmark fails."""
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                                start_new_session=True)
    try:
        _wait_ready(name, proc, base, log)
        yield Server(base, proc.pid)
    finally:
        _stop(proc)


def _wait_ready(name: str, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    with httpx2.Client(base_url=base, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the {name} server exited with {proc.returncode} before it "
                                 f"was ready; its log ends:\n{tail(log)}")
            try:
                response = client.get("/v1/ready")
            except httpx2.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code}: {response.text[:300]}"
            time.sleep(0.1)
    raise SystemExit(f"the {name} server was not ready after {READY_TIMEOUT:.0f} s ({last}); "
                     f"its log ends:\n{tail(log)}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process took the id
        return False
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server (uvicorn's supervisor stops its workers), then SIGKILL to its
    process group if anything of it is still there after STOP_TIMEOUT."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(STOP_TIMEOUT)
    deadline = time.monotonic() + 5.0
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5.0)


# --- load ----------------------------------------------------------------------------------

@dataclass
class Load:
    """What one stream of requests against one server did."""

    sent: int = 0
    ok: int = 0
    seconds: float = 0.0
    cut_short: bool = False
    server_cpu: float | None = None  # CPU seconds of the server's processes during the load
    client_cpu: float = 0.0  # CPU seconds of this process (the load generator) during it
    latencies: list[float] = field(default_factory=list)  # seconds, of 2xx responses
    statuses: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)  # the first few failures, for the report
    log_tail: str = ""  # the end of the server's log, kept when requests failed

    @property
    def errors(self) -> int:
        return self.sent - self.ok

    @property
    def rps(self) -> float:
        """2xx responses per second of wall time."""
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the 2xx latencies, in seconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))]

    def figures(self) -> dict[str, object]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(0.50) * 1000, 2),
            "p99_ms": round(self.percentile(0.99) * 1000, 2),
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "cut_short": self.cut_short,
            # CPU per request: steadier than rates on a small, shared machine.
            "server_cpu_ms": (None if self.server_cpu is None or not self.sent
                              else round(self.server_cpu / self.sent * 1000, 3)),
            "client_cpu_ms": round(self.client_cpu / self.sent * 1000, 3) if self.sent else None,
            "statuses": dict(sorted(self.statuses.items())),
            "error_samples": self.samples,
        }


async def _post_all(base: str, token: str, bodies: Sequence[bytes], concurrency: int,
                    time_cap: float) -> Load:
    load = Load()
    cpu_started = time.process_time()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    next_index = 0
    async with httpx2.AsyncClient(base_url=base, headers=headers, limits=limits,
                                  timeout=REQUEST_TIMEOUT) as client:
        started = time.perf_counter()
        deadline = started + time_cap

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                if time.perf_counter() >= deadline:
                    load.cut_short = True
                    return
                body = bodies[next_index]
                next_index += 1
                load.sent += 1
                sent_at = time.perf_counter()
                try:
                    response = await client.post("/v1/purchases", content=body)
                except httpx2.HTTPError as exc:
                    load.statuses[type(exc).__name__] += 1
                    if len(load.samples) < 3:
                        load.samples.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - sent_at
                load.statuses[str(response.status_code)] += 1
                if 200 <= response.status_code < 300:
                    load.ok += 1
                    load.latencies.append(elapsed)
                elif len(load.samples) < 3:
                    load.samples.append(f"{response.status_code}: {response.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        load.seconds = time.perf_counter() - started
        load.client_cpu = time.process_time() - cpu_started
    return load


def post_all(server: Server, token: str, bodies: Sequence[bytes], concurrency: int,
             time_cap: float) -> Load:
    """POST each body to /v1/purchases with `concurrency` requests in flight (one keep-alive
    connection each), until all are sent or `time_cap` seconds have passed."""
    cpu_before = server.cpu_seconds()
    load = asyncio.run(_post_all(server.base, token, bodies, concurrency, time_cap))
    cpu_after = server.cpu_seconds()
    if cpu_before is not None and cpu_after is not None:
        load.server_cpu = cpu_after - cpu_before
    return load
