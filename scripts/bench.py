"""Benchmarks with targets as ratios against a raw baseline measured in the same run.

    python scripts/bench.py ingest [--database URL] [--n N] [--json]

ingest: imports N purchases (two items each) from a JSON Lines file through the engine
(parse, validate, evaluate, write purchases, items, ledger entries, lots and balances), then
inserts the same purchase and item rows with bare SQLAlchemy Core executemany into an
identical empty schema. ratio = engine rate / raw rate; the target is >= 0.5.

--database names where to run: a SQLite URL (its file and a sibling .raw file are created
and removed) or a PostgreSQL server URL (two throw-away databases are created there and
dropped). The default is SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loyalty_engine.domain.events import PurchaseEvent  # noqa: E402
from loyalty_engine.services.importing import import_purchases  # noqa: E402
from loyalty_engine.services.programs import apply_program_files  # noqa: E402
from loyalty_engine.store import migrate  # noqa: E402
from loyalty_engine.store.database import open_engine, resolve_url, write_transaction  # noqa: E402
from loyalty_engine.store.tables import Member, Purchase, PurchaseItem  # noqa: E402

TARGET_INGEST = 0.5
BATCH = 2000
SKUS = [("FLAT-WHITE", "coffee", "3.60"), ("CROISSANT", "pastry", "2.20"),
        ("BEANS-HOUSE-250G", "coffee-beans", "8.95"), ("CHAI", "tea", "3.50"),
        ("SANDWICH", "lunch", "6.95"), ("GIFT-CARD-25", "gift-cards", "25.00")]


def _events(n: int, seed: int = 7) -> Iterator[dict[str, object]]:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    members = max(1, n // 10)
    for i in range(n):
        a, b = rng.sample(SKUS, 2)
        qa, qb = rng.randint(1, 3), 1
        total = (qa * int(a[2].replace(".", "")) + qb * int(b[2].replace(".", "")))
        yield {
            "transaction_id": f"T{i:09d}",
            "store_id": f"AMS-{i % 25:02d}",  # stores of the coffee program in rules/
            "member_id": f"M{rng.randrange(members):07d}",
            "occurred_at": (start + timedelta(seconds=i * 97)).isoformat(),
            "currency": "EUR",
            "total": f"{total // 100}.{total % 100:02d}",
            "items": [
                {"sku": a[0], "category": a[1], "quantity": str(qa), "unit_price": a[2]},
                {"sku": b[0], "category": b[1], "quantity": str(qb), "unit_price": b[2]},
            ],
        }


@contextmanager
def _databases(url: str | None) -> Iterator[tuple[str, str]]:
    """Two empty databases of the same kind: (engine, raw)."""
    if url is None or make_url(resolve_url(url)).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
            base = Path(make_url(resolve_url(url)).database or "") if url else Path(tmp) / "b.db"
            paths = [base, base.with_name(base.name + ".raw")]
            for path in paths:
                for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    p.unlink(missing_ok=True)
            try:
                yield f"sqlite:///{paths[0]}", f"sqlite:///{paths[1]}"
            finally:
                for path in paths:
                    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                        p.unlink(missing_ok=True)
        return
    server = make_url(resolve_url(url)).set(drivername="postgresql")
    admin = server.render_as_string(hide_password=False)
    names = [f"loyalty_bench_{uuid.uuid4().hex[:8]}_{kind}" for kind in ("engine", "raw")]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield tuple(server.set(database=n).render_as_string(hide_password=False)  # type: ignore[return-value]
                    for n in names)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def _raw_rows(path: Path) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    now = datetime.now(UTC)
    purchases: list[dict[str, object]] = []
    items: list[dict[str, object]] = []
    with path.open("rb") as handle:
        for pid, line in enumerate(handle, start=1):
            p = PurchaseEvent.model_validate_json(line).to_purchase()
            purchases.append({"id": pid, "store_id": p.store_id,
                              "transaction_id": p.transaction_id, "member_id": p.member_id,
                              "occurred_at": p.occurred_at, "currency": p.currency,
                              "total_minor": p.total_minor, "body_hash": p.body_hash,
                              "recorded_at": now})
            items.extend({"purchase_id": pid, "member_id": p.member_id, "line_no": i.line_no,
                          "sku": i.sku, "category": i.category,
                          "quantity_milli": i.quantity_milli,
                          "unit_price_minor": i.unit_price_minor,
                          "amount_minor": i.amount_minor} for i in p.items)
    return purchases, items


def _time_raw(engine: Engine, purchases: list[dict[str, object]],
              items: list[dict[str, object]]) -> float:
    table_p, table_i = Purchase.__table__, PurchaseItem.__table__
    # The purchases' members must exist (foreign key); creating them is set-up, not timed.
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        conn.execute(Member.__table__.insert(), [
            {"member_id": m, "created_at": now, "attributes": {}}
            for m in sorted({str(p["member_id"]) for p in purchases})
        ])
    started = time.perf_counter()
    with write_transaction(engine) as conn:
        for start in range(0, len(purchases), BATCH):
            conn.execute(table_p.insert(), purchases[start : start + BATCH])
            conn.execute(table_i.insert(), items[2 * start : 2 * (start + BATCH)])
    return time.perf_counter() - started


def bench_ingest(url: str | None, n: int) -> dict[str, object]:
    """Run the ingest benchmark and return its figures."""
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-data-") as tmp, \
            _databases(url) as (engine_url, raw_url):
        data = Path(tmp) / "purchases.jsonl"
        with data.open("w") as out:
            for event in _events(n):
                out.write(json.dumps(event) + "\n")
        engine = open_engine(engine_url)
        raw = open_engine(raw_url)
        migrate.upgrade(engine)
        migrate.upgrade(raw)
        now = datetime.now(UTC)
        apply_program_files(engine, [ROOT / "rules"], now)
        started = time.perf_counter()
        report = import_purchases(engine, data, now)
        engine_seconds = time.perf_counter() - started
        if not report.committed or report.recorded != n:
            raise SystemExit(f"engine import failed: {report.errors[:3]}")
        purchases, items = _raw_rows(data)
        raw_seconds = _time_raw(raw, purchases, items)
        engine.dispose()
        raw.dispose()
    engine_rate, raw_rate = n / engine_seconds, n / raw_seconds
    return {
        "benchmark": "ingest",
        "database": make_url(engine_url).get_backend_name(),
        "purchases": n,
        "engine_seconds": round(engine_seconds, 3),
        "engine_per_second": round(engine_rate),
        "raw_seconds": round(raw_seconds, 3),
        "raw_per_second": round(raw_rate),
        "points_awarded": report.points,
        "ratio": round(engine_rate / raw_rate, 3),
        "target": TARGET_INGEST,
        "meets_target": engine_rate / raw_rate >= TARGET_INGEST,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest = sub.add_parser("ingest", help="bulk import through the engine vs raw inserts")
    ingest.add_argument("--database", default=None, help="SQLite URL or PostgreSQL server URL")
    ingest.add_argument("--n", type=int, default=200_000, help="purchases (two items each)")
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = bench_ingest(args.database, args.n)
    if args.json:
        print(json.dumps(result))
        return
    print(f"ingest on {result['database']}: {result['purchases']} purchases")
    print(f"  engine: {result['engine_per_second']}/s ({result['engine_seconds']} s)")
    print(f"  raw:    {result['raw_per_second']}/s ({result['raw_seconds']} s)")
    print(f"  ratio engine/raw: {result['ratio']} (target >= {result['target']}: "
          f"{'met' if result['meets_target'] else 'NOT met'})")


if __name__ == "__main__":
    main()
