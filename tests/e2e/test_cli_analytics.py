"""`loyalty analytics members|rfm` as a user runs them: tables, --json, --csv and --chart to
PNG, SVG and HTML (offline: no address of another host), and the mistakes refused in one
sentence.

Hand-worked (Amsterdam, as of midnight starting 31 March 2026): M-1 buys 10.00 on 2 March
and 20.00 on 20 March, M-2 30.00 on 10 March, M-3 5.00 on 25 March. Three members: position
p of 3 (ascending) scores 5p // 3 + 1 = 1, 2, 4; a tie takes its first position's score.
Recency: M-2 21 days (1), M-1 11 (2), M-3 6 (4). Purchases: M-2 1 and M-3 1 (tied: 1 1),
M-1 2 (4). Spend: M-3 5.00 (1), M-1 and M-2 30.00 (tied at position 1: 2 2). Segments:
M-1 R2 F4 at_risk, M-2 R1 F1 lost, M-3 R4 F1 promising."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.e2e.cli import (
    Cli,
    assert_json_error,
    assert_one_sentence_error,
    purchase,
    write_jsonl,
)

PROGRAM = """\
program: rfm-shop
name: RFM Shop
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""
AS_OF = ("--as-of", "2026-03-31")


def _shop(db_url: str, tmp_path: Path) -> Cli:
    cli = Cli(db_url, tmp_path)
    (tmp_path / "shop.yaml").write_text(PROGRAM, encoding="utf-8")
    cli.ok("rules", "apply", "shop.yaml", "--effective-from", "2026-01-01T00:00:00+01:00")
    bag = [("BAG", "goods", "1", "10.00")]
    write_jsonl(tmp_path / "march.jsonl", [
        purchase("T1", "M-1", "2026-03-02T10:00:00+01:00", bag, "10.00"),
        purchase("T2", "M-1", "2026-03-20T10:00:00+01:00", [("BAG", "goods", "2", "10.00")],
                 "20.00"),
        purchase("T3", "M-2", "2026-03-10T10:00:00+01:00", [("BAG", "goods", "3", "10.00")],
                 "30.00"),
        purchase("T4", "M-3", "2026-03-25T10:00:00+01:00", [("PEN", "goods", "1", "5.00")],
                 "5.00"),
        # After the as-of instant: counts nowhere in these reports.
        purchase("T5", "M-3", "2026-04-02T10:00:00+02:00", bag, "10.00"),
    ])
    cli.ok("purchases", "import", "march.jsonl")
    return cli


