"""Two writers at once, each with its own engine, posting overlapping sets of purchases.

On SQLite the writers must queue on the write lock (no "database is locked"); on PostgreSQL
they run side by side and must still store every purchase exactly once.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from loyalty_engine.domain.events import PurchaseEvent
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.records.purchase_writer import PurchaseOutcome
from loyalty_engine.services.importing import ImportReport, import_purchases
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store.database import open_engine
from tests.integration.helpers import (
    BEAN_THERE,
    NOW,
    balance,
    counts,
    event,
    ledger_sums,
    purchase_body,
    write_jsonl,
)

MEMBERS = [f"M-{n}" for n in range(6)]
SEEDED = [1000 + n for n in range(len(MEMBERS))]  # one earlier purchase per member


def _items(n: int) -> list[tuple[str, str, str, str]]:
    return [("FLAT-WHITE", "coffee", str(n % 4 + 1), "3.60")]


def _body(n: int) -> dict[str, Any]:
    """Purchase n: member n % 6, (n % 4 + 1) flat whites at 3.60."""
    return purchase_body(f"T-{n:04d}", member_id=MEMBERS[n % len(MEMBERS)], items=_items(n))


def _event(n: int) -> PurchaseEvent:
    return event(f"T-{n:04d}", member_id=MEMBERS[n % len(MEMBERS)], items=_items(n))


def _points(n: int) -> int:
    return (n % 4 + 1) * 360 // 100


def _seeded(engine: Engine) -> None:
    """The program and the members, as in a running system."""
    apply_program_files(engine, [BEAN_THERE], NOW)
    for n in SEEDED:
        record_purchase(engine, _event(n), NOW)


def _run_together(db_url: str, jobs: list[Callable[[Engine], Any]]) -> list[Any]:
    """Run each job in its own thread with its own engine, started together; fail on errors."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[str] = []

    def run(index: int) -> None:
        engine = open_engine(db_url)
        try:
            barrier.wait()
            results[index] = jobs[index](engine)
        except BaseException:
            errors.append(traceback.format_exc())
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == [], "a writer failed:\n" + "\n".join(errors)
    return results


def _assert_exact(engine: Engine, numbers: set[int]) -> None:
    """Each purchase once, one ledger entry and lot each, balances equal to the points."""
    c = counts(engine)
    assert c["purchases"] == len(numbers)
    assert c["purchase_items"] == len(numbers)
    assert c["ledger_entries"] == len(numbers)
    assert c["point_lots"] == len(numbers)
    assert c["members"] == len(MEMBERS)
    for index, member in enumerate(MEMBERS):
        expected = sum(_points(n) for n in numbers if n % len(MEMBERS) == index)
        assert balance(engine, member, "bean-there") == expected, member
    assert check_balances(engine).mismatches == []
    assert all(led == bal == lots for led, bal, lots in ledger_sums(engine).values())


def test_two_writers_posting_one_by_one_store_each_purchase_once(
    engine: Engine, db_url: str
) -> None:
    apply_program_files(engine, [BEAN_THERE], NOW)
    # Writer A posts 0..59 in order, writer B 30..89 shuffled: 30 purchases overlap.
    a_numbers = list(range(0, 60))
    b_numbers = list(range(30, 90))
    random.Random(7).shuffle(b_numbers)

    def writer(numbers: list[int]) -> Callable[[Engine], list[PurchaseOutcome]]:
        return lambda eng: [record_purchase(eng, _event(n), NOW) for n in numbers]

    a, b = _run_together(db_url, [writer(a_numbers), writer(b_numbers)])
    outcomes: list[PurchaseOutcome] = [*a, *b]
    fresh = {o.transaction_id: o for o in outcomes if not o.replayed}
    assert sorted(fresh) == [f"T-{n:04d}" for n in range(90)]
    assert sum(o.replayed for o in outcomes) == 30
    # Whoever lost the race was told the winner's purchase and awards.
    for o in outcomes:
        assert (o.purchase_id, o.awards) == (fresh[o.transaction_id].purchase_id,
                                             fresh[o.transaction_id].awards)
    _assert_exact(engine, set(range(90)))


