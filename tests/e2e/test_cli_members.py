"""`loyalty members list|show|explain` after purchases under two versions of a program."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.cli import (
    MARCH_PURCHASES,
    RULES_DIR,
    Result,
    assert_one_sentence_error,
    ledger_entries,
    ok,
    purchase,
    run,
    write_jsonl,
)

MARCH = MARCH_PURCHASES
APRIL = [
    # v2 (2 points per euro from 1 April): 3.20 -> 6 points
    purchase("T5", "M-1", "2026-04-10T09:00:00+02:00", [("LATTE", "coffee", "1", "3.20")],
             "3.20"),
]


def test_members_after_two_program_versions(db_url: str, tmp_path: Path) -> None:
    def loyalty(*args: str | Path) -> Result:
        return ok(*args, database=db_url, cwd=tmp_path)

    # Version 1 for all history, version 2 (twice the points) from 1 April; then one file of
    # purchases from March and April, each earning under the version in force at the time.
    loyalty("rules", "apply", RULES_DIR)
    doubled = tmp_path / "rules-v2" / "bean-there-coffee.yaml"
    doubled.parent.mkdir()
    doubled.write_text((RULES_DIR / "bean-there-basic.yaml").read_text(encoding="utf-8")
                       .replace("points_per_unit: 1", "points_per_unit: 2"), encoding="utf-8")
    [v2] = loyalty("rules", "apply", doubled.parent, "--effective-from",
                   "2026-04-01T00:00:00+02:00", "--json").json()
    assert (v2["program"], v2["version"], v2["created"]) == ("bean-there", 2, True)
    assert datetime.fromisoformat(v2["effective_from"]) == datetime(2026, 3, 31, 22, tzinfo=UTC)
    write_jsonl(tmp_path / "purchases.jsonl", [*MARCH, *APRIL])
    imported = loyalty("purchases", "import", "purchases.jsonl")
    assert imported.out_flat == ("5 purchase(s) read: 5 recorded, 0 already recorded; "
                                 "points awarded: bean-there 39"), str(imported)

    listed = loyalty("members", "list", "--json").json()
    assert [(m["member_id"], m["points"], m["purchases"], m["last_purchase_at"])
            for m in listed] == [
        ("M-1", 39, 3, "2026-04-10T07:00:00+00:00"),
        ("M-2", 0, 1, "2026-03-16T09:00:00+00:00"),
    ]

    # Member since the enrolment (the first purchase enrolled them), in the program's zone.
    assert loyalty("members", "show", "M-1").out_lines[0] == (
        "M-1 (member of bean-there since 2026-03-14T09:30:00+01:00)")
    shown = loyalty("members", "show", "M-1", "--json").json()
    assert shown["member_id"] == "M-1"
    assert shown["enrolments"] == [{"program_id": "bean-there", "source": "auto",
                                    "enrolled_at": "2026-03-14T08:30:00+00:00"}]
    assert shown["balances"] == [{"program_id": "bean-there", "points": 39, "pending": 0,
                                  "lifetime_earned": 39}]
    assert [(lot["program_id"], lot["earned_at"], lot["points"], lot["remaining"],
             lot["expires_at"]) for lot in shown["lots"]] == [
        ("bean-there", "2026-03-14T08:30:00+00:00", 28, 28, None),
        ("bean-there", "2026-03-15T08:30:00+00:00", 5, 5, None),
        ("bean-there", "2026-04-10T07:00:00+00:00", 6, 6, None),
    ]
    assert [(p["transaction_id"], p["store_id"], p["total_minor"], p["currency"])
            for p in shown["recent_purchases"]] == [
        ("T5", "AMS-01", 320, "EUR"), ("T2", "AMS-01", 3000, "EUR"), ("T1", "AMS-01", 1570, "EUR"),
    ]

    entries = ledger_entries(loyalty("members", "explain", "M-1", "--json").json())
    assert [(e["program_id"], e["version"], e["rule_id"], e["transaction_id"], e["points"])
            for e in entries] == [
        ("bean-there", 1, "points-per-euro", "T1", 28),
        ("bean-there", 1, "points-per-euro", "T2", 5),
        ("bean-there", 2, "points-per-euro", "T5", 6),
    ]
    assert entries[2]["content_hash"] == v2["content_hash"] != entries[0]["content_hash"]
    assert entries[0]["reason"]["multipliers"] == {
        "coffee-beans": {"spend_minor": 1250, "multiplier": "2"}
    }
    assert entries[1]["reason"]["excluded_items"] == 1
    assert entries[1]["reason"]["eligible_spend_minor"] == 500
    assert entries[2]["reason"]["points_per_unit"] == "2"

    text = loyalty("members", "explain", "M-1")
    assert text.out_lines[0] == ("bean-there: Bean There Coffee Club (EUR, times in "
                                 "Europe/Amsterdam)"), str(text)
    # Times as the till wrote them (09:30+01:00 is not shown as 08:30 UTC), reasons as
    # sentences, and the program's own balance, spendable and pending apart.
    assert " ".join(text.out_lines[1].split()) == (
        "2026-03-14T09:30:00+01:00 earn +28 rule points-per-euro v1 (88b5ccb0354d): purchase "
        "T1 at AMS-01 (15.70 EUR), 1 point(s) per EUR on 15.70 EUR; x2 on coffee-beans "
        "(12.50 EUR); rounded down [sum 28]"), str(text)
    assert "+6 rule points-per-euro v2" in text.out_flat, str(text)
    assert "2 point(s) per EUR on 3.20 EUR" in text.out_flat, str(text)
    assert text.out_lines[-1].strip() == (
        "bean-there: 39 spendable + 0 pending = 39, the sum of its 3 entries"), str(text)
    assert "{" not in text.stdout and "'" not in text.stdout, str(text)

    check = loyalty("db", "check", "--json").json()
    assert check == {"balances_checked": 2, "mismatches": []}

    missing = run("members", "show", "M-404", database=db_url, cwd=tmp_path)
    assert_one_sentence_error(missing, "no member with id 'M-404'")


def test_ids_that_look_like_markup_are_shown_as_they_are(sqlite_db_url: str,
                                                        tmp_path: Path) -> None:
    ok("rules", "apply", RULES_DIR, database=sqlite_db_url)
    path = write_jsonl(tmp_path / "odd.jsonl", [purchase(
        "T-[b]1", "M[/]", "2026-03-03T08:12:00+01:00", [("FW", "coffee", "1", "3.20")], "3.20",
        store_id="[red]S",
    )])
    ok("purchases", "import", path, database=sqlite_db_url)
    assert "M[/]" in ok("members", "list", database=sqlite_db_url).stdout
    shown = ok("members", "show", "M[/]", database=sqlite_db_url).stdout
    assert "[red]S" in shown and "T-[b]1" in shown
