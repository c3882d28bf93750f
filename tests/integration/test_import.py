"""import_purchases: JSON Lines and CSV files, all-or-nothing, replays, rejects files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from loyalty_engine.domain.errors import ImportFileError
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.services.importing import CSV_COLUMNS, ImportReport, import_purchases
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from loyalty_engine.store.database import read_transaction
from loyalty_engine.store.tables import Purchase, PurchaseItem
from tests.integration.helpers import (
    BEAN_THERE,
    NOW,
    balance,
    counts,
    event,
    purchase_body,
    write_jsonl,
)

HEADER = ",".join(CSV_COLUMNS)


def earned(report: ImportReport) -> int:
    """The coffee program's points an import awarded (the only program of these tests)."""
    return report.points.get("bean-there", 0)


@pytest.fixture
def bean_there(engine: Engine) -> Engine:
    apply_program_files(engine, [BEAN_THERE], NOW)
    return engine


def _good_records() -> list[dict]:
    return [
        purchase_body("T-1", member_id="M-1"),                                  # 7 points
        purchase_body("T-2", member_id="M-2",
                      items=[("BEANS", "coffee-beans", "1", "8.95")]),          # 17 points
        purchase_body("T-3", member_id=None),                                   # anonymous
        purchase_body("T-1", store_id="UTR-01", member_id="M-1",
                      items=[("LATTE", "coffee", "1", "4.10")]),                # 4 points
    ]


def _csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _stored_keys(engine: Engine) -> list[tuple[str, str]]:
    table = Purchase.__table__
    with read_transaction(engine) as conn:
        rows = conn.execute(select(table.c.store_id, table.c.transaction_id)).all()
    return sorted((s, t) for s, t in rows)


def test_good_jsonl_file_imports(bean_there: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "good.jsonl", _good_records())
    report = import_purchases(bean_there, path, NOW)
    assert report.committed is True
    assert (report.read, report.recorded, report.replayed, earned(report)) == (4, 4, 0, 28)
    assert report.errors == []
    assert _stored_keys(bean_there) == [("AMS-01", "T-1"), ("AMS-01", "T-2"), ("AMS-01", "T-3"),
                                        ("UTR-01", "T-1")]
    assert balance(bean_there, "M-1", "bean-there") == 11
    assert balance(bean_there, "M-2", "bean-there") == 17
    assert check_balances(bean_there).mismatches == []


def test_reimporting_a_file_changes_nothing(bean_there: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "good.jsonl", _good_records())
    import_purchases(bean_there, path, NOW)
    before = counts(bean_there)
    again = import_purchases(bean_there, path, NOW)
    assert again.committed is True
    assert (again.read, again.recorded, again.replayed, again.points) == (4, 0, 4, {})
    assert counts(bean_there) == before
    assert balance(bean_there, "M-1", "bean-there") == 11


def test_import_replays_purchases_posted_one_by_one(bean_there: Engine, tmp_path: Path) -> None:
    record_purchase(bean_there, event("T-1", member_id="M-1"), NOW)
    path = write_jsonl(tmp_path / "good.jsonl", _good_records())
    report = import_purchases(bean_there, path, NOW)
    assert (report.recorded, report.replayed, earned(report)) == (3, 1, 21)
    assert balance(bean_there, "M-1", "bean-there") == 11


def test_bad_jsonl_lines_are_all_reported_and_nothing_is_stored(
    bean_there: Engine, tmp_path: Path
) -> None:
    record_purchase(bean_there, event("T-STORED"), NOW)
    before = counts(bean_there)
    naive = purchase_body("T-NAIVE", occurred_at="2026-03-14T09:30:00")
    mismatch = purchase_body("T-SUM", total="9.99")
    changed = purchase_body("T-STORED", items=[("FLAT-WHITE", "coffee", "1", "3.60")])
    path = write_jsonl(tmp_path / "bad.jsonl", [
        purchase_body("T-OK-1"),                  # 1
        '{"transaction_id": "T-BROKEN", ',        # 2
        naive,                                    # 3
        "",                                       # 4 (blank: skipped, still counted)
        mismatch,                                 # 5
        purchase_body("T-OK-2"),                  # 6
        changed,                                  # 7
        '{"transaction_id": "T-FLOAT", "total": 1.5}',  # 8
    ])
    report = import_purchases(bean_there, path, NOW)
    assert report.committed is False
    assert [e.line for e in report.errors] == [2, 3, 5, 7, 8]
    reasons = {e.line: e.reason for e in report.errors}
    assert "json" in reasons[2].lower()
    assert "occurred_at" in reasons[3]
    assert "total" in reasons[5] and "7.20" in reasons[5]
    assert "'T-STORED'" in reasons[7] and "different contents" in reasons[7]
    assert (report.recorded, report.replayed, report.points) == (0, 0, {})
    assert counts(bean_there) == before