def test_two_imports_of_overlapping_files_store_each_purchase_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _seeded(engine)
    a_file = write_jsonl(tmp_path / "a.jsonl", [_body(n) for n in range(0, 400)])
    b_file = write_jsonl(tmp_path / "b.jsonl", [_body(n) for n in range(200, 600)])

    a, b = _run_together(db_url, [
        lambda eng: import_purchases(eng, a_file, NOW),
        lambda eng: import_purchases(eng, b_file, NOW),
    ])
    assert a.committed and b.committed
    assert (a.recorded + b.recorded, a.replayed + b.replayed) == (600, 200)
    assert a.points["bean-there"] + b.points["bean-there"] == sum(_points(n) for n in range(600))
    _assert_exact(engine, set(range(600)) | set(SEEDED))


def test_purchase_posted_while_an_import_holding_it_runs(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """A till posts purchases live while a back-office import of the same purchases runs.

    The import writes in batches; the till posts purchases the import reaches in a later
    batch. Whoever stores a purchase first wins; the other sees a replay. Nobody fails.
    """
    _seeded(engine)
    path = write_jsonl(tmp_path / "day.jsonl", [_body(n) for n in range(300)])
    first_batch_done = threading.Event()

    def slow_progress(done: int, total: int) -> None:
        if not first_batch_done.is_set():
            first_batch_done.set()
            time.sleep(0.5)  # a slow reader or terminal; the import keeps its transaction

    def importer(eng: Engine) -> ImportReport:
        return import_purchases(eng, path, NOW, batch_size=50, progress=slow_progress)

    def till(eng: Engine) -> list[PurchaseOutcome]:
        assert first_batch_done.wait(timeout=60)
        return [record_purchase(eng, _event(n), NOW) for n in (299, 298, 301)]

    report, posted = _run_together(db_url, [importer, till])
    assert report.committed
    assert report.recorded + sum(not o.replayed for o in posted) == 301
    _assert_exact(engine, set(range(300)) | {301} | set(SEEDED))


def test_two_batched_imports_of_overlapping_files_started_apart(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Two large imports (batched) of overlapping files, the second started a moment later."""
    _seeded(engine)
    a_file = write_jsonl(tmp_path / "a.jsonl", [_body(n) for n in range(0, 300)])
    b_file = write_jsonl(tmp_path / "b.jsonl", [_body(n) for n in range(150, 450)])
    a_first_batch = threading.Event()

    def slow_progress(done: int, total: int) -> None:
        if not a_first_batch.is_set():
            a_first_batch.set()
            time.sleep(0.5)

    def import_a(eng: Engine) -> ImportReport:
        return import_purchases(eng, a_file, NOW, batch_size=50, progress=slow_progress)

    def import_b(eng: Engine) -> ImportReport:
        assert a_first_batch.wait(timeout=60)
        return import_purchases(eng, b_file, NOW, batch_size=50)

    a, b = _run_together(db_url, [import_a, import_b])
    assert a.committed and b.committed
    assert (a.recorded + b.recorded, a.replayed + b.replayed) == (450, 150)
    _assert_exact(engine, set(range(450)) | set(SEEDED))


def test_an_application_role_without_superuser_rights_can_import(
    backend: str, db_url: str, tmp_path: Path
) -> None:
    """Production connects as an ordinary role: nothing on the write path may need more."""
    if backend != "postgresql":
        pytest.skip("roles are a PostgreSQL matter")
    role = f"loyalty_app_{uuid.uuid4().hex[:8]}"
    url = make_url(db_url)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(False),
                         autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')  # type: ignore[arg-type]
        for what in ("TABLES", "SEQUENCES"):
            admin.execute(  # type: ignore[arg-type]
                f'GRANT ALL ON ALL {what} IN SCHEMA public TO "{role}"')
    app = open_engine(url.set(username=role).render_as_string(False))
    try:
        apply_program_files(app, [BEAN_THERE], NOW)
        path = write_jsonl(tmp_path / "day.jsonl", [_body(n) for n in range(50)])
        assert import_purchases(app, path, NOW).recorded == 50
        assert record_purchase(app, _event(49), NOW).replayed
    finally:
        app.dispose()
        with psycopg.connect(url.set(drivername="postgresql").render_as_string(False),
                             autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')  # type: ignore[arg-type]
            admin.execute(f'DROP ROLE "{role}"')  # type: ignore[arg-type]
