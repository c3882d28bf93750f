"""`loyalty purchases import`: JSON Lines and CSV files, all or nothing, replays change nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.e2e.cli import (
    MARCH_PURCHASES,
    RULES_DIR,
    assert_one_sentence_error,
    ledger_entries,
    listed_members,
    ok,
    run,
    write_jsonl,
)

CSV_HEADER = ("transaction_id,store_id,member_id,occurred_at,currency,total,"
              "sku,category,quantity,unit_price\n")

GOOD = MARCH_PURCHASES


def _members(db_url: str, cwd: Path) -> list[dict[str, object]]:
    return listed_members(ok("members", "list", "--json", database=db_url, cwd=cwd).json())


def test_import_jsonl_then_again_changes_nothing(db_url: str, tmp_path: Path) -> None:
    ok("rules", "apply", RULES_DIR, database=db_url, cwd=tmp_path)
    write_jsonl(tmp_path / "march.jsonl", [GOOD[0], GOOD[1], "", GOOD[2], GOOD[3]])

    first = ok("purchases", "import", "march.jsonl", database=db_url, cwd=tmp_path)
    assert first.out_flat == ("4 purchase(s) read: 4 recorded, 0 already recorded; "
                              "points awarded: bean-there 33"), str(first)

    members = _members(db_url, tmp_path)
    assert [(m["member_id"], m["points"], m["purchases"], m["last_purchase_at"])
            for m in members] == [
        ("M-1", 33, 2, "2026-03-15T08:30:00+00:00"),
        ("M-2", 0, 1, "2026-03-16T09:00:00+00:00"),
    ]

    again = ok("purchases", "import", "march.jsonl", "--json", database=db_url, cwd=tmp_path)
    assert again.json() == {
        "file": "march.jsonl", "read": 4, "recorded": 0, "replayed": 4, "points_by_program": {},
        "refunds": {"read": 0, "applied": 0, "replayed": 0, "points_taken_back_by_program": {}},
        "committed": True, "rejects_file": None, "errors": [],
    }
    assert _members(db_url, tmp_path) == members


def test_import_csv_groups_rows_into_purchases(db_url: str, tmp_path: Path) -> None:
    ok("rules", "apply", RULES_DIR, database=db_url, cwd=tmp_path)
    rows = (
        CSV_HEADER
        + "C1,UTR-01,M-9,2026-04-01T08:00:00+02:00,EUR,15.70,BEANS-1KG,coffee-beans,1,12.50\n"
        + "C1,UTR-01,M-9,2026-04-01T08:00:00+02:00,EUR,15.70,LATTE,coffee,1,3.20\n"
        + "C2,UTR-01,,2026-04-01T09:00:00+02:00,EUR,3.20,LATTE,coffee,1,3.20\n"
        + "\n"
        + "C3,UTR-01,M-9,2026-04-02T09:00:00+02:00,EUR,7.00,DEPOSIT-BOTTLE,deposit,1,0.50\n"
        + "C3,UTR-01,M-9,2026-04-02T09:00:00+02:00,EUR,7.00,SANDWICH,food,,6.50\n"
    )
    (tmp_path / "april.csv").write_text(rows, encoding="utf-8")
    # The same content under a name that does not say its format.
    (tmp_path / "april-export.txt").write_text(rows, encoding="utf-8")

    first = ok("purchases", "import", "april.csv", database=db_url, cwd=tmp_path)
    assert first.out_flat == ("3 purchase(s) read: 3 recorded, 0 already recorded; "
                              "points awarded: bean-there 34"), str(first)

    again = ok("purchases", "import", "april-export.txt", "--format", "csv",
               database=db_url, cwd=tmp_path)
    assert again.out_flat == ("3 purchase(s) read: 0 recorded, 3 already recorded; "
                              "points awarded: none"), str(again)

    entries = ledger_entries(
        ok("members", "explain", "M-9", "--json", database=db_url, cwd=tmp_path).json())
    assert [(e["transaction_id"], e["store_id"], e["points"], e["total_minor"])
            for e in entries] == [("C1", "UTR-01", 28, 1570), ("C3", "UTR-01", 6, 700)]
    assert entries[0]["reason"]["multipliers"]["coffee-beans"]["spend_minor"] == 1250
    assert entries[1]["reason"]["excluded_items"] == 1
    assert entries[1]["reason"]["eligible_spend_minor"] == 650


BAD_LINES: list[dict[str, Any] | str] = [
    GOOD[0],                                                          # 1: good (28 points)
    {**GOOD[1], "transaction_id": "B1", "total": "9.99"},            # 2: wrong total
    "this is not json",                                               # 3
    {**GOOD[3], "transaction_id": "B3", "occurred_at": "2026-03-14T09:30:00"},  # 4: no offset
    {**GOOD[3], "transaction_id": "B4", "currency": "USD", "total": "1.50"},    # 5: no program
    {**GOOD[1], "transaction_id": "T2", "member_id": "M-2"},         # 6: good (5 points)
    {**GOOD[0], "member_id": "M-3"},                                 # 7: T1 again, differently
]
BAD_REASONS = {
    2: "total 9.99 does not equal the sum of the items",
    3: "Invalid JSON",
    4: "occurred_at",
    5: "currency USD does not match any program in force",
    7: "already recorded with different contents",
}


def test_bad_lines_are_all_reported_and_nothing_is_stored(db_url: str, tmp_path: Path) -> None:
    ok("rules", "apply", RULES_DIR, database=db_url, cwd=tmp_path)
    write_jsonl(tmp_path / "mixed.jsonl", BAD_LINES)

    refused = run("purchases", "import", "mixed.jsonl", database=db_url, cwd=tmp_path)
    assert refused.code == 1, str(refused)
    assert refused.stdout == "", str(refused)
    *problems, summary = refused.err_lines
    assert len(problems) == len(BAD_REASONS), str(refused)
    for line, (number, reason) in zip(problems, sorted(BAD_REASONS.items()), strict=True):
        assert line.startswith(f"mixed.jsonl:{number}: "), str(refused)
        assert reason in line, str(refused)
    assert summary == ("5 bad record(s); nothing was imported "
                       "(fix them, or use --skip-invalid)"), str(refused)

    as_json = run("purchases", "import", "mixed.jsonl", "--json", database=db_url, cwd=tmp_path)
    assert as_json.code == 1, str(as_json)
    report = as_json.json()
    assert report["committed"] is False
    assert report["read"] == 7
    assert (report["recorded"], report["points_by_program"]) == (0, {})
    assert [e["line"] for e in report["errors"]] == sorted(BAD_REASONS)

    assert _members(db_url, tmp_path) == [], "a refused import stored something"

    kept = ok("purchases", "import", "mixed.jsonl", "--skip-invalid",
              database=db_url, cwd=tmp_path)
    assert kept.out_flat == (
        "7 purchase(s) read: 2 recorded, 0 already recorded; points awarded: bean-there 33 "
        "5 rejected; reasons in mixed.jsonl.rejects.jsonl"
    ), str(kept)
    rejects = [json.loads(line) for line in
               (tmp_path / "mixed.jsonl.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rejects] == sorted(BAD_REASONS)
    for reject, (_, reason) in zip(rejects, sorted(BAD_REASONS.items()), strict=True):
        assert reject["file"] == "mixed.jsonl"
        assert reason in reject["reason"]
    assert "this is not json" in json.dumps(rejects[1]["record"])

    assert [(m["member_id"], m["points"], m["purchases"])
            for m in _members(db_url, tmp_path)] == [("M-1", 28, 1), ("M-2", 5, 1)]


def test_bad_csv_rows_with_skip_invalid_and_a_rejects_path(
    sqlite_db_url: str, tmp_path: Path
) -> None:
    db_url = sqlite_db_url
    ok("rules", "apply", RULES_DIR, database=db_url, cwd=tmp_path)
    (tmp_path / "bad.csv").write_text(
        CSV_HEADER
        + "D1,UTR-01,M-7,2026-04-01T08:00:00+02:00,EUR,4.00,LATTE,coffee,1,4.00\n"      # 2 ok
        + "D2,UTR-01,M-7,2026-04-01T08:00:00+02:00,EUR,9.00,LATTE,coffee,1,4.00\n"      # 3
        + "D3,UTR-01,M-7,2026-04-01T08:00:00+02:00,EUR\n"                               # 4
        + "D4,UTR-01,M-7,2026-04-01T08:00:00+02:00,EUR,8.00,LATTE,coffee,1,4.00\n"      # 5
        + "D4,UTR-01,M-8,2026-04-01T08:00:00+02:00,EUR,8.00,LATTE,coffee,1,4.00\n"      # 6
        + "D5,UTR-01,M-7,2026-04-01T08:00:00+02:00,EUR,2.00,LATTE,coffee,one,2.00\n"    # 7
        + "D6,UTR-02,M-8,2026-04-03T08:00:00+02:00,EUR,5.00,MUFFIN,pastry,2,2.50\n",    # 8 ok
        encoding="utf-8",
    )
    refused = run("purchases", "import", "bad.csv", database=db_url, cwd=tmp_path)
    assert refused.code == 1, str(refused)
    expected = [
        ("bad.csv:3: ", "total 9.00 does not equal the sum of the items"),
        ("bad.csv:4: ", "expected 10 columns, found 5"),
        ("bad.csv:5: ", "member_id differ(s) from the first row of the same transaction"),
        ("bad.csv:7: ", "quantity"),
    ]
    *problems, summary = refused.err_lines
    assert len(problems) == len(expected), str(refused)
    for line, (prefix, reason) in zip(problems, expected, strict=True):
        assert line.startswith(prefix) and reason in line, str(refused)
    assert summary.startswith("4 bad record(s); nothing was imported"), str(refused)

    kept = ok("purchases", "import", "bad.csv", "--skip-invalid", "--rejects", "rejected.jsonl",
              "--json", database=db_url, cwd=tmp_path).json()
    assert (kept["read"], kept["recorded"], kept["points_by_program"]) == (6, 2, {"bean-there": 9})
    assert kept["committed"] is True
    assert kept["rejects_file"] == "rejected.jsonl"
    rejects = (tmp_path / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(r)["line"] for r in rejects] == [3, 4, 5, 7]
    assert not (tmp_path / "bad.csv.rejects.jsonl").exists()


def test_rejects_path_in_a_missing_directory(sqlite_db_url: str, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "one-bad.jsonl", [GOOD[2], "{not json"])
    result = run("purchases", "import", "one-bad.jsonl", "--skip-invalid",
                 "--rejects", "missing-dir/rejects.jsonl", database=sqlite_db_url, cwd=tmp_path)
    if result.code == 0:  # creating the directory is fine too
        assert (tmp_path / "missing-dir" / "rejects.jsonl").is_file(), str(result)
    else:
        # ...but a path that cannot be written is the user's to fix, not an internal error.
        assert_one_sentence_error(result, "missing-dir/rejects.jsonl")


def test_files_that_cannot_be_imported(sqlite_db_url: str, tmp_path: Path) -> None:
    (tmp_path / "no-quantity.csv").write_text(
        "transaction_id,store_id,member_id,occurred_at,currency,total,sku,category,unit_price\n"
        "C1,UTR-01,M-9,2026-04-01T08:00:00+02:00,EUR,3.20,LATTE,coffee,3.20\n",
        encoding="utf-8",
    )
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    (tmp_path / "header-only.csv").write_text(CSV_HEADER, encoding="utf-8")
    write_jsonl(tmp_path / "purchases.txt", [GOOD[0]])

    cases = [
        ("no-quantity.csv", ["no-quantity.csv:1:", "missing column(s): quantity"]),
        ("empty.jsonl", ["empty.jsonl", "the file is empty"]),
        ("header-only.csv", ["header-only.csv", "the file is empty"]),
        ("purchases.txt", ["purchases.txt", "cannot tell the format", "--format"]),
    ]
    for name, fragments in cases:
        result = run("purchases", "import", name, database=sqlite_db_url, cwd=tmp_path)
        assert_one_sentence_error(result, *fragments)
    assert _members(sqlite_db_url, tmp_path) == []
