"""Benchmarks with targets as ratios against a raw baseline measured in the same run.

    python scripts/bench.py ingest [--database URL] [--n N] [--json]
    python scripts/bench.py scheduler [--database URL] [--members N] [--json]
    python scripts/bench.py api [--database URL] [--requests N] [--concurrency C] [--json]
    python scripts/bench.py analytics [--database URL] [--members N] [--json]
    python scripts/bench.py simulate [--database URL] [--n N] [--json]

ingest: imports N purchases (two items each) from a JSON Lines file through the engine
(parse, validate, evaluate, write purchases, items, ledger entries, lots and balances), then
inserts the same purchase and item rows with bare SQLAlchemy Core executemany into an
identical empty schema. ratio = engine rate / raw rate; the target is >= 0.5.

scheduler: applies rules/glow-beauty.yaml (tiers on calendar-year spend) to an empty
database and bulk-loads N members with about ten purchase days each in 2026: the members,
tier_status and spend progress_counters rows the engine would have written (not through the
engine), with a mix of members due an upgrade, a downgrade, a hold or no change. Then times
the year-end tier review (review_tiers as of 2027-01-01) against a bare GROUP BY of the same
qualifying spend, fetched into Python (the faster of two runs, one before and one after the
review). ratio = review time / GROUP BY time; the target is <= 3.

api: the POS HTTP API under load. An empty database is migrated, gets rules/*.yaml and a
pos API key for stores AMS-*, and is served by `loyalty serve --workers 2 --no-access-log`
on a free loopback port; the baseline is a bare FastAPI app (scripts/bench_api.py: a plain
pydantic model, one row inserted into one table with SQLAlchemy Core, a commit per request,
the product's open_engine and pool size) served the same way by uvicorn over a second empty
database. The bare server runs first, then the engine's, never both at once; each gets 64
warm-up requests (transaction ids of their own), then the same N distinct purchases (coffee
program stores, dated over the days before now), C in flight over keep-alive connections
from this process (httpx2, asyncio), for at most 120 s (the report says when it was cut
short). rps = 2xx responses / wall time; p50 and p99 are of the 2xx latencies; CPU per
request of each server's processes and of the load generator is reported too (steadier than
rates on a small machine, whose cores the client, the servers and a local PostgreSQL all
share). ratio = engine rps / bare rps; the target is >= 0.5. More than 5 failed requests on
a side, or stored rows that do not match the 2xx count, fail the run (exit status 1) after
the figures. Servers are stopped with SIGTERM (SIGKILL if they linger), also on failure,
Ctrl-C or SIGTERM.

analytics: applies a one-rule program without exclusions to an empty database and bulk-loads
N members, enrolled, with 5 to 15 purchases each (about ten) over 2025 and 2026, one line
each (not through the engine). Then times the RFM snapshot of all members
(services/analytics_members.take_snapshot as of Monday 4 January 2027: the grouped pass over
the counted purchases, the scores, the rows written) against a bare GROUP BY of the same
three figures (max(occurred_at), count(*), sum(total_minor) per member over purchases),
fetched into Python (the faster of two runs, one before and one after the snapshot).
ratio = snapshot time / GROUP BY time; the target is <= 2. The CLV fit and prediction for
all members (services/analytics_clv.member_clv) is timed too where that module exists
(clv_seconds; null otherwise); its target is under 30 s.

simulate: applies rules/bean-there-coffee.yaml alone to an empty database, imports N
purchases (those of ingest) through the engine, timed, then backtests a candidate (the same
program earning 2 points per euro instead of 1) over the whole history with `rules
simulate`'s use case: the history read once, then replayed in throw-away SQLite files under
the stored version and under the candidate. ratio = candidate replay rate (N / the seconds
of the candidate's replay: purchases planned and written, the scheduler's jobs at their fire
times) / import rate; the target is >= 1 (a replay writes nothing live). The whole
simulation's time (reading, migrating the throw-away files, both replays, the comparison)
is reported beside it, as `whole_ratio`.

--database names where to run: a SQLite URL (its file, and for ingest a sibling .raw file,
for api a sibling .bare file, are created and removed) or a PostgreSQL server URL
(throw-away databases, two for ingest and api and one for scheduler, are created there and
dropped). The default is SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, Table, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_api import (  # noqa: E402
    BARE_URL_ENV,
    Load,
    bare_purchases,
    create_bare_schema,
    free_port,
    post_all,
    running,
    tail,
)

from loyalty_engine.domain.events import PurchaseEvent  # noqa: E402
from loyalty_engine.rules.compiled_membership import TierLadder  # noqa: E402
from loyalty_engine.services.analytics_members import take_snapshot  # noqa: E402
from loyalty_engine.services.apikeys import create_api_key  # noqa: E402
from loyalty_engine.services.importing import import_purchases  # noqa: E402
from loyalty_engine.services.programs import apply_program_files, load_catalog  # noqa: E402
from loyalty_engine.services.tiers import review_tiers  # noqa: E402
from loyalty_engine.store import migrate, tables  # noqa: E402
from loyalty_engine.store.bulk import Converters, insert_rows  # noqa: E402
from loyalty_engine.store.database import open_engine, resolve_url, write_transaction  # noqa: E402

TARGET_INGEST = 0.5
TARGET_SCHEDULER = 3.0
TARGET_ANALYTICS = 2.0
TARGET_CLV_SECONDS = 30.0
TARGET_SIMULATE = 1.0
BATCH = 2000
EVENT_SPACING = timedelta(seconds=97)  # between consecutive purchases of _events
SKUS = [("FLAT-WHITE", "coffee", "3.60"), ("CROISSANT", "pastry", "2.20"),
        ("BEANS-HOUSE-250G", "coffee-beans", "8.95"), ("CHAI", "tea", "3.50"),
        ("SANDWICH", "lunch", "6.95"), ("GIFT-CARD-25", "gift-cards", "25.00")]


def _events(n: int, seed: int = 7, start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
            prefix: str = "T") -> Iterator[dict[str, object]]:
    """n purchases at AMS-* stores, 97 s apart from `start`, by about n / 10 members."""
    rng = random.Random(seed)
    members = max(1, n // 10)
    for i in range(n):
        a, b = rng.sample(SKUS, 2)
        qa, qb = rng.randint(1, 3), 1
        total = (qa * int(a[2].replace(".", "")) + qb * int(b[2].replace(".", "")))
        yield {
            "transaction_id": f"{prefix}{i:09d}",
            "store_id": f"AMS-{i % 25:02d}",  # stores of the coffee program in rules/
            "member_id": f"M{rng.randrange(members):07d}",
            "occurred_at": (start + i * EVENT_SPACING).isoformat(),
            "currency": "EUR",
            "total": f"{total // 100}.{total % 100:02d}",
            "items": [
                {"sku": a[0], "category": a[1], "quantity": str(qa), "unit_price": a[2]},
                {"sku": b[0], "category": b[1], "quantity": str(qb), "unit_price": b[2]},
            ],
        }


@contextmanager
def _databases(url: str | None,
               kinds: tuple[str, ...] = ("engine", "raw")) -> Iterator[tuple[str, ...]]:
    """Empty databases of the same kind, one per kind (by default two: engine, raw)."""
    if url is None or make_url(resolve_url(url)).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="loyalty-bench-") as tmp:
            base = Path(make_url(resolve_url(url)).database or "") if url else Path(tmp) / "b.db"
            paths = [base] + [base.with_name(f"{base.name}.{kind}") for kind in kinds[1:]]
            for path in paths:
                for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    p.unlink(missing_ok=True)
            try:
                yield tuple(f"sqlite:///{path}" for path in paths)
            finally:
                for path in paths:
                    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                        p.unlink(missing_ok=True)
        return
    server = make_url(resolve_url(url)).set(drivername="postgresql")
    admin = server.render_as_string(hide_password=False)
    names = [f"loyalty_bench_{uuid.uuid4().hex[:8]}_{kind}" for kind in kinds]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield tuple(server.set(database=n).render_as_string(hide_password=False)
                    for n in names)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    table_p, table_i = tables.purchases, tables.purchase_items
    # The purchases' members must exist (foreign key); creating them is set-up, not timed.
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        conn.execute(tables.members.insert(), [
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
        "points_awarded": report.points,  # per program
        "ratio": round(engine_rate / raw_rate, 3),
        "target": TARGET_INGEST,
        "meets_target": engine_rate / raw_rate >= TARGET_INGEST,
    }


# --- scheduler ----------------------------------------------------------------------------------

SCHEDULER_PROGRAM = "glow-beauty"
REVIEW_AS_OF = datetime(2027, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=1)))
YEAR = 2026
LOAD_CHUNK = 20_000  # rows per executemany
# What each member's tier_status row says before the year-end review, as (share, scenario):
#   enrolled: the tier their first purchase gave (the lowest) and nothing since, so
#       the review upgrades those whose year's spend qualifies higher;
#   current:  the tier their spend qualifies for (no change at the review);
#   held:     one tier above what they qualify for, held through 2027 (a hold);
#   lapsing:  enrolled in 2025, reviewed on 1 January 2026 into a tier one above what
#       2026's spend qualifies for, held only until 2027-01-01 (a downgrade).
SCENARIOS = (("enrolled", 0.70), ("current", 0.15), ("held", 0.08), ("lapsing", 0.07))


def _ladder(engine: Engine) -> tuple[TierLadder, str]:
    """The program's compiled ladder and its progress counter, as the review will see them."""
    with engine.connect() as conn:
        for version in load_catalog(conn).all_in_force(REVIEW_AS_OF):
            if version.program_id == SCHEDULER_PROGRAM and version.program.tiers is not None:
                return version.program.tiers, version.program.tiers.counter
    raise SystemExit(f"{SCHEDULER_PROGRAM} has no tiers in force at {REVIEW_AS_OF}")


