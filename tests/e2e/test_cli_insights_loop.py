"""The relationship loop as an operator runs it: a regular drifts away, the scheduler's
weekly RFM snapshot moves her into at_risk and says so in the outbox, her next purchase
earns the at-risk bonus, and a purchase from before the move, posted late, does not.

Corner Café (tests/fixtures/programs/corner-cafe-insights.yaml) scores with fixed
boundaries. Hand-worked (Amsterdam): Dana buys 10.00 on the Mondays 5, 12, 19 and 26
January and 2 February 2026: 5 purchases (F = 4). The snapshot of Monday 2 March 05:00 finds
her last purchase 28 days back (R = 4): R4 F4 is `loyal`. The weekly runs of 9 to 30 March
find 35 to 56 days (R = 3, still loyal); the run of Monday 6 April finds 63 days (R = 2):
R2 F4 is `at_risk`, a move, one segment_changed event. Her purchase of 7 April (10.00)
earns 10 + 10; the one of 1 April posted after the move earns 10 (the snapshot in force
then, 30 March, said loyal).
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import ROOT, Cli, purchase, write_jsonl

PROGRAM = ROOT / "tests" / "fixtures" / "programs" / "corner-cafe-insights.yaml"
LATTE = [("LATTE", "coffee", "1", "10.00")]


def _buy(transaction_id: str, day: str, hour: str = "10:00:00+01:00") -> dict[str, object]:
    return purchase(transaction_id, "M-DANA", f"{day}T{hour}", LATTE, "10.00",
                    store_id="CC-01")


def test_a_member_drifts_into_at_risk_and_earns_the_bonus_after_the_move(
    db_url: str, tmp_path: Path,
) -> None:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "cafe.yaml").write_text(PROGRAM.read_text(encoding="utf-8"), encoding="utf-8")
    cli.ok("rules", "apply", "cafe.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    write_jsonl(tmp_path / "winter.jsonl", [
        _buy(f"D{n}", day) for n, day in enumerate(
            ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26", "2026-02-02"], start=1)])
    cli.ok("purchases", "import", "winter.jsonl")

    cli.ok("scheduler", "tick", "--job", "rfm_snapshot", "--as-of",
           "2026-03-02T06:00:00+01:00", "--allow-future")
    [snapshot] = cli.json("analytics", "members", "--program", "corner-cafe", "--as-of",
                          "2026-03-02T06:00:00+01:00")["members"]
    assert (snapshot["member_id"], snapshot["segment"]) == ("M-DANA", "loyal")

    cli.ok("scheduler", "tick", "--job", "rfm_snapshot", "--as-of",
           "2026-04-06T06:00:00+02:00", "--allow-future")
    moves = [e for e in cli.json("events", "list", "--since", "0")
             if e["kind"] == "segment_changed"]
    assert [(e["member_id"], e["data"]["from"], e["data"]["to"], e["data"]["r"],
             e["data"]["f"]) for e in moves] == [("M-DANA", "loyal", "at_risk", 2, 4)]
    # The same run date again writes nothing new.
    cli.ok("scheduler", "tick", "--job", "rfm_snapshot", "--as-of",
           "2026-04-06T07:00:00+02:00", "--allow-future")
    assert len([e for e in cli.json("events", "list", "--since", "0")
                if e["kind"] == "segment_changed"]) == 1

    write_jsonl(tmp_path / "spring.jsonl", [
        _buy("D7", "2026-04-07", "10:00:00+02:00"),
        _buy("D6", "2026-04-01", "10:00:00+02:00"),  # made before the move, posted after it
    ])
    cli.ok("purchases", "import", "spring.jsonl")
    explained = cli.json("members", "explain", "M-DANA")
    entries = [(e["transaction_id"], e["rule_id"], e["points"])
               for program in explained["programs"] for e in program["entries"]
               if e.get("transaction_id") in ("D6", "D7")]
    assert sorted(entries) == [("D6", "per-euro", 10), ("D7", "at-risk-double", 10),
                               ("D7", "per-euro", 10)]
    [why] = [e["why"] for program in explained["programs"] for e in program["entries"]
             if e.get("transaction_id") == "D7" and e["rule_id"] == "at-risk-double"]
    assert "at_risk" in why  # the ledger says which segment earned the bonus
    assert cli.json("db", "check")["mismatches"] == []