def test_bad_csv_lines_are_all_reported_and_nothing_is_stored(
    bean_there: Engine, tmp_path: Path
) -> None:
    before = counts(bean_there)
    path = _csv(tmp_path / "bad.csv", [
        "T-1,AMS-01,M-1,2026-03-14T09:30:00+01:00,EUR,7.20,FLAT-WHITE,coffee,2,3.60",  # 2
        "T-2,AMS-01,M-1,2026-03-14T09:31:00+01:00,EUR,3.60,FLAT-WHITE,coffee,1,abc",   # 3
        "T-3,AMS-01,M-1,2026-03-14T09:32:00+01:00,EUR,3.60,FLAT-WHITE,coffee,1",       # 4
        "T-4,AMS-01,M-1,2026-03-14 09:33:00,EUR,3.60,FLAT-WHITE,coffee,1,3.60",        # 5
        "T-5,AMS-01,M-1,2026-03-14T09:34:00+01:00,EUR,4.00,FLAT-WHITE,coffee,1,3.60",  # 6
        "T-6,AMS-01,M-1,2026-03-14T09:35:00+01:00,EUR,3.60,FLAT-WHITE,coffee,1,3.60",  # 7
    ])
    report = import_purchases(bean_there, path, NOW)
    assert report.committed is False
    assert [e.line for e in report.errors] == [3, 4, 5, 6]
    reasons = {e.line: e.reason for e in report.errors}
    assert "unit_price" in reasons[3] and "abc" in reasons[3]
    assert "columns" in reasons[4]
    assert "occurred_at" in reasons[5]
    assert "total" in reasons[6]
    assert counts(bean_there) == before


def test_csv_with_a_missing_column_is_refused(bean_there: Engine, tmp_path: Path) -> None:
    header = ",".join(c for c in CSV_COLUMNS if c != "currency")
    path = _csv(tmp_path / "no-currency.csv",
                ["T-1,AMS-01,M-1,2026-03-14T09:30:00+01:00,7.20,FLAT-WHITE,coffee,2,3.60"],
                header=header)
    before = counts(bean_there)
    with pytest.raises(ImportFileError, match=r"missing column.*currency"):
        import_purchases(bean_there, path, NOW)
    assert counts(bean_there) == before


def test_skip_invalid_imports_the_good_and_writes_rejects(
    bean_there: Engine, tmp_path: Path
) -> None:
    record_purchase(bean_there, event("T-STORED"), NOW)
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        purchase_body("T-OK-1"),                                      # 1
        "not json",                                                   # 2
        purchase_body("T-OK-2", member_id="M-2"),                     # 3
        purchase_body("T-STORED", total="3.60",
                      items=[("FLAT-WHITE", "coffee", "1", "3.60")]),  # 4
        purchase_body("T-USD", currency="USD"),                       # 5
    ])
    report = import_purchases(bean_there, path, NOW, skip_invalid=True)
    assert report.committed is True
    assert (report.recorded, report.replayed, earned(report)) == (2, 0, 14)
    assert [e.line for e in report.errors] == [2, 4, 5]
    assert _stored_keys(bean_there) == [("AMS-01", "T-OK-1"), ("AMS-01", "T-OK-2"),
                                        ("AMS-01", "T-STORED")]
    assert balance(bean_there, "M-1", "bean-there") == 14
    assert balance(bean_there, "M-2", "bean-there") == 7

    rejects = tmp_path / "mixed.jsonl.rejects.jsonl"
    assert report.rejects_path == str(rejects)
    lines = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in lines] == [2, 4, 5]
    assert all(r["reason"] for r in lines)
    assert "different contents" in lines[1]["reason"]
    assert "USD" in lines[2]["reason"]
    assert lines[0]["record"] == "not json"
    assert json.loads(lines[2]["record"])["transaction_id"] == "T-USD"
    assert check_balances(bean_there).mismatches == []


def test_skip_invalid_csv_writes_rejects_where_asked(bean_there: Engine, tmp_path: Path) -> None:
    path = _csv(tmp_path / "mixed.csv", [
        "T-1,AMS-01,M-1,2026-03-14T09:30:00+01:00,EUR,7.20,FLAT-WHITE,coffee,2,3.60",
        "T-2,AMS-01,M-1,2026-03-14T09:31:00+01:00,EUR,1.00,FLAT-WHITE,coffee,1,one",
    ])
    target = tmp_path / "out" / "rejects.jsonl"
    target.parent.mkdir()
    report = import_purchases(bean_there, path, NOW, skip_invalid=True, rejects_path=target)
    assert report.committed and report.recorded == 1
    assert report.rejects_path == str(target)
    [reject] = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert reject["line"] == 3 and "unit_price" in reject["reason"]
    assert balance(bean_there, "M-1", "bean-there") == 7


