"""What a newcomer and an operator meet in their first hour, through the real CLI: the
destructive steps ask first, the future is refused unless rehearsed (and a watermark set
by mistake can be moved back), bare dates are the program's midnight, errors under --json
are JSON with a stable code, a config file sits below the environment, shell completion,
postgres:// URLs and a database that does not exist yet."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import drop_database, need_postgres
from tests.e2e.cli import (
    RULES_DIR,
    SHIPPED_RULES,
    Cli,
    assert_json_error,
    assert_one_sentence_error,
    ok,
    run,
)

NEW_YORK_SHOP = """\
program: big-apple
name: Big Apple Bagels
currency: USD
timezone: America/New_York
enrolment: open
stores: ["NYC-*"]
points: {pending_days: 3, expiry: never}
rules:
  - {id: per-dollar, kind: points_per_spend, points_per_unit: 1}
"""


@pytest.fixture
def cli(sqlite_db_url: str, tmp_path: Path) -> Cli:
    tool = Cli(sqlite_db_url, tmp_path)
    tool.ok("rules", "apply", RULES_DIR)  # Bean There, Europe/Amsterdam, 14 days pending
    return tool


def _marks(cli: Cli) -> dict[tuple[str, str], str | None]:
    return {(r["program_id"], r["job"]): r["ran_to"] for r in cli.json("scheduler", "status")}


def test_downgrade_asks_first_and_changes_nothing_when_not_told_yes(cli: Cli) -> None:
    refused = cli.run("db", "downgrade", "base")
    line = assert_one_sentence_error(refused, "drops every table", "0 member(s)", "--yes")
    assert "cannot be undone" in line
    assert cli.json("db", "current")["up_to_date"] is True
    gone = cli.ok("db", "downgrade", "base", "--yes")
    assert gone.out_flat.endswith("is now at base"), str(gone)
    assert cli.json("db", "current")["current"] is None
    cli.ok("db", "upgrade")


def test_the_future_is_refused_unless_rehearsed_and_a_rewind_undoes_a_mistake(
        sqlite_db_url: str, tmp_path: Path) -> None:
    cli = Cli(sqlite_db_url, tmp_path)
    # The shipped coffee program: pending points (activation hourly), stamps that lapse.
    cli.ok("rules", "apply", SHIPPED_RULES / "bean-there-coffee.yaml")
    before = _marks(cli)
    assert set(before.values()) == {None}  # nothing has run yet

    # A mistyped year: one sentence, even for a dry run, and nothing moved.
    assert_one_sentence_error(cli.run("scheduler", "tick", "--as-of",
                                      "9999-12-31T00:00:00+00:00"), "after 2199")
    assert_one_sentence_error(cli.run("scheduler", "tick", "--dry-run", "--as-of",
                                      "9999-12-31T00:00:00+00:00"), "after 2199")
    ahead = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()
    line = assert_one_sentence_error(cli.run("scheduler", "tick", "--as-of", ahead),
                                     "after now", "--allow-future")
    assert re.search(r"is [23] days after now", line), line
    for step in (("points", "expire"), ("points", "activate"), ("tiers", "review"),
                 ("rebates", "issue"), ("clubs", "advance"), ("events", "notify")):
        assert_one_sentence_error(cli.run(*step, "--as-of", ahead), "--allow-future")
    # A dry run writes nothing, so it may look ahead.
    dry = cli.json("scheduler", "tick", "--dry-run", "--as-of", ahead)
    assert dry["dry_run"] is True and dry["runs"], dry
    assert _marks(cli) == before

    # Rehearsed on purpose, then the scheduler's clock is behind its watermarks: a tick
    # without --as-of finds nothing due and says why, instead of failing.
    rehearsed = cli.json("scheduler", "tick", "--allow-future", "--as-of", ahead)
    assert rehearsed["failed"] == 0 and rehearsed["runs"], rehearsed
    moved = _marks(cli)
    assert all(mark is not None for mark in moved.values()), moved
    # The jobs that fire at least daily ran past now; the weekly rfm_snapshot ran to its
    # latest Monday, which may be before now.
    past_now = {k: m for k, m in moved.items() if m > datetime.now(UTC).isoformat()}
    assert {job for _, job in moved} - {job for _, job in past_now} <= {"rfm_snapshot"}, moved
    now_tick = cli.json("scheduler", "tick")
    assert len(now_tick["ahead"]) == len(past_now), now_tick
    assert all(run["job"] == "rfm_snapshot" for run in now_tick["runs"]), now_tick
    text = cli.ok("scheduler", "tick")
    assert "have already run past now" in text.out_flat and "rewind" in text.out_flat, text
    # An instant asked for behind the watermark is still an error: it cannot go back.
    assert_one_sentence_error(cli.run("scheduler", "tick", "--as-of",
                                      datetime.now(UTC).isoformat()),
                              "before where the scheduler has already run", "rewind")

    # The rewind asks first; then moves every watermark past the instant back to it.
    to = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0).isoformat()
    asked = cli.run("scheduler", "rewind", "--to", to)
    assert asked.code == 1 and asked.stdout == "", str(asked)
    # Each watermark it would move, then the sentence that it did not.
    assert len(asked.err_lines) == len(past_now) + 1, asked
    assert asked.err_lines[0].startswith("activate of "), asked
    assert asked.err_lines[-1].startswith(
        f"error: This moves {len(past_now)} watermark(s) back"), asked
    assert "pass --yes" in asked.err_lines[-1], str(asked)
    assert _marks(cli) == moved
    only_one = cli.json("scheduler", "rewind", "--to", to, "--job", "activate", "--yes")
    assert [r["job"] for r in only_one["rewound"]] == ["activate"], only_one
    rewound = cli.json("scheduler", "rewind", "--to", to, "--yes")
    assert {(r["program_id"], r["job"]) for r in rewound["rewound"]} == set(past_now) - {
        ("bean-there", "activate")}
    assert {k: m for k, m in _marks(cli).items() if k in past_now} == {
        k: datetime.fromisoformat(to).isoformat() for k in past_now}
    again = cli.ok("scheduler", "rewind", "--to", to, "--yes")
    assert "nothing to rewind" in again.out_flat, str(again)
    # From there the scheduler runs again up to now, writing nothing twice.
    caught_up = cli.json("scheduler", "tick")
    assert caught_up["failed"] == 0 and caught_up["ahead"] == [], caught_up
    assert cli.json("db", "check")["mismatches"] == []


def test_a_bare_date_is_midnight_where_the_programs_are(cli: Cli, tmp_path: Path) -> None:
    # Amsterdam is at +01:00 in January: midnight there is 23:00 UTC the day before.
    dry = cli.json("scheduler", "tick", "--dry-run", "--as-of", "2026-01-15")
    assert dry["as_of"] == "2026-01-15T00:00:00+01:00", dry
    # A second program in New York: the zones disagree on when the day begins.
    (tmp_path / "nyc.yaml").write_text(NEW_YORK_SHOP, encoding="utf-8")
    cli.ok("rules", "apply", "nyc.yaml")
    assert_one_sentence_error(cli.run("scheduler", "tick", "--dry-run", "--as-of",
                                      "2026-01-15"),
                              "time zones disagree", "bean-there Europe/Amsterdam",
                              "big-apple America/New_York", "--program")
    # Said for one program, its own midnight.
    one = cli.json("scheduler", "tick", "--dry-run", "--as-of", "2026-01-15",
                   "--program", "big-apple")
    assert one["as_of"] == "2026-01-15T00:00:00-05:00", one
    # A date that means nothing is a usage error naming the option.
    wrong = cli.run("scheduler", "tick", "--dry-run", "--as-of", "15/01/2026")
    assert wrong.code == 2 and "--as-of" in wrong.stderr and "ISO 8601" in wrong.stderr


def test_errors_under_json_are_json_with_a_stable_code(cli: Cli, tmp_path: Path) -> None:
    assert_json_error(cli.run("members", "show", "NOPE", "--json"), "member_not_found",
                      "no member with id 'NOPE'")
    missing = cli.run("members", "show", "--json")
    assert missing.code == 2 and missing.stdout == "", str(missing)
    assert json.loads(missing.stderr) == {"error": "usage",
                                          "message": "Missing argument 'member_id'."}
    empty = run("members", "list", "--json", database=f"sqlite:///{tmp_path / 'none.db'}")
    assert_json_error(empty, "schema_not_current", "db upgrade")
    far = cli.run("scheduler", "tick", "--json", "--as-of", "2199-12-31T00:00:00+00:00")
    assert_json_error(far, "instant", "--allow-future")
    # Without --json the same errors are one sentence.
    assert_one_sentence_error(cli.run("members", "show", "NOPE"), "no member with id 'NOPE'")


def test_a_config_file_holds_the_database_and_defaults_below_the_environment(
        tmp_path: Path, sqlite_template: Path) -> None:
    (tmp_path / "loyalty.toml").write_text(
        'database = "sqlite:///from-config.db"\n[apikeys.list]\njson = true\n',
        encoding="utf-8")
    made = ok("db", "upgrade", cwd=tmp_path)
    assert "from-config.db" in made.out_flat and (tmp_path / "from-config.db").exists()
    assert ok("apikeys", "list", cwd=tmp_path).json() == []  # json = true, from the file
    # The environment outranks the file, the option both.
    other = f"sqlite:///{tmp_path / 'from-env.db'}"
    assert "from-env.db" in ok("db", "upgrade", database=other, cwd=tmp_path).out_flat
    given = f"sqlite:///{tmp_path / 'given.db'}"
    assert "given.db" in ok("db", "upgrade", database=given, via="option",
                            cwd=tmp_path).out_flat
    # --config names another file; a mistake in it is placed at file:line:col.
    bad = tmp_path / "bad.toml"
    bad.write_text("[serve]\nport = \n", encoding="utf-8")
    assert_one_sentence_error(run("--config", str(bad), "db", "current", cwd=tmp_path),
                              f"{bad}:2:8:")
    bad.write_text("[serve]\nprot = 8080\n", encoding="utf-8")
    assert_one_sentence_error(run("--config", str(bad), "db", "current", cwd=tmp_path),
                              "[serve] has no option or command 'prot'")
    assert_one_sentence_error(run("--config", str(tmp_path / "nope.toml"), "db", "current",
                                  cwd=tmp_path), "does not exist")


def test_shell_completion_is_offered_and_completes(tmp_path: Path) -> None:
    script = ok("--show-completion", "bash", cwd=tmp_path)
    assert "_loyalty_completion" in script.stdout and "complete" in script.stdout
    done = run(cwd=tmp_path, env={"_LOYALTY_COMPLETE": "complete_bash",
                                  "COMP_WORDS": "loyalty scheduler re", "COMP_CWORD": "2"})
    assert done.code == 0 and done.out_lines == ["rewind"], str(done)


def test_a_revoked_keys_name_is_free_again_and_the_token_can_be_printed_alone(
        cli: Cli) -> None:
    token = cli.ok("apikeys", "create", "--name", "till-ams", "--scope", "pos", "--store",
                   "AMS-*", "--token-only")
    assert re.fullmatch(r"lk_[0-9a-f]{12}_\S{40,}\n", token.stdout) and token.stderr == ""
    assert_one_sentence_error(cli.run("apikeys", "create", "--name", "till-ams", "--scope",
                                      "admin"), "already a live key named 'till-ams'")
    cli.ok("apikeys", "revoke", "till-ams")
    cli.ok("apikeys", "create", "--name", "till-ams", "--scope", "admin")
    keys = cli.json("apikeys", "list")
    assert [(k["name"], k["revoked_at"] is None) for k in keys] == [
        ("till-ams", False), ("till-ams", True)]


@pytest.mark.postgres
def test_postgres_urls_and_a_database_that_does_not_exist_yet(tmp_path: Path) -> None:
    need_postgres()
    name = f"loyalty_new_{uuid.uuid4().hex[:10]}"
    url = f"postgres://postgres@127.0.0.1:5432/{name}"  # the spelling many hosts give
    try:
        absent = run("db", "upgrade", database=url, cwd=tmp_path)
        assert_one_sentence_error(absent, f"the database '{name}' does not exist",
                                  f"createdb {name}", "--create")
        made = ok("db", "upgrade", "--create", database=url, cwd=tmp_path)
        assert made.out_lines[0] == (f"created database postgresql+psycopg://postgres@"
                                     f"127.0.0.1:5432/{name}"), str(made)
        again = ok("db", "upgrade", "--create", database=url, cwd=tmp_path)
        assert "created" not in again.stdout and "already at revision" in again.stdout
    finally:
        drop_database(name)
