"""Hostile files from the command line: program files and purchase files that are too large,
nested too deep, hold an endless number or a NUL byte, or are not what they claim. Each is
refused with its place (file:line:col) and exit 1, quickly and without a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.cli import (
    MARCH_PURCHASES,
    SHIPPED_RULES,
    assert_one_sentence_error,
    ok,
    run,
    write_jsonl,
)

BEAN_THERE = (SHIPPED_RULES / "bean-there-coffee.yaml").read_text(encoding="utf-8")
CSV_HEADER = ("transaction_id,store_id,member_id,occurred_at,currency,total,"
              "sku,category,quantity,unit_price")


def _with_nul_on_line_5() -> str:
    lines = BEAN_THERE.split("\n")
    lines[4] += "\x00"
    return "\n".join(lines)


# name -> (text, the one problem `rules validate` reports)
HOSTILE = {
    "deep.yaml": ("program: " + "[" * 1000 + "]" * 1000 + "\n",
                  "deep.yaml:1:73: malformed YAML: nested more than 64 levels deep"),
    "digits.yaml": (BEAN_THERE.replace("pending_days: 14", "pending_days: " + "9" * 100_000),
                    "digits.yaml:20:17: malformed YAML: a number of 100,000 digits; numbers "
                    "have at most 100"),
    "nul.yaml": (_with_nul_on_line_5(),
                 f"nul.yaml:5:{len(BEAN_THERE.split(chr(10))[4]) + 1}: malformed YAML: the "
                 "character U+0000 is not allowed"),
    "huge.yaml": (BEAN_THERE + "# a comment\n" * 24_000,  # just above 256 KiB
                  "huge.yaml:1:1: the file is larger than 262,144 bytes (256 KiB), the most a "
                  "program file may have; nothing was read"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_rules_validate_places_each_hostile_file(name: str, tmp_path: Path) -> None:
    text, problem = HOSTILE[name]
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = run("rules", "validate", name, cwd=tmp_path)
    assert result.code == 1, str(result)
    assert result.err_lines == [problem, "1 problem found; nothing was changed"], str(result)
    report = run("rules", "validate", name, "--json", cwd=tmp_path)
    assert report.code == 1 and report.json()["valid"] is False, str(report)


def test_rules_apply_refuses_them_too_and_stores_nothing(sqlite_db_url: str,
                                                         tmp_path: Path) -> None:
    for name, (text, _) in HOSTILE.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = run("rules", "apply", *sorted(HOSTILE), database=sqlite_db_url, cwd=tmp_path)
    assert result.code == 1, str(result)
    assert sorted(result.err_lines[:-1]) == sorted(p for _, p in HOSTILE.values())
    versions = ok("rules", "versions", "--json", database=sqlite_db_url, cwd=tmp_path).json()
    assert versions == []


def test_a_16_mb_program_file_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "comments.yaml"
    path.write_text("# x\n" * 4_000_000, encoding="utf-8")
    started = time.monotonic()
    result = run("rules", "validate", path.name, cwd=tmp_path)
    took = time.monotonic() - started
    assert result.err_lines[0].startswith("comments.yaml:1:1: the file is larger than")
    # The CLI's own start-up is most of this (about 1 s; more on a loaded machine): before
    # the bound, this file took 52 s.
    assert took < 15, took


def test_import_refuses_a_line_over_the_limit_and_names_it(sqlite_db_url: str,
                                                          tmp_path: Path) -> None:
    huge = dict(MARCH_PURCHASES[0], transaction_id="T-HUGE",
                items=[MARCH_PURCHASES[0]["items"][0]] * 15_000)  # about 1.1 MB
    write_jsonl(tmp_path / "day.jsonl", [MARCH_PURCHASES[0], json.dumps(huge),
                                         MARCH_PURCHASES[1]])
    assert (tmp_path / "day.jsonl").stat().st_size > 1 << 20
    result = run("purchases", "import", "day.jsonl", database=sqlite_db_url, cwd=tmp_path)
    assert result.code == 1, str(result)
    assert result.err_lines[0] == ("day.jsonl:2: the line is longer than 1,048,576 bytes "
                                   "(1 MiB), the most a record may have; it was not read")
    # Like any bad record: with --skip-invalid the others are imported.
    kept = ok("purchases", "import", "day.jsonl", "--skip-invalid", "--json",
              database=sqlite_db_url, cwd=tmp_path).json()
    assert kept["recorded"] == 2, kept


def test_import_refuses_a_csv_row_over_the_limit(sqlite_db_url: str, tmp_path: Path) -> None:
    row = "C1,UTR-01,M-9,2026-04-01T08:00:00+02:00,EUR,3.20,LATTE," + "x" * (1 << 20) + ",1,3.20"
    (tmp_path / "day.csv").write_text(f"{CSV_HEADER}\n{row}\n", encoding="utf-8")
    result = run("purchases", "import", "day.csv", database=sqlite_db_url, cwd=tmp_path)
    assert_one_sentence_error(result, "day.csv:2: the line is longer than 1,048,576 bytes")


def test_import_of_a_directory_says_so(sqlite_db_url: str, tmp_path: Path) -> None:
    (tmp_path / "exports.jsonl").mkdir()
    for target in ("exports.jsonl", "."):
        result = run("purchases", "import", target, database=sqlite_db_url, cwd=tmp_path)
        assert_one_sentence_error(result, f"{target} is a directory; import one purchase file")


def test_import_of_a_semicolon_csv_says_so(sqlite_db_url: str, tmp_path: Path) -> None:
    row = "C1;UTR-01;M-9;2026-04-01T08:00:00+02:00;EUR;3,20;LATTE;coffee;1;3,20"
    (tmp_path / "excel.csv").write_text(CSV_HEADER.replace(",", ";") + "\n" + row + "\n",
                                        encoding="utf-8")
    result = run("purchases", "import", "excel.csv", database=sqlite_db_url, cwd=tmp_path)
    line = assert_one_sentence_error(result, "excel.csv:1: the header has one column; the "
                                             "file looks separated by semicolons: use commas")
    assert "unknown column" not in line
