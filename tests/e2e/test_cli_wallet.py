"""`loyalty analytics wallet import|show` and `loyalty members survey-import` as a user runs
them, on both databases: file:line errors on standard error and nothing imported, a
re-import replacing a total, the report as a table, JSON and CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.e2e.cli import assert_one_sentence_error, ok, run

# The small shop of the analytics tests (one euro one point; tobacco excluded).
PROGRAM = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
           / "corner-shop.yaml").read_text(encoding="utf-8")
# A: coffee 10.00 in January and 20.00 in March, tobacco (excluded) 5.00; B: coffee 30.00.
PURCHASES = """\
transaction_id,store_id,member_id,occurred_at,currency,total,sku,category,quantity,unit_price
T1,AMS-01,A,2026-01-15T10:00:00+01:00,EUR,15.00,LATTE,coffee,1,10.00
T1,AMS-01,A,2026-01-15T10:00:00+01:00,EUR,15.00,CIGS,tobacco,1,5.00
T2,AMS-01,A,2026-03-10T10:00:00+01:00,EUR,20.00,BEANS,coffee,1,20.00
T3,AMS-01,B,2026-02-10T10:00:00+01:00,EUR,30.00,BEANS,coffee,1,30.00
"""
# A's coffee: 3000 of 10000 (0.3, growth 7000); B's: 3000 of 4000 (0.75, growth 1000).
WALLET = """\
member_id,category,period,amount,currency
A,coffee,2026-Q1,100.00,EUR
B,coffee,2026-Q1,40.00,EUR
"""
AS_OF = "2026-06-01T12:00:00+00:00"


@pytest.fixture
def shop(db_url: str, tmp_path: Path) -> str:
    ok("db", "upgrade", database=db_url, cwd=tmp_path)
    (tmp_path / "shop.yaml").write_text(PROGRAM, encoding="utf-8")
    ok("rules", "apply", "shop.yaml", database=db_url, cwd=tmp_path)
    (tmp_path / "purchases.csv").write_text(PURCHASES, encoding="utf-8")
    ok("purchases", "import", "purchases.csv", database=db_url, cwd=tmp_path)
    return db_url


def test_wallet_import_then_show(shop: str, tmp_path: Path) -> None:
    (tmp_path / "wallet.csv").write_text(WALLET, encoding="utf-8")
    done = ok("analytics", "wallet", "import", "wallet.csv", database=shop, cwd=tmp_path)
    assert done.out_flat == "2 wallet total(s) read: 2 added, 0 replaced, 0 unchanged"
    shown = ok("analytics", "wallet", "show", "--program", "corner-shop", "--as-of", AS_OF,
               "--json", database=shop, cwd=tmp_path).json()
    assert [(m["member_id"], m["spend_minor"], m["wallet_minor"], m["share"],
             m["growth_minor"]) for m in shown["members"]] == [
        ("A", 3000, 10000, 0.3, 7000), ("B", 3000, 4000, 0.75, 1000)]
    # (3000 + 3000) / (10000 + 4000) = 3/7
    assert [(p["period"], p["share"]) for p in shown["program_share"]] == [
        ("2026-Q1", round(3 / 7, 6))]
    table = ok("analytics", "wallet", "show", "--program", "corner-shop", "--as-of", AS_OF,
               database=shop, cwd=tmp_path)
    assert "42.9 %" in table.out_flat and "70.00 EUR" in table.out_flat, str(table)
    rows = list(csv.DictReader(io.StringIO(ok(
        "analytics", "wallet", "show", "--program", "corner-shop", "--as-of", AS_OF, "--csv",
        database=shop, cwd=tmp_path).stdout)))
    assert [(r["member_id"], r["share"], r["growth_rank"]) for r in rows] == [
        ("A", "0.3", "1"), ("B", "0.75", "2")]
    # A corrected figure replaces the stored one.
    (tmp_path / "again.csv").write_text(WALLET.replace("100.00", "60.00"), encoding="utf-8")
    again = ok("analytics", "wallet", "import", "again.csv", database=shop, cwd=tmp_path)
    assert again.out_flat == "2 wallet total(s) read: 0 added, 1 replaced, 1 unchanged"
    shown = ok("analytics", "wallet", "show", "--program", "corner-shop", "--as-of", AS_OF,
               "--json", database=shop, cwd=tmp_path).json()
    assert shown["members"][0]["share"] == 0.5


def test_a_bad_wallet_file_names_each_line_and_imports_nothing(
        shop: str, tmp_path: Path) -> None:
    (tmp_path / "wallet.csv").write_text(WALLET + "Z,coffee,2026-Q1,5,EUR\n"
                                         "A,tea,2026-Q1,-1,EUR\n", encoding="utf-8")
    bad = run("analytics", "wallet", "import", "wallet.csv", database=shop, cwd=tmp_path)
    assert bad.code == 1 and bad.stdout == "", str(bad)
    assert bad.err_lines == [
        "wallet.csv:4: member_id: no member with id 'Z' (enrol them first, or correct the id)",
        "wallet.csv:5: amount must not be negative (got -1); a wallet total is what the "
        "member spends in all",
        "2 bad line(s); no total was imported (fix them and import the file again)"]
    shown = ok("analytics", "wallet", "show", "--program", "corner-shop", "--as-of", AS_OF,
               "--json", database=shop, cwd=tmp_path).json()
    assert shown["members"] == []
    (tmp_path / "header.csv").write_text("member_id,category,amount\n", encoding="utf-8")
    assert_one_sentence_error(run("analytics", "wallet", "import", "header.csv",
                                  database=shop, cwd=tmp_path),
                              "header.csv:1: missing column(s): period, currency")


def test_a_bad_period_is_one_sentence(shop: str, tmp_path: Path) -> None:
    assert_one_sentence_error(run(
        "analytics", "wallet", "show", "--program", "corner-shop", "--period", "2026-Q9",
        database=shop, cwd=tmp_path), "period 2026-Q9: a quarter is Q1 to Q4")


def test_survey_import(shop: str, tmp_path: Path) -> None:
    (tmp_path / "surveys.csv").write_text(
        "member_id,kind,score,answered_at\n"
        "A,nps,9,2026-05-01T10:00:00+02:00\n"
        "B,commitment,6,2026-05-02T10:00:00+02:00\n", encoding="utf-8")
    done = ok("members", "survey-import", "surveys.csv", database=shop, cwd=tmp_path)
    assert done.out_flat == "2 answer(s) read: 2 recorded, 0 already recorded"
    again = ok("members", "survey-import", "surveys.csv", "--json", database=shop,
               cwd=tmp_path).json()
    assert (again["recorded"], again["already_recorded"], again["committed"]) == (0, 2, True)
    (tmp_path / "bad.csv").write_text(
        "member_id,kind,score,answered_at\n"
        "A,nps,12,2026-05-01T11:00:00+02:00\n"
        "Q,nps,5,2026-05-01T11:00:00+02:00\n", encoding="utf-8")
    bad = run("members", "survey-import", "bad.csv", database=shop, cwd=tmp_path)
    assert bad.code == 1 and bad.stdout == "", str(bad)
    assert bad.err_lines == [
        "bad.csv:2: score: nps scores are 0 to 10, not 12",
        "bad.csv:3: member_id: no member with id 'Q' (enrol them first, or correct the id)",
        "2 bad line(s); no answer was imported (fix them and import the file again)"]


def _matrix_purchases() -> str:
    """A buys 5 times, B 4, C 3, D 2, E once (all coffee, in April): RFM's quintiles over
    five members give F = 5, 4, 3, 2, 1."""
    rows = ["transaction_id,store_id,member_id,occurred_at,currency,total,sku,category,"
            "quantity,unit_price"]
    for member, times in (("A", 5), ("B", 4), ("C", 3), ("D", 2), ("E", 1)):
        for n in range(times):
            rows.append(f"{member}{n},AMS-01,{member},2026-04-{n + 1:02d}T10:00:00+02:00,EUR,"
                        "3.00,LATTE,coffee,1,3.00")
    return "\n".join(rows) + "\n"


def test_the_loyalty_matrix(db_url: str, tmp_path: Path) -> None:
    """| member | F | answer | type |
    |---|---|---|---|
    | A | 5 | nps 10 | true |
    | B | 4 | nps 3 | spurious |
    | C | 3 | commitment 6 | latent |
    | D | 2 | nps 7 | none |
    | E | 1 | none | unknown (not behaving) |
    | X | 0 (no purchases) | nps 9 | latent |"""
    ok("db", "upgrade", database=db_url, cwd=tmp_path)
    (tmp_path / "shop.yaml").write_text(PROGRAM, encoding="utf-8")
    ok("rules", "apply", "shop.yaml", database=db_url, cwd=tmp_path)
    (tmp_path / "purchases.csv").write_text(_matrix_purchases(), encoding="utf-8")
    ok("purchases", "import", "purchases.csv", database=db_url, cwd=tmp_path)
    ok("members", "enrol", "X", "--program", "corner-shop", "--at",
       "2026-04-01T00:00:00+02:00", database=db_url, cwd=tmp_path)
    (tmp_path / "surveys.csv").write_text(
        "member_id,kind,score,answered_at\n"
        "A,nps,10,2026-05-01T10:00:00+02:00\n"
        "B,nps,3,2026-05-01T10:00:00+02:00\n"
        "C,commitment,6,2026-05-01T10:00:00+02:00\n"
        "D,nps,7,2026-05-01T10:00:00+02:00\n"
        "X,nps,9,2026-05-01T10:00:00+02:00\n", encoding="utf-8")
    ok("members", "survey-import", "surveys.csv", database=db_url, cwd=tmp_path)
    args = ("analytics", "loyalty-matrix", "--program", "corner-shop", "--as-of", AS_OF)
    data = ok(*args, "--json", "--chart", "matrix.html", database=db_url, cwd=tmp_path).json()
    assert {m["member_id"]: (m["f"], m["type"]) for m in data["members"]} == {
        "A": (5, "true"), "B": (4, "spurious"), "C": (3, "latent"), "D": (2, "none"),
        "E": (1, "unknown"), "X": (0, "latent")}
    assert data["cells"] == {"true": 1, "latent": 2, "spurious": 1, "none": 1}
    assert data["unknown_attitude"] == {"behavioural": 0, "not_behavioural": 1}
    page = (tmp_path / "matrix.html").read_text(encoding="utf-8")
    assert "<svg" in page and "<td>latent loyalty</td><td>2</td><td>40.0 %</td>" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    rows = list(csv.DictReader(io.StringIO(
        ok(*args, "--csv", database=db_url, cwd=tmp_path).stdout)))
    assert [(r["member_id"], r["type"]) for r in rows] == [
        ("A", "true"), ("B", "spurious"), ("C", "latent"), ("D", "none"), ("E", "unknown"),
        ("X", "latent")]
    table = ok(*args, "--chart", "matrix.png", database=db_url, cwd=tmp_path)
    assert "true loyalty: 1 (20.0 %)" in table.out_flat, str(table)
    assert "1 without an answer" in table.out_flat
    assert (tmp_path / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_sentence_error(run(*args, "--chart", "matrix.gif", database=db_url,
                                  cwd=tmp_path), "matrix.gif")
