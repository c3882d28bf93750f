"""`loyalty reports ...` as a user runs them, over a small history worked out by hand.

finance-shop (a point a euro, pending 14 days), here with points lapsing after 24 months
(a redemption recorded today cannot spend points that lapsed since; the expiry run is
tested in tests/integration/test_reports.py). Amsterdam time: M-1 buys 100.00 on 10
January (100 points), M-2 50.00 on 20 January (50); activated on 5 February; M-1 redeems
40 on 7 February; M-1 buys 30.00 on 1 March (30 points, pending to 15 March), activated on
25 March.

Roll-forward: January 150; February 150 - 40 = 110; March 110 + 30 = 140, what the
balances show; every later month 140.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli import ROOT, Cli, assert_one_sentence_error, purchase, write_jsonl

PROGRAM = (ROOT / "tests" / "fixtures" / "programs" / "finance-shop.yaml").read_text(
    encoding="utf-8").replace("after_months: 2", "after_months: 24")
END_OF_MARCH = "2026-03-31T12:00:00+02:00"


def _history(db_url: str, tmp_path: Path) -> Cli:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "shop.yaml").write_text(PROGRAM, encoding="utf-8")
    cli.ok("rules", "apply", "shop.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    write_jsonl(tmp_path / "sales.jsonl", [
        purchase("P1", "M-1", "2026-01-10T12:00:00+01:00", [("BOOK", "books", "1", "100.00")],
                 "100.00"),
        purchase("P2", "M-2", "2026-01-20T12:00:00+01:00", [("PEN", "office", "2", "25.00")],
                 "50.00"),
        purchase("P3", "M-1", "2026-03-01T12:00:00+01:00", [("BOOK", "books", "1", "30.00")],
                 "30.00"),
    ])
    cli.ok("purchases", "import", "sales.jsonl")
    cli.ok("points", "activate", "--as-of", "2026-02-05T12:00:00+01:00")
    cli.ok("redemptions", "create", "--id", "R1", "--member", "M-1", "--program",
           "finance-shop", "--points", "40", "--at", "2026-02-07T12:00:00+01:00",
           "--allow-backdate")
    cli.ok("points", "activate", "--as-of", "2026-03-25T12:00:00+01:00")
    return cli


def test_reports_as_json_charts_and_page(db_url: str, tmp_path: Path) -> None:
    cli = _history(db_url, tmp_path)

    [rolled] = cli.json("reports", "roll-forward", "--period", "month", "--program",
                        "finance-shop")
    periods = rolled["periods"]
    assert [(p["period"], p["opening"], p["earned"], p["redeemed"], p["expired"],
             p["closing"]) for p in periods[:3]] == [
        ("2026-01", 0, 150, 0, 0, 150), ("2026-02", 150, 0, 40, 0, 110),
        ("2026-03", 110, 30, 0, 0, 140)]
    assert periods[-1]["closing"] == rolled["balances_now"] == 140

    [owed] = cli.json("reports", "liability", "--as-of", END_OF_MARCH)
    # 140 outstanding at 0.01 EUR: 1.40 EUR.
    assert (owed["spendable"], owed["pending"], owed["value"], owed["currency"]) == (
        140, 0, "1.40", "EUR")

    [report] = cli.json("reports", "breakage", "--as-of", END_OF_MARCH)
    january = report["triangle"][0]
    assert (january["cohort"], january["issued"]) == ("2026-01", 150)
    assert [(a["redeemed"], a["expired"], a["outstanding"]) for a in january["ages"]] == [
        (0, 0, 150), (40, 0, 110), (40, 0, 110)]

    [burn] = cli.json("reports", "earn-burn", "--period", "quarter")
    assert burn["periods"][0] == {"period": "2026-Q1", "issued": 180, "redeemed": 40,
                                  "expired": 0, "redemption_rate": "0.222222"}

    schedule = cli.json("reports", "ifrs15", "--program", "finance-shop", "--as-of",
                        END_OF_MARCH, "--csv", "journal.csv")
    assert schedule["currency"] == "EUR"
    lines = (tmp_path / "journal.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "period,date,account,debit,credit,currency,memo"
    assert any("Contract liability - loyalty points" in line for line in lines[1:])

    cli.ok("reports", "roll-forward", "--chart", "waterfall.png")
    assert (tmp_path / "waterfall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cli.ok("reports", "breakage", "--chart", "curves.svg")
    assert "<svg" in (tmp_path / "curves.svg").read_text(encoding="utf-8")
    cli.ok("reports", "earn-burn", "--chart", "burn.html")
    assert "<svg" in (tmp_path / "burn.html").read_text(encoding="utf-8")

    cli.ok("reports", "program", "finance-shop", "--html", "before.html")
    page = (tmp_path / "before.html").read_text(encoding="utf-8")
    assert "No RFM snapshot yet" in page  # says what to do instead of an empty chart
    cli.ok("scheduler", "tick", "--job", "rfm_snapshot")  # now: this week's snapshot
    cli.ok("reports", "program", "finance-shop", "--html", "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    # liability, waterfall, breakage and the segment mix (no tiers); the retention trend
    # when a month had customers at its start
    assert page.count("<svg") == 4 + ("<h2>Retention</h2><svg" in page.replace("\n", ""))
    assert "<h2>Segment mix</h2>" in page and "No RFM snapshot yet" not in page
    assert "http" not in page.lower()  # self-contained: no URL to anywhere
    assert "1.40 EUR" in page

    # Plain tables and CSV print too.
    assert "finance-shop" in cli.ok("reports", "liability").stdout
    csv_lines = cli.ok("reports", "roll-forward", "--csv").out_lines
    assert csv_lines[0].startswith("program_id,period,opening,earned")
    json.dumps(cli.json("reports", "earn-burn"))


def test_bad_input_is_one_sentence_and_writes_nothing(db_url: str, tmp_path: Path) -> None:
    cli = _history(db_url, tmp_path)
    assert_one_sentence_error(
        cli.run("reports", "roll-forward", "--from", "2026-03-01", "--to", "2026-02-01",
                "--chart", "w.png"), "after --to")
    assert_one_sentence_error(
        cli.run("reports", "roll-forward", "--to", "2199-01-01", "--chart", "w.png"),
        "in the future")
    assert_one_sentence_error(cli.run("reports", "breakage", "--chart", "curves.pdf"),
                              ".png, .svg or .html")
    assert_one_sentence_error(cli.run("reports", "roll-forward", "--period", "week"),
                              "month, quarter or year")
    assert not any(tmp_path.glob("w.png")) and not any(tmp_path.glob("curves.*"))
    # A point worth nothing, or less, is refused where the program is read.
    for value in ("0", "-0.01"):
        (tmp_path / "worthless.yaml").write_text(PROGRAM.replace(
            "rules:", f"economics: {{point_value: {value}}}\nrules:"), encoding="utf-8")
        refused = cli.run("rules", "apply", "worthless.yaml")
        assert refused.code == 1, refused
        assert "economics.point_value: Input should be greater than 0" in refused.stdout \
            + refused.stderr, refused
