"""Two writers at once, each with its own engine, posting overlapping sets of purchases."""

from __future__ import annotations

import random
import threading
import traceback
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from loyalty_engine.services.importing import import_purchases
from loyalty_engine.services.ledger_check import check_balances
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import PurchaseOutcome, record_purchase
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


def _body(n: int) -> dict:
    """Purchase n: member n % 6, (n % 4 + 1) flat whites at 3.60 -> 3, 7, 10 or 14 points."""
    return purchase_body(f"T-{n:04d}", member_id=MEMBERS[n % len(MEMBERS)],
                         items=[("FLAT-WHITE", "coffee", str(n % 4 + 1), "3.60")])


def _points(n: int) -> int:
    return (n % 4 + 1) * 360 // 100


def _run_together(db_url: str, jobs: list[Callable[[Engine], object]]) -> list[object]:
    """Run each job in its own thread with its own engine, started together; re-raise errors."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)
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
    assert errors == [], "\n".join(errors)
    return results


def _assert_exact(engine: Engine, numbers: set[int]) -> None:
    c = counts(engine)
    assert c["purchases"] == len(numbers)
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
    # Writer A posts 0..59, writer B 30..89 in a shuffled order: 30 purchases overlap.
    a_numbers = list(range(0, 60))
    b_numbers = list(range(30, 90))
    random.Random(7).shuffle(b_numbers)

    def writer(numbers: list[int]) -> Callable[[Engine], list[PurchaseOutcome]]:
        def post(eng: Engine) -> list[PurchaseOutcome]:
            return [record_purchase(eng, event(**_kw(n)), NOW) for n in numbers]
        return post

    a, b = _run_together(db_url, [writer(a_numbers), writer(b_numbers)])
    outcomes = [*a, *b]  # type: ignore[misc]
    fresh = [o for o in outcomes if not o.replayed]
    assert sorted(o.transaction_id for o in fresh) == [f"T-{n:04d}" for n in range(90)]
    assert sum(o.replayed for o in outcomes) == 30
    # A replay reports the awards of the purchase it repeats.
    by_tx = {o.transaction_id: o for o in fresh}
    for o in outcomes:
        assert o.awards == by_tx[o.transaction_id].awards
        assert o.purchase_id == by_tx[o.transaction_id].purchase_id
    _assert_exact(engine, set(range(90)))


def _kw(n: int) -> dict:
    body = _body(n)
    return {
        "transaction_id": body["transaction_id"],
        "member_id": body["member_id"],
        "items": [(i["sku"], i["category"], i["quantity"], i["unit_price"])
                  for i in body["items"]],
    }


def test_two_imports_of_overlapping_files_store_each_purchase_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    apply_program_files(engine, [BEAN_THERE], NOW)
    # Members already exist, as they would in a running system.
    for index in range(len(MEMBERS)):
        record_purchase(engine, event(**_kw(1000 + index)), NOW)
    a_numbers = list(range(0, 400))
    b_numbers = list(range(200, 600))[::-1]  # the other feed lists them newest first
    a_file = write_jsonl(tmp_path / "a.jsonl", [_body(n) for n in a_numbers])
    b_file = write_jsonl(tmp_path / "b.jsonl", [_body(n) for n in b_numbers])

    a, b = _run_together(db_url, [
        lambda eng: import_purchases(eng, a_file, NOW),
        lambda eng: import_purchases(eng, b_file, NOW),
    ])
    assert a.committed and b.committed  # type: ignore[attr-defined]
    assert a.recorded + b.recorded == 600  # type: ignore[attr-defined]
    assert a.replayed + b.replayed == 200  # type: ignore[attr-defined]
    _assert_exact(engine, set(range(600)) | {1000 + i for i in range(len(MEMBERS))})