def test_members_and_rfm_as_json_csv_tables_and_charts(db_url: str, tmp_path: Path) -> None:
    cli = _shop(db_url, tmp_path)
    report = cli.json("analytics", "members", "--program", "rfm-shop", *AS_OF)
    assert (report["program"], report["as_of_day"], report["total"]) == (
        "rfm-shop", "2026-03-31", 3)
    assert report["as_of"] == "2026-03-30T22:00:00+00:00"
    # By spend, highest first; M-1 and M-2 tie at 30.00 and go by member id.
    assert [(m["member_id"], m["purchases"], m["days"], m["spend_minor"],
             m["average_spend_minor"], m["tenure_days"], m["recency_days"],
             m["mean_gap_days"], m["points_earned"], m["points_redeemed"], m["r"], m["f"],
             m["m"], m["segment"]) for m in report["members"]] == [
        ("M-1", 2, 2, 3000, 1500, 29, 11, 18.0, 30, 0, 2, 4, 2, "at_risk"),
        ("M-2", 1, 1, 3000, 3000, 21, 21, None, 30, 0, 1, 1, 2, "lost"),
        ("M-3", 1, 1, 500, 500, 6, 6, None, 5, 0, 4, 1, 1, "promising"),
    ]
    assert report["members"][0]["first_purchase_at"] == "2026-03-02T09:00:00+00:00"
    assert report["members"][0]["last_purchase_day"] == "2026-03-20"

    recent = cli.json("analytics", "members", "--program", "rfm-shop", *AS_OF,
                      "--sort", "recency", "--limit", "2")
    assert ([m["member_id"] for m in recent["members"]], recent["total"]) == (
        ["M-3", "M-1"], 3)
    lost = cli.json("analytics", "members", "--program", "rfm-shop", *AS_OF,
                    "--segment", "lost")
    assert [m["member_id"] for m in lost["members"]] == ["M-2"]

    rows = list(csv.DictReader(io.StringIO(cli.ok(
        "analytics", "members", "--program", "rfm-shop", *AS_OF, "--csv").stdout)))
    assert [(r["member_id"], r["spend_minor"], r["mean_gap_days"], r["segment"])
            for r in rows] == [("M-1", "3000", "18.0", "at_risk"), ("M-2", "3000", "", "lost"),
                               ("M-3", "500", "", "promising")]

    table = cli.ok("analytics", "members", "--program", "rfm-shop", *AS_OF)
    assert "30.00 EUR" in table.stdout and "at_risk" in table.stdout
    assert "rfm-shop: 3 member(s) as of 2026-03-31T00:00:00+02:00" in table.out_flat

    grid = cli.json("analytics", "rfm", "--program", "rfm-shop", *AS_OF)
    assert grid["members"] == 3
    assert grid["grid"] == [
        {"r": 5, "counts": [0, 0, 0, 0, 0]}, {"r": 4, "counts": [1, 0, 0, 0, 0]},
        {"r": 3, "counts": [0, 0, 0, 0, 0]}, {"r": 2, "counts": [0, 0, 0, 1, 0]},
        {"r": 1, "counts": [1, 0, 0, 0, 0]}]
    assert {s["segment"]: s["members"] for s in grid["segments"] if s["members"]} == {
        "at_risk": 1, "lost": 1, "promising": 1}
    assert grid["scoring"] == {"recency": "quintiles", "frequency": "quintiles",
                               "monetary": "quintiles"}
    cells = list(csv.DictReader(io.StringIO(cli.ok(
        "analytics", "rfm", "--program", "rfm-shop", *AS_OF, "--csv").stdout)))
    assert len(cells) == 25 + 11
    assert {(c["r"], c["f"]): c["members"] for c in cells
            if c["section"] == "cell" and c["members"] != "0"} == {
        ("4", "1"): "1", ("2", "4"): "1", ("1", "1"): "1"}
    shown = cli.ok("analytics", "rfm", "--program", "rfm-shop", *AS_OF)
    assert "promising" in shown.stdout and "33.3%" in shown.stdout

    png, svg, page = tmp_path / "rfm.png", tmp_path / "rfm.svg", tmp_path / "rfm.html"
    written = cli.ok("analytics", "rfm", "--program", "rfm-shop", *AS_OF, "--chart", png)
    assert f"chart written to {png}" in written.out_flat
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = png.read_bytes()
    cli.ok("analytics", "rfm", "--program", "rfm-shop", *AS_OF, "--chart", png, "--json")
    assert png.read_bytes() == first  # the same figures draw the same bytes
    cli.ok("analytics", "rfm", "--program", "rfm-shop", *AS_OF, "--chart", svg)
    assert "<svg" in svg.read_text(encoding="utf-8")
    cli.ok("analytics", "rfm", "--program", "rfm-shop", *AS_OF, "--chart", page)
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<table>" in html
    assert "<td>promising</td><td>1</td><td>33.3%</td>" in html
    assert "http" not in html and "<script" not in html and "<link" not in html


@pytest.mark.parametrize(("args", "fragments"), [
    (("analytics", "members", "--program", "nope"), ("there is no program 'nope'",)),
    (("analytics", "rfm", "--program", "rfm-shop", "--as-of", "2026-03-01"),
     ("program 'rfm-shop' has no purchases by 2026-03-01T00:00:00+01:00",)),
    (("analytics", "members", "--program", "rfm-shop", "--segment", "vip"),
     ("has no segment 'vip'", "champions")),
    (("analytics", "rfm", "--program", "rfm-shop", "--chart", "grid.pdf"),
     ("cannot write a chart to 'grid.pdf'", ".png, .svg or .html")),
])
def test_mistakes_are_one_sentence(db_url: str, tmp_path: Path, args: tuple[str, ...],
                                   fragments: tuple[str, ...]) -> None:
    cli = _shop(db_url, tmp_path)
    assert_one_sentence_error(cli.run(*args), *fragments)
    assert not (tmp_path / "grid.pdf").exists()


def test_json_and_csv_together_are_refused(db_url: str, tmp_path: Path) -> None:
    cli = _shop(db_url, tmp_path)
    assert_json_error(cli.run("analytics", "members", "--program", "rfm-shop", "--json",
                              "--csv"), "refused", "give --json or --csv, not both")
