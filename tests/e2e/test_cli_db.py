"""`loyalty db ...` and the database chosen by --database / LOYALTY_DATABASE_URL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from tests.e2e.cli import assert_one_sentence_error, ok, run

Via = Literal["env", "option"]


def test_empty_database_is_refused_until_upgraded(empty_db_url: str, tmp_path: Path) -> None:
    # A data command on a database without tables: one sentence that says what to run.
    refused = run("members", "list", database=empty_db_url, cwd=tmp_path)
    line = assert_one_sentence_error(refused, "run `loyalty db upgrade`")
    assert "empty" in line

    before = ok("db", "current", "--json", database=empty_db_url, cwd=tmp_path).json()
    assert before["current"] is None
    assert before["up_to_date"] is False
    assert before["head"]

    upgraded = ok("db", "upgrade", database=empty_db_url, via="option", cwd=tmp_path)
    assert f"from empty to {before['head']}" in upgraded.out_flat

    after = ok("db", "current", "--json", database=empty_db_url, cwd=tmp_path).json()
    assert after == {**before, "current": before["head"], "up_to_date": True}

    # Now the same data command works.
    assert ok("members", "list", "--json", database=empty_db_url, cwd=tmp_path).json()[
        "members"] == []


@pytest.mark.parametrize(
    ("url", "via", "fragments"),
    [
        pytest.param("mysql://x", "option", ["mysql is not supported", "SQLite or PostgreSQL"],
                     id="unsupported-option"),
        pytest.param("mysql://x", "env", ["mysql is not supported", "SQLite or PostgreSQL"],
                     id="unsupported-env"),
        pytest.param("not a database url", "option", ["is not a database URL"], id="garbage"),
    ],
)
def test_bad_database_url(url: str, fragments: list[str], via: Via, tmp_path: Path) -> None:
    result = run("members", "list", database=url, via=via, cwd=tmp_path)
    assert_one_sentence_error(result, *fragments)
    assert not (tmp_path / "loyalty.db").exists(), "fell back to the default database"


@pytest.mark.parametrize("via", ["option", "env"])
def test_unreachable_postgresql(via: Via, tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/x"
    result = run("members", "list", database=url, via=via, cwd=tmp_path)
    line = assert_one_sentence_error(result, "database error")
    # The message must name the database the user asked for, not some other one.
    assert "127.0.0.1:1/x" in line, f"the message does not name {url}:\n{result}"
    assert "sqlite" not in line, f"the message names the wrong database:\n{result}"
    assert not (tmp_path / "loyalty.db").exists(), "fell back to the default database"
