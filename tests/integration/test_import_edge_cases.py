"""Imports at the edges: repeated rejected lines, huge amounts, clashing file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine

from loyalty_engine.domain.errors import ImportFileError, PurchaseRejectedError
from loyalty_engine.ledger.check import check_balances
from loyalty_engine.services.importing import CSV_COLUMNS, import_purchases
from loyalty_engine.services.programs import apply_program_files
from loyalty_engine.services.purchases import record_purchase
from tests.integration.helpers import BEAN_THERE, NOW, counts, event, purchase_body, write_jsonl


@pytest.fixture
def bean_there(engine: Engine) -> Engine:
    apply_program_files(engine, [BEAN_THERE], NOW)
    return engine


def test_a_repeated_line_shares_the_first_copys_rejection(
    bean_there: Engine, tmp_path: Path
) -> None:
    record_purchase(bean_there, event("T-1"), NOW)
    changed = purchase_body("T-1", items=[("FLAT-WHITE", "coffee", "1", "3.60")])
    path = write_jsonl(tmp_path / "p.jsonl", [changed, changed, purchase_body("T-2")])
    report = import_purchases(bean_there, path, NOW, skip_invalid=True)
    assert (report.recorded, report.replayed) == (1, 0)
    assert [e.line for e in report.errors] == [1, 2]
    assert all("different contents" in e.reason for e in report.errors)
    rejects = [json.loads(line) for line in Path(str(report.rejects_path)).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [1, 2]


def test_a_repeated_line_of_a_new_purchase_is_a_replay(bean_there: Engine, tmp_path: Path) -> None:
    body = purchase_body("T-9")
    report = import_purchases(bean_there, write_jsonl(tmp_path / "p.jsonl", [body, body]), NOW)
    assert (report.recorded, report.replayed, report.points) == (1, 1, {"bean-there": 7})


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("total", "100000000000000000000.00", "larger than any amount"),
    ("total", "1E+50", "larger than any amount"),
    ("occurred_at", "0001-01-01T00:30:00+01:00", "between the years 1970 and 9998"),
])
def test_absurd_values_are_line_errors_not_crashes(
    bean_there: Engine, tmp_path: Path, field: str, value: str, fragment: str
) -> None:
    bad = purchase_body("T-2")
    bad[field] = value
    path = write_jsonl(tmp_path / "p.jsonl", [purchase_body("T-1"), bad])
    report = import_purchases(bean_there, path, NOW, skip_invalid=True)
    assert report.committed and report.recorded == 1
    assert [e.line for e in report.errors] == [2]
    assert fragment in report.errors[0].reason


def test_rejects_file_may_not_overwrite_the_input(bean_there: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [purchase_body("T-1"), "{not json"])
    with pytest.raises(ImportFileError, match="would overwrite the input"):
        import_purchases(bean_there, path, NOW, skip_invalid=True, rejects_path=path)
    assert path.read_text().count("\n") == 2
    assert counts(bean_there)["purchases"] == 0


def test_csv_with_a_column_named_twice_is_refused(bean_there: Engine, tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(",".join([*CSV_COLUMNS, "total"]) + "\n"
                    "T-1,AMS-01,M-1,2026-03-14T09:30:00+01:00,EUR,7.20,FW,coffee,2,3.60,9.99\n")
    with pytest.raises(ImportFileError, match="named twice: total"):
        import_purchases(bean_there, path, NOW)


def test_anonymous_purchase_in_a_currency_no_program_uses_is_rejected(
    bean_there: Engine,
) -> None:
    with pytest.raises(PurchaseRejectedError, match="currency USD"):
        record_purchase(bean_there, event("T-1", member_id=None, currency="USD"), NOW)
    assert counts(bean_there)["purchases"] == 0
    assert check_balances(bean_there).mismatches == []


def test_a_failed_import_still_reports_clashes_in_later_batches(
    bean_there: Engine, tmp_path: Path
) -> None:
    """After the first bad line nothing more is written, yet every later problem is named."""
    records: list[dict | str] = ["{broken"]
    records += [purchase_body(f"T-{n}") for n in range(5)]
    records += [purchase_body("T-3", items=[("LATTE", "coffee", "1", "4.10")])]  # clashes
    records += [purchase_body("T-4")]                                            # same: fine
    path = write_jsonl(tmp_path / "p.jsonl", records)
    report = import_purchases(bean_there, path, NOW, batch_size=2)
    assert not report.committed
    assert [e.line for e in report.errors] == [1, 7]
    assert "earlier in the same input (5)" in report.errors[1].reason
    assert counts(bean_there)["purchases"] == 0