def _member_rows(i: int, rng: random.Random, ladder: TierLadder, now: datetime,
                 ) -> tuple[dict[str, object], dict[str, object], list[dict[str, object]]]:
    """One member's members row, tier_status row and spend counter rows."""
    member_id = f"M{i:07d}"
    steps = ladder.steps
    # ~60% qualify for the bottom tier, ~30% the middle, ~10% the top (three tiers).
    r = rng.random()
    rank = 0 if r < 0.6 else 1 if r < 0.9 else 2
    rank = min(rank, len(steps) - 1)
    low = max(steps[rank].threshold, 1000)
    high = (steps[rank + 1].threshold - 1 if rank + 1 < len(steps)
            else 3 * max(steps[rank].threshold, 1000))
    total = rng.randint(low, high)
    days = sorted(rng.sample(range(365), rng.randint(8, 12)))
    weights = [rng.random() + 0.2 for _ in days]
    scale = total / sum(weights)
    values = [int(w * scale) for w in weights]
    values[-1] += total - sum(values)
    first = date(YEAR, 1, 1)
    counters: list[dict[str, object]] = [
        {"member_id": member_id, "program_id": SCHEDULER_PROGRAM, "counter": ladder.counter,
         "period": (first + timedelta(days=d)).isoformat(), "value": v}
        for d, v in zip(days, values, strict=True)]
    enrolled_on = first + timedelta(days=days[0])  # a tier row starts at the first purchase
    qualified = ladder.qualified(total)
    above = steps[min(ladder.rank(qualified) + 1, len(steps) - 1)].tier_id
    lowest = ladder.qualified(0) or steps[0].tier_id
    held_until = ladder.held_until(enrolled_on, enrolled_on)  # status earned in 2026
    pick, scenario = rng.random(), SCENARIOS[-1][0]
    for name, share in SCENARIOS:
        if pick < share:
            scenario = name
            break
        pick -= share
    tier, base, reviewed_on, base_held = lowest, lowest, None, None
    if scenario == "current":
        tier = qualified
    elif scenario == "held":
        tier = above
    elif scenario == "lapsing":
        enrolled_on = date(YEAR - 1, 1, 1) + timedelta(days=rng.randrange(365))
        reviewed_on = date(YEAR, 1, 1)
        tier = base = above
        held_until = base_held = ladder.held_until(date(YEAR - 1, 12, 31), enrolled_on)
    status: dict[str, object] = {
        "member_id": member_id, "program_id": SCHEDULER_PROGRAM, "tier": tier,
        "base_tier": base, "held_until": held_until, "base_held_until": base_held,
        "manual_tier": None, "manual_until": None, "manual_reason": None,
        "enrolled_on": enrolled_on, "reviewed_on": reviewed_on, "updated_at": now}
    member: dict[str, object] = {"member_id": member_id, "created_at": now, "attributes": {}}
    return member, status, counters


