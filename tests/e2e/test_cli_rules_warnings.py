"""Validation warnings through the real CLI: `rules validate` and `rules apply` print
`file:line:col: warning: ...`, exit 0 and still apply; and tender and channel through
`purchases import` and `members show`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli import ROOT, ok, run

STARS = ROOT / "tests" / "fixtures" / "programs" / "coffee-stars.yaml"
# Line 39, column 17 of coffee-stars.yaml is the value of app-stars' max_factor.
WARNING = ("stars.yaml:39:17: warning: rules[1].max_factor: multipliers web-week and "
           "breakfast-bonus can apply together (their dates overlap and nothing excludes one "
           "of them) and multiply to 2.25, above max_factor 2; add `excludes:`, put them in a "
           "best-of group (multiplier_groups: max) or separate their dates if they should not")


def _warned(directory: Path) -> Path:
    """coffee-stars with a max_factor its web-week and breakfast bonus go beyond (1.5 x 1.5)."""
    text = STARS.read_text(encoding="utf-8")
    assert text.splitlines()[38] == "    max_factor: 3"
    path = directory / "stars.yaml"
    path.write_text(text.replace("max_factor: 3", "max_factor: 2"), encoding="utf-8")
    return path


def test_validate_prints_a_warning_and_succeeds(tmp_path: Path) -> None:
    _warned(tmp_path)
    result = ok("rules", "validate", "stars.yaml", cwd=tmp_path)
    assert result.out_lines == ["stars.yaml: ok (program coffee-stars, 3 rule(s))"], str(result)
    assert result.err_lines == [WARNING], str(result)

    report = ok("rules", "validate", "stars.yaml", "--json", cwd=tmp_path).json()
    assert report["valid"] is True
    (program,) = report["programs"]
    assert program["warnings"] == [{"file": "stars.yaml", "line": 39, "column": 17,
                                    "message": WARNING.split(": warning: ", 1)[1]}]


def test_the_shipped_fixture_has_no_warning(tmp_path: Path) -> None:
    result = ok("rules", "validate", STARS, cwd=tmp_path)
    assert result.err_lines == [], str(result)


def test_apply_prints_the_warning_and_stores_the_version(db_url: str, tmp_path: Path) -> None:
    _warned(tmp_path)
    applied = ok("rules", "apply", "stars.yaml", database=db_url, cwd=tmp_path)
    assert applied.err_lines == [WARNING], str(applied)
    assert applied.out_flat.startswith("coffee-stars: version 1 stored"), str(applied)
    versions = ok("rules", "versions", "--json", database=db_url, cwd=tmp_path).json()
    assert [(v["program"], v["version"]) for v in versions] == [("coffee-stars", 1)]


def test_tender_and_channel_through_import_and_members_show(db_url: str,
                                                           tmp_path: Path) -> None:
    ok("rules", "apply", STARS, database=db_url, cwd=tmp_path)
    base = {"store_id": "AMS-01", "member_id": "M-1", "currency": "EUR", "total": "4.00",
            "items": [{"sku": "LATTE", "category": "coffee", "unit_price": "4.00"}]}
    bad = [{**base, "transaction_id": "B1", "occurred_at": "2026-02-02T09:00:00+01:00",
            "tender": "apple"},
           {**base, "transaction_id": "B2", "occurred_at": "2026-02-02T10:00:00+01:00",
            "channel": "phone"}]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad),
                                        encoding="utf-8")
    refused = run("purchases", "import", "bad.jsonl", database=db_url, cwd=tmp_path)
    assert refused.code == 1 and refused.stdout == "", str(refused)
    assert refused.err_lines == [
        "bad.jsonl:1: tender: Input should be 'card', 'app', 'cash', 'gift_card' or 'points'",
        "bad.jsonl:2: channel: Input should be 'store', 'web' or 'app'",
        "2 bad record(s); nothing was imported (fix them, or use --skip-invalid)",
    ], str(refused)

    good = [{**base, "transaction_id": "G1", "occurred_at": "2026-02-02T09:00:00+01:00",
             "tender": "app", "channel": "web"}]
    (tmp_path / "good.jsonl").write_text(json.dumps(good[0]) + "\n", encoding="utf-8")
    imported = ok("purchases", "import", "good.jsonl", database=db_url, cwd=tmp_path)
    # 4.00 paid with the app: 2 stars per euro = 8.
    assert imported.out_flat.endswith("points awarded: coffee-stars 8"), str(imported)
    shown = ok("members", "show", "M-1", database=db_url, cwd=tmp_path)
    assert "tender" in shown.stdout and "channel" in shown.stdout, str(shown)
    row = next(line for line in shown.out_lines if "G1" in line)
    assert "app" in row and "web" in row, str(shown)
