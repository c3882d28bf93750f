"""`loyalty redemptions create --at` further back than the program's offline window
(`redemptions.backdate_hours`, 24 by default): one sentence and exit 1, nothing recorded;
an operator entering a paper slip passes --allow-backdate. The clock is the real one, so
the dates here (March and April 2026) are always far behind it."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import (
    SHIPPED_RULES,
    Cli,
    assert_one_sentence_error,
    ledger_entries,
    purchase,
    write_jsonl,
)


def test_an_old_redemption_is_refused_in_one_sentence_unless_allowed(
    db_url: str, tmp_path: Path
) -> None:
    cli = Cli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)
    # 2 x 12.50 of beans, counted double: 50 points, spendable after 14 days.
    write_jsonl(tmp_path / "beans.jsonl", [purchase(
        "T1", "M-1", "2026-03-02T09:00:00+01:00", [("BEANS-1KG", "coffee-beans", "2", "12.50")],
        "25.00")])
    cli.ok("purchases", "import", "beans.jsonl")
    cli.ok("points", "activate", "--as-of", "2026-04-01T00:00:00+02:00")
    create = ("redemptions", "create", "--id", "RD-1", "--member", "M-1", "--program",
              "bean-there", "--points", "20", "--at", "2026-04-01T10:00:00+02:00")

    refused = cli.run(*create)
    assert_one_sentence_error(
        refused, "occurred_at 2026-04-01T10:00:00+02:00 is more than 24 hours before the "
        "redemption is recorded", "program 'bean-there'", "redemptions.backdate_hours",
        "add --allow-backdate")
    assert [e["kind"] for e in ledger_entries(cli.json("members", "explain", "M-1"))] == ["earn"]

    done = cli.json(*create, "--allow-backdate")
    assert (done["kind"], done["points"], done["replayed"]) == ("points", 20, False)
    # Dated now (no --at), it needs no flag.
    now = cli.json("redemptions", "create", "--id", "RD-2", "--member", "M-1", "--program",
                   "bean-there", "--points", "5")
    assert now["points"] == 5
    entries = ledger_entries(cli.json("members", "explain", "M-1"))
    assert [e["points"] for e in entries] == [50, -20, -5]