def test_skip_invalid_without_errors_writes_no_rejects(bean_there: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "good.jsonl", _good_records())
    report = import_purchases(bean_there, path, NOW, skip_invalid=True)
    assert report.committed and report.rejects_path is None
    assert not (tmp_path / "good.jsonl.rejects.jsonl").exists()


@pytest.mark.parametrize(("name", "content"), [
    ("empty.jsonl", ""),
    ("blank.jsonl", "\n  \n\n"),
    ("empty.csv", ""),
    ("header-only.csv", HEADER + "\n"),
])
def test_empty_file_is_an_error(
    bean_there: Engine, tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    before = counts(bean_there)
    with pytest.raises(ImportFileError, match="empty"):
        import_purchases(bean_there, path, NOW)
    assert counts(bean_there) == before


def test_csv_rows_of_one_transaction_form_one_purchase(bean_there: Engine, tmp_path: Path) -> None:
    at = "2026-03-14T09:30:00+01:00"
    path = _csv(tmp_path / "multi.csv", [
        f"T-1,AMS-01,M-1,{at},EUR,26.15,FLAT-WHITE,coffee,2,3.60",
        f"T-1,AMS-01,M-1,{at},EUR,26.15,BEANS-HOUSE-250G,coffee-beans,,8.95",
        f"T-1,AMS-01,M-1,{at},EUR,26.15,GIFT-CARD-10,gift-cards,1,10.00",
        f"T-2,AMS-01,,{at},EUR,2.20,CROISSANT,pastry,1,2.20",
    ])
    report = import_purchases(bean_there, path, NOW)
    assert report.committed and report.errors == []
    assert (report.read, report.recorded, earned(report)) == (2, 2, 25)
    purchases, items = Purchase.__table__, PurchaseItem.__table__
    with read_transaction(bean_there) as conn:
        rows = conn.execute(
            select(purchases.c.transaction_id, purchases.c.member_id, purchases.c.total_minor,
                   items.c.line_no, items.c.sku, items.c.quantity_milli, items.c.amount_minor)
            .join(items, items.c.purchase_id == purchases.c.id)
            .order_by(purchases.c.transaction_id, items.c.line_no)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("T-1", "M-1", 2615, 1, "FLAT-WHITE", 2000, 720),
        ("T-1", "M-1", 2615, 2, "BEANS-HOUSE-250G", 1000, 895),
        ("T-1", "M-1", 2615, 3, "GIFT-CARD-10", 1000, 1000),
        ("T-2", None, 220, 1, "CROISSANT", 1000, 220),
    ]
    # 7.20 + 2 x 8.95 = 25.10 -> 25; the gift card is excluded.
    assert balance(bean_there, "M-1", "bean-there") == 25


def test_csv_rows_of_one_transaction_that_disagree_are_an_error(
    bean_there: Engine, tmp_path: Path
) -> None:
    at = "2026-03-14T09:30:00+01:00"
    path = _csv(tmp_path / "disagree.csv", [
        f"T-1,AMS-01,M-1,{at},EUR,10.80,FLAT-WHITE,coffee,2,3.60",
        f"T-1,AMS-01,M-2,{at},EUR,10.80,FLAT-WHITE,coffee,1,3.60",
    ])
    before = counts(bean_there)
    report = import_purchases(bean_there, path, NOW)
    assert not report.committed
    [error] = report.errors
    assert error.line == 2 and "member_id" in error.reason and "line 3" in error.reason
    assert counts(bean_there) == before


def test_same_key_twice_in_a_file_with_same_body_is_one_purchase(
    bean_there: Engine, tmp_path: Path
) -> None:
    same = purchase_body("T-1")
    path = write_jsonl(tmp_path / "twice.jsonl", [same, purchase_body("T-2"), same])
    report = import_purchases(bean_there, path, NOW)
    assert report.committed and report.errors == []
    assert (report.read, report.recorded, report.replayed, earned(report)) == (3, 2, 1, 14)
    assert counts(bean_there)["purchases"] == 2
    assert balance(bean_there, "M-1", "bean-there") == 14


def test_same_key_twice_in_a_file_with_different_bodies_is_an_error(
    bean_there: Engine, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "twice.jsonl", [
        purchase_body("T-1"),
        purchase_body("T-2"),
        purchase_body("T-1", items=[("FLAT-WHITE", "coffee", "3", "3.60")]),
    ])
    before = counts(bean_there)
    report = import_purchases(bean_there, path, NOW)
    assert not report.committed
    [error] = report.errors
    assert error.line == 3
    assert "'T-1'" in error.reason and "(1)" in error.reason
    assert counts(bean_there) == before


def test_duplicates_across_batches_are_replays_and_conflicts(
    bean_there: Engine, tmp_path: Path
) -> None:
    records = [purchase_body(f"T-{i}") for i in range(5)]
    path = write_jsonl(tmp_path / "batches.jsonl", [*records, records[1],
                                                     purchase_body("T-2", total="3.60", items=[
                                                         ("FLAT-WHITE", "coffee", "1", "3.60")])])
    report = import_purchases(bean_there, path, NOW, batch_size=2)
    assert not report.committed
    assert [e.line for e in report.errors] == [7]
    assert counts(bean_there)["purchases"] == 0

    report = import_purchases(bean_there, path, NOW, batch_size=2, skip_invalid=True)
    assert report.committed
    assert (report.recorded, report.replayed, earned(report)) == (5, 1, 35)
    assert balance(bean_there, "M-1", "bean-there") == 35
    assert check_balances(bean_there).mismatches == []


def test_large_file_imports_across_batch_boundaries(bean_there: Engine, tmp_path: Path) -> None:
    records = [
        purchase_body(f"T-{n:05d}", member_id=f"M-{n % 50}",
                      items=[("FLAT-WHITE", "coffee", str(n % 3 + 1), "3.60")])
        for n in range(2100)
    ]
    # Line 2051 repeats line 6 (a replay across the default batch of 2000).
    records.insert(2050, records[5])
    path = write_jsonl(tmp_path / "big.jsonl", records)
    report = import_purchases(bean_there, path, NOW)
    assert report.committed and report.errors == []
    assert (report.read, report.recorded, report.replayed) == (2101, 2100, 1)
    expected = sum((n % 3 + 1) * 360 // 100 for n in range(2100))
    assert earned(report) == expected
    c = counts(bean_there)
    assert (c["purchases"], c["ledger_entries"], c["point_lots"], c["members"]) == (
        2100, 2100, 2100, 50)
    assert balance(bean_there, "M-7", "bean-there") == sum(
        (n % 3 + 1) * 360 // 100 for n in range(7, 2100, 50))
    result = check_balances(bean_there)
    assert (result.checked, result.mismatches) == (50, [])


def test_csv_from_a_spreadsheet_with_bom_and_crlf_imports(
    bean_there: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "excel.csv"
    rows = [HEADER,
            "T-1,AMS-01,M-1,2026-03-14T09:30:00+01:00,EUR,7.20,FLAT-WHITE,coffee,2,3.60",
            '"T-2",AMS-01,M-1,2026-03-14T09:31:00+01:00,EUR,3.60,"BAG, LARGE",misc,1,3.60']
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    report = import_purchases(bean_there, path, NOW)
    assert report.committed and report.errors == []
    assert (report.recorded, earned(report)) == (2, 10)
    assert balance(bean_there, "M-1", "bean-there") == 10


def test_jsonl_line_that_is_not_utf8_is_reported_with_its_line(
    bean_there: Engine, tmp_path: Path
) -> None:
    lines = [json.dumps(purchase_body(f"T-{n}")).encode() for n in range(4)]
    lines[2] = lines[2].replace(b"FLAT-WHITE", "CAFÉ".encode("latin-1"))
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = import_purchases(bean_there, path, NOW)
    assert not report.committed
    assert [e.line for e in report.errors] == [3]
    assert counts(bean_there)["purchases"] == 0


def test_csv_that_is_not_utf8_is_refused_naming_the_bad_line(
    bean_there: Engine, tmp_path: Path
) -> None:
    rows = [HEADER] + [
        f"T-{n},AMS-01,M-1,2026-03-14T09:3{n}:00+01:00,EUR,3.60,FLAT-WHITE,coffee,1,3.60"
        for n in range(5)
    ]
    rows[3] = rows[3].replace("FLAT-WHITE", "CAFÉ")  # line 4, saved as Latin-1 below
    path = tmp_path / "latin1.csv"
    path.write_bytes("\n".join(rows).encode("latin-1") + b"\n")
    with pytest.raises(ImportFileError, match="not UTF-8") as info:
        import_purchases(bean_there, path, NOW, batch_size=1)
    assert f"{path}:4:" in str(info.value)
    assert counts(bean_there)["purchases"] == 0