def _load_members(engine: Engine, ladder: TierLadder, n: int, seed: int = 11) -> int:
    """Bulk-insert n members with their tier rows and 2026 spend; returns counter rows."""
    rng = random.Random(seed)
    now = datetime(YEAR, 12, 31, 12, 0, tzinfo=UTC)
    targets = (tables.members, tables.tier_status, tables.progress_counters)
    counter_rows, next_report = 0, max(1, n // 10)
    started = time.perf_counter()
    with write_transaction(engine) as conn:
        members: list[dict[str, object]] = []
        statuses: list[dict[str, object]] = []
        counters: list[dict[str, object]] = []
        for i in range(n):
            member, status, spent = _member_rows(i, rng, ladder, now)
            members.append(member)
            statuses.append(status)
            counters.extend(spent)
            if len(counters) >= LOAD_CHUNK or i == n - 1:
                for table, rows in zip(targets, (members, statuses, counters), strict=True):
                    conn.execute(table.insert(), rows)
                counter_rows += len(counters)
                members, statuses, counters = [], [], []
                if i + 1 >= next_report:
                    next_report += max(1, n // 10)
                    print(f"  built {i + 1}/{n} members, {counter_rows} counter rows "
                          f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return counter_rows


def _time_group_by(conn: Connection, counter: str) -> tuple[float, int]:
    """The bare GROUP BY of the year's qualifying spend, every row fetched into Python."""
    query = text("SELECT member_id, SUM(value) FROM progress_counters "
                 "WHERE program_id = :program AND counter = :counter "
                 "AND period >= :start AND period < :end GROUP BY member_id")
    params = {"program": SCHEDULER_PROGRAM, "counter": counter,
              "start": f"{YEAR}-01-01", "end": f"{YEAR + 1}-01-01"}
    started = time.perf_counter()
    credit = {m: int(v) for m, v in conn.execute(query, params)}
    return time.perf_counter() - started, len(credit)


def bench_scheduler(url: str | None, n: int) -> dict[str, object]:
    """Run the scheduler (tier review) benchmark and return its figures."""
    with _databases(url, ("engine",)) as (engine_url,):
        engine = open_engine(engine_url)
        migrate.upgrade(engine)
        apply_program_files(engine, [ROOT / "rules" / f"{SCHEDULER_PROGRAM}.yaml"],
                            datetime.now(UTC))
        ladder, counter = _ladder(engine)
        print(f"building {n} members on {engine.dialect.name}...", file=sys.stderr)
        started = time.perf_counter()
        counter_rows = _load_members(engine, ladder, n)
        build_seconds = time.perf_counter() - started
        print(f"  built in {build_seconds:.1f} s", file=sys.stderr)
        with engine.connect() as conn:
            before, rows = _time_group_by(conn, counter)
        if rows != n:
            raise SystemExit(f"GROUP BY found {rows} members, not {n}")
        started = time.perf_counter()
        result = review_tiers(engine, REVIEW_AS_OF, datetime.now(UTC), SCHEDULER_PROGRAM)
        review_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            after, _ = _time_group_by(conn, counter)
        engine.dispose()
    reviewed = result.reviewed.get(SCHEDULER_PROGRAM, 0)
    if reviewed != n or result.failures:
        raise SystemExit(f"tier review reviewed {reviewed} of {n} members "
                         f"({len(result.failures)} failed: {result.failures[:3]})")
    group_by_seconds = min(before, after)
    ratio = review_seconds / group_by_seconds
    return {
        "benchmark": "scheduler",
        "database": make_url(engine_url).get_backend_name(),
        "members": n,
        "counter_rows": counter_rows,
        "build_seconds": round(build_seconds, 3),
        "review_seconds": round(review_seconds, 3),
        "group_by_seconds": round(group_by_seconds, 3),
        "group_by_runs": [round(before, 3), round(after, 3)],
        "reviewed": reviewed,
        "upgraded": result.upgraded.get(SCHEDULER_PROGRAM, 0),
        "downgraded": result.downgraded.get(SCHEDULER_PROGRAM, 0),
        "held": result.held.get(SCHEDULER_PROGRAM, 0),
        "ratio": round(ratio, 3),
        "target": TARGET_SCHEDULER,
        "meets_target": ratio <= TARGET_SCHEDULER,
    }


# --- analytics ----------------------------------------------------------------------------------

ANALYTICS_PROGRAM = "bench-rfm"
ANALYTICS_YAML = f"""\
program: {ANALYTICS_PROGRAM}
name: Bench RFM
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""
SNAPSHOT_AS_OF = datetime(2027, 1, 4, 5, 0, tzinfo=timezone(timedelta(hours=1)))
HISTORY_START = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
HISTORY_DAYS = 730


def _load_purchasers(engine: Engine, n: int, seed: int = 13) -> int:
    """Bulk-insert n enrolled members with 5 to 15 one-line purchases each; returns the
    purchases."""
    rng = random.Random(seed)
    now = datetime(2027, 1, 1, tzinfo=UTC)
    purchase_id, next_report = 0, max(1, n // 10)
    started = time.perf_counter()
    with write_transaction(engine) as conn:
        convert = Converters(conn)
        recorded = convert.when(now)
        members: list[tuple[object, ...]] = []
        enrolments: list[tuple[object, ...]] = []
        purchases: list[tuple[object, ...]] = []
        items: list[tuple[object, ...]] = []
        for i in range(n):
            member_id = f"M{i:07d}"
            days = sorted(rng.sample(range(HISTORY_DAYS), rng.randint(5, 15)))
            first = HISTORY_START + timedelta(days=days[0])
            members.append((member_id, recorded, "{}"))
            enrolments.append((member_id, ANALYTICS_PROGRAM, convert.when(first), "auto"))
            for day in days:
                purchase_id += 1
                amount = rng.randint(150, 9000)
                at = HISTORY_START + timedelta(days=day, minutes=rng.randrange(600))
                purchases.append((purchase_id, f"AMS-{purchase_id % 25:02d}",
                                  f"T{purchase_id:09d}", member_id, convert.when(at), "EUR",
                                  amount, f"{purchase_id:064x}", recorded))
                items.append((purchase_id, member_id, 1, "BAG", "goods", 1000, amount, amount))
            if len(purchases) >= LOAD_CHUNK or i == n - 1:
                for table, columns, rows in (
                        (tables.members, ("member_id", "created_at", "attributes"), members),
                        (tables.enrolments, ("member_id", "program_id", "enrolled_at",
                                             "source"), enrolments),
                        (tables.purchases, ("id", "store_id", "transaction_id", "member_id",
                                            "occurred_at", "currency", "total_minor",
                                            "body_hash", "recorded_at"), purchases),
                        (tables.purchase_items, ("purchase_id", "member_id", "line_no", "sku",
                                                 "category", "quantity_milli",
                                                 "unit_price_minor", "amount_minor"), items)):
                    insert_rows(conn, table, columns, rows)
                members, enrolments, purchases, items = [], [], [], []
                if i + 1 >= next_report:
                    next_report += max(1, n // 10)
                    print(f"  built {i + 1}/{n} members, {purchase_id} purchases "
                          f"({time.perf_counter() - started:.1f} s)", file=sys.stderr)
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('purchases', 'id'), "
                                 f"{purchase_id})")
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    return purchase_id


def _time_bare_rfm(conn: Connection) -> tuple[float, int]:
    """The bare GROUP BY of the snapshot's three figures, every row fetched into Python."""
    query = text("SELECT member_id, MAX(occurred_at), COUNT(*), SUM(total_minor) "
                 "FROM purchases GROUP BY member_id")
    started = time.perf_counter()
    figures = {m: (last, int(count), int(total)) for m, last, count, total in
               conn.execute(query)}
    return time.perf_counter() - started, len(figures)


def _time_clv(engine: Engine, program_id: str, as_of: datetime) -> float | None:
    """Seconds for the CLV fit and prediction for all members of the program
    (services/analytics_clv.member_clv), or None where that module does not exist."""
    try:
        clv = importlib.import_module("loyalty_engine.services.analytics_clv")
    except ModuleNotFoundError:
        return None
    started = time.perf_counter()
    clv.member_clv(engine, program_id, as_of)
    return time.perf_counter() - started


def bench_analytics(url: str | None, n: int) -> dict[str, object]:
    """Run the analytics (RFM snapshot) benchmark and return its figures."""
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-data-") as tmp, \
            _databases(url, ("engine",)) as (engine_url,):
        engine = open_engine(engine_url)
        migrate.upgrade(engine)
        program_file = Path(tmp) / f"{ANALYTICS_PROGRAM}.yaml"
        program_file.write_text(ANALYTICS_YAML, encoding="utf-8")
        apply_program_files(engine, [program_file], datetime(2024, 12, 1, tzinfo=UTC))
        print(f"building {n} members on {engine.dialect.name}...", file=sys.stderr)
        started = time.perf_counter()
        purchases = _load_purchasers(engine, n)
        build_seconds = time.perf_counter() - started
        print(f"  built in {build_seconds:.1f} s", file=sys.stderr)
        with engine.connect() as conn:
            before, rows = _time_bare_rfm(conn)
        if rows != n:
            raise SystemExit(f"GROUP BY found {rows} members, not {n}")
        started = time.perf_counter()
        # The RFM part alone (the job also stores CLV: timed below as clv_seconds).
        done = take_snapshot(engine, ANALYTICS_PROGRAM, SNAPSHOT_AS_OF,
                             SNAPSHOT_AS_OF.date(), datetime.now(UTC), with_clv=False)
        snapshot_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            after, _ = _time_bare_rfm(conn)
        clv_seconds = _time_clv(engine, ANALYTICS_PROGRAM, SNAPSHOT_AS_OF)
        engine.dispose()
    if done.written != n:
        raise SystemExit(f"the snapshot wrote {done.written} of {n} members")
    group_by_seconds = min(before, after)
    ratio = snapshot_seconds / group_by_seconds
    return {
        "benchmark": "analytics",
        "database": make_url(engine_url).get_backend_name(),
        "members": n,
        "purchases": purchases,
        "build_seconds": round(build_seconds, 3),
        "snapshot_seconds": round(snapshot_seconds, 3),
        "group_by_seconds": round(group_by_seconds, 3),
        "group_by_runs": [round(before, 3), round(after, 3)],
        "written": done.written,
        "ratio": round(ratio, 3),
        "target": TARGET_ANALYTICS,
        "meets_target": ratio <= TARGET_ANALYTICS,
        "clv_seconds": None if clv_seconds is None else round(clv_seconds, 3),
        "clv_target_seconds": TARGET_CLV_SECONDS,
        "clv_meets_target": None if clv_seconds is None else clv_seconds < TARGET_CLV_SECONDS,
    }


# --- api ----------------------------------------------------------------------------------------

TARGET_API = 0.5
API_WORKERS = 2
API_WARMUP = 64  # requests per server before timing, with their own transaction ids
API_TIME_CAP = 120.0  # seconds of load per server at most; the report says if it was cut
API_ERROR_LIMIT = 5  # more failed requests than this on a side and the run fails


def _api_bodies(n: int, now: datetime) -> tuple[list[bytes], list[bytes]]:
    """The warm-up and measured request bodies, dated in the days before now (the API
    refuses purchases more than 15 minutes ahead of its clock)."""
    start = now - (API_WARMUP + n) * EVENT_SPACING - timedelta(hours=1)
    warm = [json.dumps(e).encode() for e in _events(API_WARMUP, seed=8, start=start,
                                                     prefix="W")]
    measured = [json.dumps(e).encode()
                for e in _events(n, start=start + API_WARMUP * EVENT_SPACING)]
    return warm, measured


def _load_server(name: str, command: list[str], env: dict[str, str], token: str,
                 warm: list[bytes], bodies: list[bytes], concurrency: int, log: Path) -> Load:
    """Serve with API_WORKERS workers on a free loopback port, warm up, time the load."""
    port = free_port()
    command = [*command, "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(API_WORKERS), "--no-access-log"]
    with running(name, command, port, log, env=env, cwd=ROOT) as server:
        warmup = post_all(server, token, warm, concurrency, API_TIME_CAP)
        if warmup.errors:
            raise SystemExit(f"warm-up of the {name} server failed: {dict(warmup.statuses)} "
                             f"{warmup.samples}")
        print(f"  {name}: warmed up ({len(warm)} requests), posting {len(bodies)} "
              f"with {concurrency} in flight...", file=sys.stderr)
        load = post_all(server, token, bodies, concurrency, API_TIME_CAP)
    if load.errors:
        load.log_tail = tail(log)
    print(f"  {name}: {load.ok} ok, {load.errors} failed in {load.seconds:.1f} s",
          file=sys.stderr)
    return load


def _count(url: str, table: Table) -> int:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def bench_api(url: str | None, n: int, concurrency: int) -> dict[str, Any]:
    """Run the HTTP API benchmark (bare app first, then the engine) and return its figures."""
    now = datetime.now(UTC)
    warm, bodies = _api_bodies(n, now)
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-api-") as tmp, \
            _databases(url, ("engine", "bare")) as (engine_url, bare_url):
        engine = open_engine(engine_url)
        migrate.upgrade(engine)
        apply_program_files(engine, [ROOT / "rules"], now)
        _, token = create_api_key(engine, "bench", "pos", ["AMS-*"], now)
        engine.dispose()
        bare = open_engine(bare_url)
        create_bare_schema(bare)
        bare.dispose()
        database = make_url(engine_url).get_backend_name()
        print(f"api on {database}: {n} purchases, {concurrency} in flight, "
              f"{API_WORKERS} workers per server", file=sys.stderr)
        env = dict(os.environ)
        env.pop("LOYALTY_DATABASE_URL", None)
        bare_env = {**env, BARE_URL_ENV: bare_url,
                    "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), str(ROOT)])}
        bare_load = _load_server(
            "bare", [sys.executable, "-m", "uvicorn", "--factory", "bench_api:bare_app",
                     "--no-server-header", "--log-level", "warning"],
            bare_env, token, warm, bodies, concurrency, Path(tmp) / "bare.log")
        engine_load = _load_server(
            "engine", [str(Path(sys.executable).with_name("loyalty")), "--database",
                       engine_url, "serve"],
            env, token, warm, bodies, concurrency, Path(tmp) / "engine.log")
        rows = {"engine": _count(engine_url, tables.purchases),
                "bare": _count(bare_url, bare_purchases)}
    ratio = engine_load.rps / bare_load.rps if bare_load.rps else 0.0
    problems = [f"{side}: {load.errors} of {load.sent} requests failed "
                f"({dict(load.statuses)}; {load.samples}); its log ends:\n{load.log_tail}"
                for side, load in (("engine", engine_load), ("bare", bare_load))
                if load.errors > API_ERROR_LIMIT]
    # Every 2xx must be stored; a failed request may or may not have been.
    problems += [f"{side}: {rows[side]} purchases stored, expected warm-up + 2xx = "
                 f"{API_WARMUP + load.ok} (up to {API_WARMUP + load.sent} with the failed)"
                 for side, load in (("engine", engine_load), ("bare", bare_load))
                 if not API_WARMUP + load.ok <= rows[side] <= API_WARMUP + load.sent]
    return {
        "benchmark": "api",
        "database": database,
        "requests": n,
        "concurrency": concurrency,
        "workers": API_WORKERS,
        "warmup": API_WARMUP,
        "time_cap_seconds": API_TIME_CAP,
        "order": ["bare", "engine"],
        "engine": engine_load.figures(),
        "bare": bare_load.figures(),
        "ratio": round(ratio, 3),
        "target": TARGET_API,
        "met": ratio >= TARGET_API,
        "meets_target": ratio >= TARGET_API,
        "problems": problems,
    }


def _print_api(result: dict[str, Any]) -> None:
    print(f"api on {result['database']}: {result['requests']} purchases, "
          f"{result['concurrency']} in flight, {result['workers']} workers per server "
          "(bare first, then engine)")
    print(f"  {'':8}{'rps':>9}{'p50 ms':>9}{'p99 ms':>9}{'ok':>7}{'errors':>8}{'seconds':>9}"
          f"{'server CPU ms/req':>19}{'client CPU ms/req':>19}")
    for side in ("engine", "bare"):
        f = result[side]
        cut = "  CUT SHORT at the time cap" if f["cut_short"] else ""
        server_cpu = "n/a" if f["server_cpu_ms"] is None else f"{f['server_cpu_ms']:.2f}"
        print(f"  {side:8}{f['rps']:>9.1f}{f['p50_ms']:>9.1f}{f['p99_ms']:>9.1f}"
              f"{f['ok']:>7}{f['errors']:>8}{f['seconds']:>9.2f}{server_cpu:>19}"
              f"{f['client_cpu_ms']:>19.2f}{cut}")
    print(f"  ratio engine/bare rps: {result['ratio']} (target >= {result['target']}: "
          f"{'met' if result['met'] else 'NOT met'})")


# --- simulate -----------------------------------------------------------------------------------

SIMULATED = ROOT / "rules" / "bean-there-coffee.yaml"


def bench_simulate(url: str | None, n: int) -> dict[str, object]:
    """Run the simulate benchmark and return its figures."""
    from loyalty_engine.services.program_files import load_program_file
    from loyalty_engine.services.simulation import simulate

    with tempfile.TemporaryDirectory(prefix="loyalty-bench-data-") as tmp, \
            _databases(url, ("engine",)) as (engine_url,):
        data = Path(tmp) / "purchases.jsonl"
        with data.open("w") as out:
            for event in _events(n):
                out.write(json.dumps(event) + "\n")
        source = SIMULATED.read_text(encoding="utf-8")
        doubled = source.replace("    points_per_unit: 1\n", "    points_per_unit: 2\n", 1)
        if doubled == source:
            raise SystemExit(f"{SIMULATED}: found no 'points_per_unit: 1' to double")
        candidate_path = Path(tmp) / "candidate.yaml"
        candidate_path.write_text(doubled, encoding="utf-8")
        engine = open_engine(engine_url)
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        apply_program_files(engine, [SIMULATED], now)
        started = time.perf_counter()
        report = import_purchases(engine, data, now)
        import_seconds = time.perf_counter() - started
        if not report.committed or report.recorded != n:
            raise SystemExit(f"engine import failed: {report.errors[:3]}")
        candidate = load_program_file(candidate_path)
        end = _events_end(n)
        result = simulate(engine, candidate, None, end)
        engine.dispose()
    replay_seconds = result.timings["candidate_replay"]
    if result.purchases != n:
        raise SystemExit(f"the simulation replayed {result.purchases} of {n} purchases")
    import_rate, replay_rate = n / import_seconds, n / replay_seconds
    ratio = replay_rate / import_rate
    return {
        "benchmark": "simulate",
        "database": make_url(engine_url).get_backend_name(),
        "purchases": n,
        "import_seconds": round(import_seconds, 3),
        "import_per_second": round(import_rate),
        "replay_seconds": round(replay_seconds, 3),
        "replay_per_second": round(replay_rate),
        "simulation_seconds": round(result.seconds, 3),
        "timings": {k: round(v, 3) for k, v in result.timings.items()},
        "job_ticks": result.ticks,
        "points_live": result.live.issued,
        "points_candidate": result.candidate.issued,
        "ratio": round(ratio, 3),
        "whole_ratio": round((n / result.seconds) / import_rate, 3),
        "target": TARGET_SIMULATE,
        "meets_target": ratio >= TARGET_SIMULATE,
    }


def _events_end(n: int) -> datetime:
    """An instant just after the last purchase of _events(n)."""
    return datetime(2025, 1, 1, tzinfo=UTC) + n * EVENT_SPACING


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    ingest = sub.add_parser("ingest", help="bulk import through the engine vs raw inserts")
    ingest.add_argument("--database", default=None, help="SQLite URL or PostgreSQL server URL")
    ingest.add_argument("--n", type=int, default=200_000, help="purchases (two items each)")
    ingest.add_argument("--json", action="store_true", help="print one JSON object")
    scheduler = sub.add_parser("scheduler", help="year-end tier review vs a bare GROUP BY")
    scheduler.add_argument("--database", default=None,
                           help="SQLite URL or PostgreSQL server URL")
    scheduler.add_argument("--members", type=int, default=100_000,
                           help="members (about ten purchase days each)")
    scheduler.add_argument("--json", action="store_true", help="print one JSON object")
    analytics = sub.add_parser("analytics", help="RFM snapshot of all members vs a bare "
                               "GROUP BY (and the CLV fit, where it exists)")
    analytics.add_argument("--database", default=None,
                           help="SQLite URL or PostgreSQL server URL")
    analytics.add_argument("--members", type=int, default=100_000,
                           help="members (about ten purchases each)")
    analytics.add_argument("--json", action="store_true", help="print one JSON object")
    api = sub.add_parser("api", help="POST /v1/purchases to the engine vs a bare FastAPI app")
    api.add_argument("--database", default=None, help="SQLite URL or PostgreSQL server URL")
    api.add_argument("--requests", type=int, default=2000, help="purchases to post per server")
    api.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    api.add_argument("--json", action="store_true", help="print one JSON object")
    simulate = sub.add_parser("simulate",
                              help="replaying stored purchases under a candidate vs importing")
    simulate.add_argument("--database", default=None,
                          help="SQLite URL or PostgreSQL server URL")
    simulate.add_argument("--n", type=int, default=200_000, help="purchases (two items each)")
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.benchmark == "simulate":
        found = bench_simulate(args.database, args.n)
        if args.json:
            print(json.dumps(found))
            return
        print(f"simulate on {found['database']}: {found['purchases']} purchases")
        print(f"  import: {found['import_per_second']}/s ({found['import_seconds']} s)")
        print(f"  replay: {found['replay_per_second']}/s ({found['replay_seconds']} s, "
              f"{found['job_ticks']} scheduler ticks)")
        print(f"  whole simulation: {found['simulation_seconds']} s {found['timings']}")
        print(f"  ratio replay/import: {found['ratio']} (target >= {found['target']}: "
              f"{'met' if found['meets_target'] else 'NOT met'}); whole simulation/import: "
              f"{found['whole_ratio']}")
        return
    if args.benchmark == "api":
        if args.requests < 1 or args.concurrency < 1:
            parser.error("--requests and --concurrency must be at least 1")
        # A SIGTERM unwinds like Ctrl-C, so that the servers are stopped and the databases
        # dropped (the servers run in sessions of their own and get no signal of ours).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit("bench api: terminated"))
        result = bench_api(args.database, args.requests, args.concurrency)
        if args.json:
            print(json.dumps(result))
        else:
            _print_api(result)
        if result["problems"]:
            sys.exit("the comparison is broken:\n  " + "\n  ".join(result["problems"]))
        return
    if args.benchmark == "analytics":
        result = bench_analytics(args.database, args.members)
        if args.json:
            print(json.dumps(result))
            return
        print(f"analytics on {result['database']}: {result['members']} members, "
              f"{result['purchases']} purchases (built in {result['build_seconds']} s)")
        print(f"  snapshot: {result['snapshot_seconds']} s ({result['written']} written)")
        print(f"  group by: {result['group_by_seconds']} s")
        print(f"  ratio snapshot/group by: {result['ratio']} (target <= {result['target']}: "
              f"{'met' if result['meets_target'] else 'NOT met'})")
        clv = result["clv_seconds"]
        print("  clv fit + prediction: " + ("not available (no services/analytics_clv)"
                                            if clv is None else
                                            f"{clv} s (target < {TARGET_CLV_SECONDS} s)"))
        return
    if args.benchmark == "scheduler":
        result = bench_scheduler(args.database, args.members)
        if args.json:
            print(json.dumps(result))
            return
        print(f"scheduler on {result['database']}: {result['members']} members, "
              f"{result['counter_rows']} counter rows (built in {result['build_seconds']} s)")
        print(f"  review:   {result['review_seconds']} s ({result['reviewed']} reviewed, "
              f"{result['upgraded']} up, {result['downgraded']} down, {result['held']} held)")
        print(f"  group by: {result['group_by_seconds']} s")
        print(f"  ratio review/group by: {result['ratio']} (target <= {result['target']}: "
              f"{'met' if result['meets_target'] else 'NOT met'})")
        return
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
