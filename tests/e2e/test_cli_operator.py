"""`loyalty points adjust`, `members list --search/--sort`, `members export` and `members
erase` as an operator runs them, on both databases: confirmations, one-sentence and JSON
errors, the numbers after."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli import (
    MARCH_PURCHASES,
    RULES_DIR,
    Cli,
    assert_json_error,
    assert_one_sentence_error,
    ledger_entries,
    write_jsonl,
)


def _shop(db_url: str, tmp_path: Path) -> Cli:
    cli = Cli(db_url, tmp_path)
    cli.ok("rules", "apply", RULES_DIR)
    write_jsonl(tmp_path / "march.jsonl", MARCH_PURCHASES)
    cli.ok("purchases", "import", "march.jsonl")  # M-1: 28 + 5 = 33 points; M-2: 0
    return cli


def test_points_adjust_asks_writes_the_ledger_and_refuses_below_zero(db_url: str,
                                                                    tmp_path: Path) -> None:
    cli = _shop(db_url, tmp_path)
    args = ("points", "adjust", "M-1", "--program", "bean-there", "--points", "+10",
            "--reason", "coffee spilt", "--by", "alice", "--id", "ADJ-1")
    asked = cli.run(*args)  # no terminal to ask at: refused, nothing written
    assert_one_sentence_error(asked, "adds 10 point(s) to M-1", "pass --yes")
    assert cli.json("members", "show", "M-1")["balances"][0]["points"] == 33
    done = cli.ok(*args, "--yes")
    assert done.out_flat == ("adjustment ADJ-1: +10 points for M-1 in bean-there by alice; "
                             "spendable now 43")
    assert "already made" in cli.ok(*args, "--yes").out_flat
    debit = cli.json("points", "adjust", "M-1", "--program", "bean-there", "--points", "-40",
                     "--kind", "correction", "--reason", "T1 counted twice", "--yes")
    assert (debit["points"], debit["balance"], debit["actor"][:3]) == (-40, 3, "os:")
    refused = cli.run("points", "adjust", "M-1", "--program", "bean-there", "--points", "-4",
                      "--reason", "x", "--yes", "--json")
    assert_json_error(refused, "adjustment_rejected", "has 3 spendable points")
    blank = cli.run("points", "adjust", "M-1", "--program", "bean-there", "--points", "5",
                    "--reason", " ", "--yes")
    assert_one_sentence_error(blank, "needs a reason")
    entries = ledger_entries(cli.json("members", "explain", "M-1"))
    assert [(e["kind"], e["points"]) for e in entries][-2:] == [("adjust", 10), ("adjust", -40)]
    explained = cli.ok("members", "explain", "M-1").stdout
    assert "manual adjustment ADJ-1 (goodwill credit) by alice: coffee spilt" in explained
    assert "bean-there: 3 spendable + 0 pending = 3, the sum of its 4 entries" in explained
    assert cli.json("db", "check")["mismatches"] == []


def test_members_list_searches_sorts_and_counts(db_url: str, tmp_path: Path) -> None:
    cli = _shop(db_url, tmp_path)
    cli.ok("members", "enrol", "M-3", "--attr", "email=Liv@Example.com")
    listed = cli.ok("members", "list", "--sort", "purchases:desc", "--limit", "2")
    assert listed.out_lines[-1] == "showing 1–2 of 3"
    assert "bean-there 33" in listed.stdout
    found = cli.json("members", "list", "--search", "liv@")
    assert (found["total"], [m["member_id"] for m in found["members"]]) == (1, ["M-3"])
    ranked = cli.json("members", "list", "--program", "bean-there", "--sort", "points:desc")
    assert [m["member_id"] for m in ranked["members"]] == ["M-1", "M-2"]
    assert cli.ok("members", "list", "--offset", "5").out_lines[-1] == "showing 5–5 of 3"
    assert_one_sentence_error(cli.run("members", "list", "--sort", "points"),
                              "needs a program")


def test_export_then_erase_keeps_the_books(db_url: str, tmp_path: Path) -> None:
    cli = _shop(db_url, tmp_path)
    cli.ok("members", "enrol", "M-1", "--attr", "email=m1@example.com", "--consent",
           "marketing")
    wrote = cli.ok("members", "export", "M-1", "--output", "m1.json")
    assert wrote.out_flat.startswith("wrote ") and wrote.out_flat.endswith("to m1.json")
    exported = json.loads((tmp_path / "m1.json").read_text(encoding="utf-8"))
    assert exported["tables"]["members"][0]["attributes"] == {"email": "m1@example.com"}
    assert len(exported["tables"]["purchases"]) == 2
    before = cli.json("members", "list")
    assert_one_sentence_error(cli.run("members", "erase", "M-1"), "pass --yes")
    erased = cli.ok("members", "erase", "M-1", "--yes", "--by", "dpo")
    assert erased.out_flat == ("erased M-1: 1 attribute(s), 1 consent(s), 0 verification "
                               "evidence; the ledger and purchases are kept")
    after = cli.json("members", "list")
    assert [m["balances"] for m in after["members"]] == [
        m["balances"] for m in before["members"]]
    assert after["members"][0]["erased"] is True
    assert cli.json("db", "check")["mismatches"] == []
    again = cli.run("members", "enrol", "M-1", "--attr", "email=x@example.com", "--json")
    assert_json_error(again, "member_erased", "was erased")
    audit = cli.json("members", "export", "M-1")["tables"]["audit_records"]
    assert [(a["actor"], a["action"]) for a in audit] == [("dpo", "member_erased")]
