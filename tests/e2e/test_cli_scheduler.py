"""`loyalty scheduler tick|run|status` and schedule overrides in program files.

The programs are the shipped ones (rules/): Fresh Market (Europe/Amsterdam, stores FM-*)
pays 1% of a calendar year's spend back as a voucher (capped at 250.00) from its `rebates`
job (daily at 02:30 program time); Glow Beauty (Europe/Paris, stores GB-*) reviews tiers
on calendar-year spend from its `review_tiers` job (03:00 on the 1st of every month);
Bean There (Europe/Amsterdam, stores AMS-*) holds points pending for 14 days until its
hourly `activate` job makes them spendable. Fire times are reported in UTC.

Every `loyalty` process costs a second or more, so every test starts from a copy of one
database per backend, made once per module, with the rules applied and all the purchases
below imported (and no job run yet).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.cli import (
    LOYALTY,
    SHIPPED_RULES,
    Cli,
    assert_one_sentence_error,
    ok,
    purchase,
    run,
    write_jsonl,
)

# M-1 spends 1,050.00 at Fresh Market in 2026: a rebate of 1% = 10.50 after the year ends.
GROCERY_2026 = [
    purchase("F1", "M-1", "2026-04-01T10:00:00+02:00",
             [("SHOP", "groceries", "1", "800.00")], "800.00", store_id="FM-01"),
    purchase("F2", "M-1", "2026-10-01T10:00:00+02:00",
             [("SHOP", "groceries", "1", "250.00")], "250.00", store_id="FM-01"),
]
REBATE_CODE = "fresh-market-annual-rebate-2026-M-1"

# G-1 reaches Glow (350.00) in 2026: held through 2027. G-2 reached Glow in 2025 and buys
# nothing in 2026: the review of 1 January 2027 drops her to Blush.
GLOW = [
    purchase("G1", "G-1", "2026-05-01T10:00:00+02:00",
             [("CREAM", "skincare", "1", "400.00")], "400.00", store_id="GB-01"),
    purchase("G2", "G-2", "2025-05-01T10:00:00+02:00",
             [("CREAM", "skincare", "1", "400.00")], "400.00", store_id="GB-01"),
]

# 12.50 of beans x2 + 3.20 latte -> 28 points, pending for 14 days: until
# 2026-03-28T09:30:00+01:00 (08:30 UTC).
COFFEE = [
    purchase("C1", "M-7", "2026-03-14T09:30:00+01:00",
             [("BEANS-1KG", "coffee-beans", "1", "12.50"), ("LATTE", "coffee", "1", "3.20")],
             "15.70", store_id="AMS-01"),
]

# Glow Beauty reviews at 03:00 Paris time on the 1st: 02:00 UTC in winter.
GLOW_REVIEWS_Q1_2027 = ["2027-01-01T02:00:00+00:00", "2027-02-01T02:00:00+00:00",
                        "2027-03-01T02:00:00+00:00"]


def _copy_db(source: Path, target: Path) -> None:
    """Copy a SQLite database file (with its WAL, should one be left) over target."""
    shutil.copyfile(source, target)
    for suffix in ("-wal", "-shm"):
        side = source.with_name(source.name + suffix)
        if side.exists():
            shutil.copyfile(side, target.with_name(target.name + suffix))


def _populate(url: str, folder: Path) -> None:
    """Apply the shipped rules and import every purchase above: nothing has ticked yet."""
    ok("rules", "apply", SHIPPED_RULES, database=url)
    ok("purchases", "import", write_jsonl(folder / "purchases.jsonl",
                                          [*GROCERY_2026, *GLOW, *COFFEE]), database=url)


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """A migrated SQLite database with the rules applied and the purchases imported (made
    once per module, copied by each test)."""
    folder = tmp_path_factory.mktemp("world")
    shutil.copyfile(sqlite_template, folder / "world.db")
    _populate(f"sqlite:///{folder / 'world.db'}", folder)
    return folder / "world.db"


def _pg_admin(url: str, *statements: str) -> None:
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False),
                         autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pg_worlds() -> Iterator[dict[str, str]]:
    """Template database name of the PostgreSQL world, made by the first test that needs it
    (from that test's URL: the server and user are those of db_url); dropped at the end."""
    made: dict[str, str] = {}
    yield made
    if made:
        _pg_admin(made["url"], f'DROP DATABASE IF EXISTS "{made["name"]}" WITH (FORCE)')


@pytest.fixture
def cli(db_url: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Cli:
    """`loyalty` on a database of the current backend of its own, with the shipped rules
    applied and the purchases imported."""
    if backend == "sqlite":
        _copy_db(request.getfixturevalue("sqlite_world"),
                 Path(str(make_url(db_url).database)))
        return Cli(db_url, tmp_path)
    worlds: dict[str, str] = request.getfixturevalue("pg_worlds")
    if not worlds:
        name = f"loyalty_sched_world_{uuid.uuid4().hex[:10]}"
        url = make_url(db_url).set(database=name).render_as_string(hide_password=False)
        _pg_admin(db_url, f'CREATE DATABASE "{name}" TEMPLATE "{make_url(db_url).database}"')
        worlds.update(name=name, url=url)
        folder = tmp_path / "world"
        folder.mkdir()
        _populate(url, folder)
        worlds["ready"] = "yes"
    if worlds.get("ready") != "yes":
        pytest.fail("the PostgreSQL database these tests clone could not be made")
    mine = make_url(db_url).database
    _pg_admin(db_url, f'DROP DATABASE "{mine}" WITH (FORCE)',
              f'CREATE DATABASE "{mine}" TEMPLATE "{worlds["name"]}"')
    return Cli(db_url, tmp_path)


def _fires(report: dict[str, Any], job: str, program: str) -> list[str]:
    return [r["fire_time"] for r in report["runs"]
            if r["job"] == job and r["program_id"] == program]


def _assert_in_time_order(report: dict[str, Any]) -> None:
    fires = [datetime.fromisoformat(r["fire_time"]) for r in report["runs"]]
    assert fires == sorted(fires), report["runs"]
    keys = [(r["program_id"], r["job"], r["fire_time"]) for r in report["runs"]]
    assert len(keys) == len(set(keys)), "a job ran twice for one fire time"


def _busy(report: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(fire time, job, program, non-zero counts) of the runs that did something."""
    found = []
    for r in report["runs"]:
        counts = {k: v for k, v in r["counts"].items() if v}
        if counts:
            found.append((r["fire_time"], r["job"], r["program_id"], counts))
    return found


def _rebate_vouchers(member: dict[str, Any]) -> list[tuple[str, int, bool]]:
    return [(v["code"], v["amount_minor"], v["valid"]) for v in member["vouchers"]
            if v["source"] == "rebate"]


def test_a_tick_after_downtime_catches_up_every_missed_fire_in_order(cli: Cli) -> None:
    first = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2026-12-15T12:00:00+01:00")
    assert first["failed"] == 0, first
    # A job that never ran runs once, at its latest fire time; the year is not over yet.
    assert _fires(first, "rebates", "fresh-market") == ["2026-12-15T01:30:00+00:00"]
    assert _fires(first, "review_tiers", "glow-beauty") == ["2026-12-01T02:00:00+00:00"]
    assert all(r["counts"].get("vouchers", 0) == 0 for r in first["runs"]), first

    # Three months of downtime: every missed fire time runs once, oldest first.
    later = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2027-03-15T12:00:00+01:00")
    assert later["failed"] == 0 and later["dry_run"] is False, later
    _assert_in_time_order(later)
    start = datetime(2026, 12, 16, 1, 30, tzinfo=UTC)
    assert _fires(later, "rebates", "fresh-market") == [
        (start + timedelta(days=n)).isoformat() for n in range(90)]
    rebates = [r for r in later["runs"] if r["job"] == "rebates"
               and r["program_id"] == "fresh-market" and r["counts"]["vouchers"]]
    assert [(r["fire_time"], r["counts"]["vouchers"], r["counts"]["amount_minor"])
            for r in rebates] == [("2027-01-01T01:30:00+00:00", 1, 1050)]
    assert _fires(later, "review_tiers", "glow-beauty") == GLOW_REVIEWS_Q1_2027

    # Run again up to the same instant: nothing is due, and nothing new is written.
    again = cli.ok("scheduler", "tick", "--allow-future", "--as-of", "2027-03-15T12:00:00+01:00")
    assert again.out_flat == "nothing due up to 2027-03-15T11:00:00+00:00", str(again)
    member = cli.json("members", "show", "M-1", "--as-of", "2027-03-15T12:00:00+01:00")
    assert _rebate_vouchers(member) == [(REBATE_CODE, 1050, True)]


# The database does not change what this checks (the integration tests run it on both).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_dry_run_writes_nothing_and_tells_what_a_tick_would_do(cli: Cli) -> None:
    def snapshot() -> list[Any]:
        return [cli.json("members", "show", "M-1", "--as-of", "2027-03-15T12:00:00+01:00"),
                cli.json("events", "list"),
                cli.json("scheduler", "status", "--as-of", "2027-03-15T12:00:00+01:00")]

    before = snapshot()
    dry = cli.json("scheduler", "tick", "--allow-future",
                   "--as-of", "2027-03-15T12:00:00+01:00", "--dry-run")
    assert snapshot() == before
    assert dry["dry_run"] is True and dry["failed"] == 0, dry
    _assert_in_time_order(dry)
    # Nothing has run yet: each job would run once, at its latest fire time, and catch up.
    busy = _busy(dry)
    assert ("2027-03-15T01:30:00+00:00", "rebates", "fresh-market",
            {"vouchers": 1, "amount_minor": 1050, "currency": "EUR"}) in busy, busy
    assert ("2027-03-15T11:00:00+00:00", "activate", "bean-there",
            {"lots": 1, "points": 28, "members": 1}) in busy, busy

    # What the dry run said is what the tick then does.
    real = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2027-03-15T12:00:00+01:00")
    assert real["dry_run"] is False and real["failed"] == 0, real
    assert [(r["fire_time"], r["job"], r["program_id"]) for r in real["runs"]] == [
        (r["fire_time"], r["job"], r["program_id"]) for r in dry["runs"]]
    assert _busy(real) == busy


def test_an_unknown_job_is_a_usage_error(sqlite_db_url: str) -> None:
    wrong = run("scheduler", "tick", "--allow-future",
                "--as-of", "2027-03-15T12:00:00+01:00", "--job", "nope",
                database=sqlite_db_url)
    assert wrong.code == 2, str(wrong)
    assert wrong.stdout == "", str(wrong)
    assert "Invalid value for --job: there is no job 'nope'" in wrong.err_flat, str(wrong)
    assert "review_tiers" in wrong.err_flat, str(wrong)


# The database does not change what this checks (the integration tests run it on both).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_job_runs_one_job_and_no_tick_goes_back_before_where_it_ran(cli: Cli) -> None:
    # A hyphen is as good as the underscore; only Glow Beauty has tiers to review.
    only = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2027-03-15T12:00:00+01:00",
                    "--job", "review-tiers")
    assert [(r["job"], r["program_id"], r["fire_time"]) for r in only["runs"]] == [
        ("review_tiers", "glow-beauty", "2027-03-01T02:00:00+00:00")]

    # A month back is before that run: refused, naming the one job that has run (no other
    # job has, or it would be counted as "and N more job(s)").
    back = cli.run("scheduler", "tick", "--allow-future", "--as-of", "2027-02-15T12:00:00+01:00")
    line = assert_one_sentence_error(
        back, "--as-of 2027-02-15T12:00:00+01:00",
        "(review_tiers of glow-beauty has run up to 2027-03-01T02:00:00+00:00)",
        "cannot go back in time")
    assert "more job" not in line, line
    # A dry run writes nothing, so it may look at any instant.
    dry = cli.json("scheduler", "tick", "--allow-future",
                   "--as-of", "2027-02-15T12:00:00+01:00", "--dry-run")
    assert dry["dry_run"] is True and dry["failed"] == 0, dry


# The database does not change what this checks (the integration tests run it on both).
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_pending_points_become_spendable_when_the_scheduler_activates_them(cli: Cli) -> None:
    def balance() -> tuple[int, int]:
        shown = cli.json("members", "show", "M-7", "--as-of", "2026-03-28T12:00:00+01:00")
        [bean_there] = [b for b in shown["balances"] if b["program_id"] == "bean-there"]
        return bean_there["points"], bean_there["pending"]

    # 09:00 Amsterdam on day 14 is half an hour before the points are due.
    cli.ok("scheduler", "tick", "--allow-future", "--as-of", "2026-03-28T09:00:00+01:00")
    assert balance() == (0, 28)
    after = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2026-03-28T10:00:00+01:00")
    assert [(r["fire_time"], r["counts"]) for r in after["runs"] if r["job"] == "activate"] \
        == [("2026-03-28T09:00:00+00:00", {"lots": 1, "points": 28, "members": 1})]
    assert balance() == (28, 0)


def _environment() -> dict[str, str]:
    """The environment tests/e2e/cli.py gives every `loyalty` process."""
    environment = {
        key: value for key, value in os.environ.items()
        if key not in ("LOYALTY_DATABASE_URL", "LOYALTY_DEBUG", "FORCE_COLOR", "TTY_COMPATIBLE",
                       "TTY_INTERACTIVE")
    }
    environment.update({"COLUMNS": "80", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"})
    return environment


RUNNING = "loyalty.scheduler: scheduler running (clock "
JANUARY_REVIEW = "review_tiers of glow-beauty at 2027-01-01T02:00:00+00:00: "


def _run_scheduler(cli: Cli, clock_start: str, wanted: str, grace: float) -> str:
    """Start `loyalty scheduler run` on a clock reading clock_start, wait until it is
    running and then at most `grace` seconds for `wanted` on its stderr, stop it with
    SIGTERM; its stderr, after checking that it stopped cleanly."""
    log = cli.cwd / "scheduler.log"
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [LOYALTY, "--database", cli.db_url, "scheduler", "run",
             "--clock-start", clock_start],
            cwd=cli.cwd, env=_environment(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=stderr, text=True, encoding="utf-8")
        try:
            started = time.monotonic()
            running_since: float | None = None
            while True:
                text = log.read_text(encoding="utf-8")
                if wanted in text:
                    break
                now = time.monotonic()
                if running_since is None and RUNNING in text:
                    running_since = now
                if running_since is not None and now > running_since + grace:
                    break
                assert process.poll() is None, (
                    f"`loyalty scheduler run` exited with {process.returncode}:\n{text}")
                assert now < started + 30, f"the scheduler did not start in 30 s:\n{text}"
                time.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.read_text(encoding="utf-8")
    assert process.returncode == 0, text
    assert "Traceback" not in text + stdout, text
    assert " ERROR " not in text, text
    assert text.splitlines()[-1].endswith("loyalty.scheduler: scheduler stopped"), text
    return text


def _ran_to(cli: Cli, program: str, job: str) -> tuple[str | None, int]:
    status = cli.json("scheduler", "status", "--as-of", "2027-01-01T03:30:00+01:00")
    [row] = [r for r in status if (r["program_id"], r["job"]) == (program, job)]
    return row["ran_to"], row["runs"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scheduler_run_fires_a_job_on_its_schedule_and_stops_on_sigterm(cli: Cli) -> None:
    # Up to a minute before the review of 1 January 2027: that review is still to come,
    # and the catch-up at start finds nothing to do.
    before = cli.json("scheduler", "tick", "--allow-future", "--as-of", "2027-01-01T02:59:00+01:00")
    assert _fires(before, "review_tiers", "glow-beauty") == ["2026-12-01T02:00:00+00:00"]

    # Three seconds before the review (03:00 in Paris).
    text = _run_scheduler(cli, "2027-01-01T02:59:57+01:00", JANUARY_REVIEW, grace=30)
    # G-1 reached Glow in 2026 and keeps it; G-2 reached it in 2025 and drops to Blush.
    [review] = [line for line in text.splitlines() if JANUARY_REVIEW in line]
    assert "reviewed 2, downgraded 1" in review, text
    assert _ran_to(cli, "glow-beauty", "review_tiers") == ("2027-01-01T02:00:00+00:00", 2)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_scheduler_run_does_not_lose_a_fire_time_that_passes_during_its_catch_up(
        cli: Cli) -> None:
    # Nine months of downtime: the catch-up at start has a couple of thousand runs to do,
    # which takes longer than the fifth of a second left before the January review.
    cli.ok("scheduler", "tick", "--allow-future", "--as-of", "2026-04-01T12:00:00+02:00")
    text = _run_scheduler(cli, "2027-01-01T02:59:59.800000+01:00", JANUARY_REVIEW, grace=3)
    assert RUNNING in text, text
    assert JANUARY_REVIEW in text, f"the January review never ran:\n{text}"
    assert _ran_to(cli, "glow-beauty", "review_tiers")[0] == "2027-01-01T02:00:00+00:00"


# An invalid cron in a program file, and the message `rules validate` must give for it, at
# the line and column of the bad value.
BAD_SCHEDULES = {
    "four-fields.yaml": ('  review_tiers: "0 3 1 *"',
                         "schedule.review_tiers: '0 3 1 *' is not a cron schedule: give five "
                         "fields, minute hour day-of-month month day-of-week"),
    "numeric-weekday.yaml": ('  notices: "0 9 * * 1"',
                             "schedule.notices: write the day of week of '0 9 * * 1' as names "
                             "(mon, tue, ..., sun, or mon-fri)"),
}


def test_an_invalid_cron_in_a_program_file_is_located(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    shipped = (SHIPPED_RULES / "glow-beauty.yaml").read_text(encoding="utf-8")
    expected = []
    for name, (bad, message) in sorted(BAD_SCHEDULES.items()):
        lines = [*shipped.splitlines(), "schedule:", bad, "  notice_days: 14"]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        line, column = lines.index(bad) + 1, bad.index('"') + 1
        expected.append(f"bad/{name}:{line}:{column}: {message}")

    result = run("rules", "validate", "bad", cwd=tmp_path)
    assert result.code == 1, str(result)
    assert result.stdout == "", str(result)
    *problems, summary = result.err_lines
    assert summary == "2 problems found; nothing was changed", str(result)
    assert len(problems) == 2, str(result)
    for problem, start in zip(sorted(problems), expected, strict=True):
        assert problem.startswith(start), f"expected {start!r}:\n{result}"
        # One sentence: no full stop followed by another sentence.
        assert not re.search(r"[.!?]\s+[A-Z]", problem), str(result)
