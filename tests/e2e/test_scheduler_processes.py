"""Scheduler processes against one database: two ticks at once, a tick killed with SIGKILL
mid-run and run again, and two schedulers without the lock (natural keys alone) all leave
every effect exactly once, the same as one uninterrupted tick. A second process on a
locked database waits, or says so and exits."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from loyalty_engine.services import scheduling
from loyalty_engine.store import tables
from loyalty_engine.store.database import open_engine
from tests.conftest import _fresh_database
from tests.e2e.cli import LOYALTY, ok, purchase, run, write_jsonl
from tests.integration.test_scheduler import SHOP, _state

FIRST = "2026-01-01T00:30:00+01:00"
LATER = "2026-07-15T12:00:00+02:00"
# The uninterrupted run's result per backend, computed once (the data is deterministic).
_EXPECTED: dict[str, dict[str, Any]] = {}


@pytest.fixture
def reference_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> Iterator[str]:
    """A second fresh database of the same kind, for the uninterrupted run."""
    (tmp_path / "reference").mkdir()
    yield from _fresh_database(backend, tmp_path / "reference", request, migrated=True)


def _prepare(url: str, tmp_path: Path) -> None:
    """The shop program, a first tick on New Year's Day, and half a year of purchases of
    30 members (two or three visits a month, some months over 100 euros)."""
    program = tmp_path / "shop.yaml"
    program.write_text(SHOP, encoding="utf-8")
    ok("rules", "apply", program, "--effective-from", "2025-12-01T00:00:00+00:00",
       database=url)
    ok("scheduler", "tick", "--allow-future", "--as-of", FIRST, database=url)
    records = []
    for member in range(30):
        for month in range(1, 7):
            for visit in range(2 + (member + month) % 2):
                day = datetime(2026, month, 3 + 7 * visit, 11, tzinfo=UTC)
                amount = f"{20 + (member * 7 + month * 3) % 40}.00"
                records.append(purchase(
                    f"T-{member}-{month}-{visit}", f"M-{member:03d}", day.isoformat(),
                    [("BAG", "goods", "1", amount), ("FLAT-WHITE", "coffee", "2", "3.00")],
                    f"{int(amount[:-3]) + 6}.00"))
    data = write_jsonl(tmp_path / f"year-{hash(url) & 0xffff}.jsonl", records)
    ok("purchases", "import", data, database=url)


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOYALTY_DEBUG",)}
    env["LOYALTY_DATABASE_URL"] = url
    return env


def _tick(url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([LOYALTY, "scheduler", "tick", "--allow-future",
"--as-of", LATER, *extra],
                            env=_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _state_of(url: str) -> dict[str, Any]:
    engine = open_engine(url)
    try:
        return _state(engine)
    finally:
        engine.dispose()


def _runs_done(url: str) -> int:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(
                func.sum(tables.scheduler_watermarks.c.runs), 0))).scalar_one())
    finally:
        engine.dispose()


def _reference(url: str, tmp_path: Path) -> dict[str, Any]:
    kind = make_url(url).get_backend_name()
    if kind not in _EXPECTED:
        _prepare(url, tmp_path)
        ok("scheduler", "tick", "--allow-future", "--as-of", LATER, database=url)
        state = _state_of(url)
        # The half year did pay out: bonuses, expired stamps and vouchers, reviews.
        assert any(kind == "earn" and ref.startswith("bonus:") for _, kind, _, ref
                   in state["ledger"])
        assert any(job == "expire" for job, _, _ in state["effects"])
        assert any(status == "expired" for _, status in state["vouchers"])
        assert any(reviewed != "None" for _, _, reviewed in state["tiers"])
        _EXPECTED[kind] = state
    return _EXPECTED[kind]


# Processes racing on one database: PostgreSQL's case (on SQLite, one writer at a time and
# the scheduler lock make the second wait: see the last test).
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_two_ticks_started_together_produce_each_effect_once(
    db_url: str, reference_url: str, tmp_path: Path
) -> None:
    expected = _reference(reference_url, tmp_path)
    _prepare(db_url, tmp_path)
    first, second = _tick(db_url, "--json"), _tick(db_url, "--json")
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert _state_of(db_url) == expected
    ok("db", "check", database=db_url)


def test_a_tick_killed_mid_run_and_run_again_loses_nothing(
    db_url: str, reference_url: str, tmp_path: Path
) -> None:
    expected = _reference(reference_url, tmp_path)
    _prepare(db_url, tmp_path)
    before = _runs_done(db_url)
    victim = _tick(db_url)
    deadline = time.monotonic() + 120
    while _runs_done(db_url) < before + 40 and victim.poll() is None:
        assert time.monotonic() < deadline, "the tick made no progress"
        time.sleep(0.02)
    assert victim.poll() is None, "the tick finished before it could be killed; grow the data"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    partial = _state_of(db_url)
    assert partial != expected  # killed half-way: some fire times not done yet

    rerun = ok("scheduler", "tick", "--allow-future",
               "--as-of", LATER, "--json", database=db_url).json()
    assert rerun["runs"] and rerun["failed"] == 0
    assert _state_of(db_url) == expected
    ok("db", "check", database=db_url)


# Processes racing on one database: PostgreSQL's case (on SQLite, one writer at a time and
# the scheduler lock make the second wait: see the last test).
@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)],
                         indirect=True)
def test_without_the_lock_natural_keys_alone_keep_each_effect_once(
    db_url: str, reference_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _reference(reference_url, tmp_path)
    _prepare(db_url, tmp_path)

    @contextmanager
    def no_lock(*args: Any) -> Iterator[bool]:
        yield False

    monkeypatch.setattr(scheduling, "_scheduler_lock", no_lock)
    as_of = datetime.fromisoformat(LATER)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def scheduler() -> None:
        engine = open_engine(db_url)
        try:
            barrier.wait()
            report = scheduling.run_tick(engine, as_of, lambda: datetime.now(UTC))
            assert report.failed == 0, [r.error for r in report.runs if r.error]
        except BaseException as error:
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert _state_of(db_url) == expected
    ok("db", "check", database=db_url)


def test_a_second_scheduler_on_a_locked_sqlite_database_waits_or_says_so(
    sqlite_db_url: str, tmp_path: Path
) -> None:
    lock_path = Path(str(make_url(sqlite_db_url).database) + ".scheduler-lock")
    with lock_path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another scheduler is busy
        refused = run("scheduler", "tick", "--allow-future", "--as-of", FIRST, "--no-wait",
                      database=sqlite_db_url)
        assert refused.code == 1
        assert "another scheduler is running jobs on this database" in refused.err_flat
        assert "Traceback" not in refused.stderr
        waiting = _tick(sqlite_db_url)
        assert waiting.stderr is not None
        # It says it waits (once started up), and it does wait, until the lock is free.
        line = waiting.stderr.readline()
        assert "another scheduler is running jobs on this database; waiting" in line
        time.sleep(0.5)
        assert waiting.poll() is None
        fcntl.flock(held, fcntl.LOCK_UN)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "Traceback" not in err
    assert "ran" in out or "nothing due" in out
