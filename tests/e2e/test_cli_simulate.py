"""`loyalty rules simulate`, `rules show` and `rules apply --dry-run`, as a user runs them.

The history is the one of tests/integration/test_simulate.py without the redemption (a
redemption entered now for January would find its points expired): sim-shop, 1 point per
euro (2 at Silver), 10 points on baskets of 50 euros or more, expiry after two months,
the scheduler ticked as time went by.

  A  P1 10 Jan 60.00: 70;  P2 20 Jan 50.00: 60 (reaches Silver);  P3 5 Feb 20.00 at
     Silver: 40;  10 Feb half of P2 back: -30 (25 per euro, 5 basket)
  B  B1 15 Feb 30.00: 30;  B2 1 Mar 80.00: 90 (reaches Silver, earns at Member)

The candidate doubles the basket bonus: P1, P2 and B2 earn 10 more (+30) and the refund
takes 5 more back: +25 for big-basket, nothing for per-euro.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.cli import (
    ROOT,
    assert_one_sentence_error,
    ok,
    purchase,
    run,
    write_jsonl,
)

FIXTURES = ROOT / "tests" / "fixtures" / "simulate"
LIVE = FIXTURES / "sim-shop.yaml"
DOUBLE = FIXTURES / "sim-shop-double-basket.yaml"


def _buy(tx: str, member: str, when: str, amount: str) -> dict[str, object]:
    return purchase(tx, member, when, [("ITEM", "goods", "1", amount)], amount,
                    store_id="SIM-01")


def _history(db: str, tmp_path: Path) -> None:
    ok("rules", "apply", LIVE, "--effective-from", "2026-01-01", database=db)
    parts = [
        [_buy("P1", "A", "2026-01-10T12:00:00+01:00", "60.00"),
         _buy("P2", "A", "2026-01-20T12:00:00+01:00", "50.00")],
        [_buy("P3", "A", "2026-02-05T12:00:00+01:00", "20.00"),
         {"type": "refund", "refund_id": "RF1", "store_id": "SIM-01",
          "original_transaction_id": "P2", "occurred_at": "2026-02-10T12:00:00+01:00",
          "amount": "25.00"},
         _buy("B1", "B", "2026-02-15T12:00:00+01:00", "30.00")],
        [_buy("B2", "B", "2026-03-01T12:00:00+01:00", "80.00")],
    ]
    ticks = ["2026-02-01T04:00:00+01:00", "2026-03-01T04:00:00+01:00",
             "2026-04-01T04:00:00+02:00"]
    for i, (part, tick) in enumerate(zip(parts, ticks, strict=True)):
        ok("purchases", "import", write_jsonl(tmp_path / f"part{i}.jsonl", part), database=db)
        ok("scheduler", "tick", "--as-of", tick, database=db)
    ok("scheduler", "tick", "--as-of", "2026-04-30T23:00:00+02:00", database=db)


def test_simulate_json_verify_and_report(db_url: str, tmp_path: Path) -> None:
    _history(db_url, tmp_path)
    report = tmp_path / "sim.html"
    result = ok("rules", "simulate", DOUBLE, "--to", "2026-05-01", "--verify", "--json",
                "--report", report, database=db_url).json()
    assert result["verify"] == {"matches": True, "mismatches": []}
    assert result["replayed"]["purchases"] == 5 and result["replayed"]["refunds"] == 1
    assert result["delta"]["by_rule"] == {"big-basket": 25, "per-euro": 0}
    assert (result["live"]["issued"], result["candidate"]["issued"]) == (290, 320)
    # Expired by 1 May: A's P1 (70), P2 (60 - 30) and P3 (40); B's B1 (30).
    assert result["live"]["expired"] == 70 + 30 + 40 + 30
    assert result["live"]["tier_mix"] == {"member": 1, "silver": 1}
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "big-basket" in page
    assert "self-check passed" in page
    # Self-contained: no scripts, no stylesheets or images fetched from anywhere.
    assert not re.search(r"https?://|src=|<link|@import|<script", page)

    text = ok("rules", "simulate", DOUBLE, "--to", "2026-05-01", "--verify",
              database=db_url).stdout
    assert "big-basket 25 -> 50 (+25)" in text
    assert "self-check passed" in text


def test_rules_show(db_url: str, tmp_path: Path) -> None:
    ok("rules", "apply", LIVE, "--effective-from", "2026-01-01", database=db_url)
    assert ok("rules", "show", "sim-shop", database=db_url).stdout == LIVE.read_text(
        encoding="utf-8")
    shown = ok("rules", "show", "sim-shop", "--version", "1", "--json", database=db_url).json()
    assert shown["version"] == 1 and shown["source"] == LIVE.read_text(encoding="utf-8")
    assert_one_sentence_error(run("rules", "show", "sim-shop", "--version", "2",
                                  database=db_url), "no version 2")
    assert_one_sentence_error(run("rules", "show", "nope", database=db_url),
                              "no program 'nope'")


def test_apply_dry_run_diffs_and_simulates_the_last_90_days(db_url: str,
                                                             tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=80)).isoformat()
    ok("rules", "apply", LIVE, "--effective-from", start, database=db_url)
    days = [(now - timedelta(days=d)).isoformat() for d in (60, 30, 10)]
    ok("purchases", "import", write_jsonl(tmp_path / "recent.jsonl", [
        _buy("N1", "C", days[0], "55.00"),   # 55 + 10
        _buy("N2", "C", days[1], "20.00"),   # 20
        _buy("N3", "D", days[2], "70.00"),   # 70 + 10
    ]), database=db_url)
    shown = ok("rules", "apply", "--dry-run", DOUBLE, "--json", database=db_url).json()
    [answer] = shown["programs"]
    assert answer["stored_version"] == 1 and answer["new"] is False
    assert answer["simulation"]["delta"]["by_rule"] == {"big-basket": 20, "per-euro": 0}
    text = ok("rules", "apply", "--dry-run", DOUBLE, database=db_url).stdout
    assert "~ rule big-basket: points 10 -> 20" in text
    assert "the last 90 days under this version" in text
    assert "nothing was stored" in text
    # Nothing was stored: still one version, the stored one.
    versions = ok("rules", "versions", "--json", database=db_url).json()
    assert [v["version"] for v in versions] == [1]


def test_apply_dry_run_with_only_anonymous_purchases_lately_simulates_nothing(
        db_url: str, tmp_path: Path) -> None:
    # A member bought 200 days ago; the last 90 days hold only a walk-in without a card.
    # A replay leaves anonymous purchases out, so there is nothing to simulate: the dry run
    # says so (it used to count the walk-in, simulate, and fail on an empty window).
    now = datetime.now(UTC).replace(microsecond=0)
    ok("rules", "apply", LIVE, "--effective-from", (now - timedelta(days=300)).isoformat(),
       database=db_url)
    walk_in = _buy("W1", "A", (now - timedelta(days=20)).isoformat(), "40.00")
    walk_in["member_id"] = None
    ok("purchases", "import", write_jsonl(tmp_path / "old.jsonl", [
        _buy("O1", "A", (now - timedelta(days=200)).isoformat(), "60.00"), walk_in,
    ]), database=db_url)
    shown = ok("rules", "apply", "--dry-run", DOUBLE, "--json", database=db_url).json()
    [answer] = shown["programs"]
    assert answer["simulation"] is None
    assert answer["note"] == "no purchases in the last 90 days to simulate"
    text = ok("rules", "apply", "--dry-run", DOUBLE, database=db_url).stdout
    assert "sim-shop: no purchases in the last 90 days to simulate" in text
    assert "nothing was stored" in text


def test_bad_candidates_and_windows(db_url: str, tmp_path: Path) -> None:
    _history(db_url, tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text(DOUBLE.read_text(encoding="utf-8").replace("points: 20",
                                                                 "points: twenty"),
                      encoding="utf-8")
    bad = run("rules", "simulate", broken, database=db_url)
    assert bad.code == 1 and bad.stdout == ""
    assert re.search(rf"{re.escape(str(broken))}:\d+:\d+: ", bad.stderr), bad
    other = tmp_path / "other.yaml"
    other.write_text(LIVE.read_text(encoding="utf-8").replace("program: sim-shop",
                                                               "program: sim-other"),
                     encoding="utf-8")
    assert_one_sentence_error(run("rules", "simulate", other, database=db_url),
                              "matches no stored program", "--as-new")
    fresh = ok("rules", "simulate", other, "--as-new", "--to", "2026-05-01", "--json",
               database=db_url).json()
    assert fresh["as_new"] is True and fresh["candidate"]["issued"] == 290
    assert_one_sentence_error(run("rules", "simulate", DOUBLE, "--from", "2026-04-01",
                                  "--to", "2026-03-01", database=db_url), "is after --to")
    report = tmp_path / "never.html"
    assert_one_sentence_error(run("rules", "simulate", DOUBLE, "--from", "2026-03-10",
                                  "--to", "2026-03-20", "--report", report,
                                  database=db_url), "no purchases")
    assert not report.exists()
