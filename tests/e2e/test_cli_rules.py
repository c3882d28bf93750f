"""`loyalty rules validate|apply|versions`: program files checked, located and versioned."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.cli import ROOT, RULES_DIR, SHIPPED_RULES, assert_one_sentence_error, ok, run

# Each broken file with the problems `rules validate` must report, as (line, col, message).
BROKEN: dict[str, tuple[str, list[tuple[int, int, str]]]] = {
    "malformed.yaml": (
        "program: malformed\n"
        "name: Broken: club\n"
        "currency: EUR\n",
        [(2, 13, "malformed YAML: mapping values are not allowed here")],
    ),
    "unknown-key.yaml": (
        "program: unknown-key\n"
        "name: Unknown keys\n"
        "currency: EUR\n"
        "timezone: Europe/Amsterdam\n"
        "enrolment: open\n"
        "colour: blue\n"
        "rules:\n"
        "  - id: r1\n"
        "    kind: points_per_spend\n"
        "    points_per_unit: 1\n"
        "    bonus: 3\n",
        [(6, 1, "unknown key 'colour'"), (11, 5, "rules[0]: unknown key 'bonus'")],
    ),
    "wrong-type.yaml": (
        "program: wrong-type\n"
        "name: Wrong types\n"
        "currency: EUR\n"
        "timezone: Europe/Amsterdam\n"
        "enrolment: open\n"
        "exclude:\n"
        "  categories: gift-cards\n"
        "rules:\n"
        "  - id: r1\n"
        "    kind: points_per_spend\n"
        "    points_per_unit: lots\n",
        [(7, 15, "exclude.categories: Input should be a valid list"),
         (11, 22, "rules[0].points_per_unit: value 'lots' is not a decimal number")],
    ),
    "negative.yaml": (
        "program: negative\n"
        "name: Negative amounts\n"
        "currency: EUR\n"
        "timezone: Europe/Amsterdam\n"
        "enrolment: open\n"
        "rules:\n"
        "  - id: r1\n"
        "    kind: points_per_spend\n"
        "    points_per_unit: 1\n"
        '    minimum_purchase: "-2.00"\n'
        "    category_multipliers:\n"
        "      coffee-beans: -2\n",
        [(10, 23, "rules[0].minimum_purchase: Input should be greater than or equal to 0"),
         (12, 21, "rules[0].category_multipliers.coffee-beans: Input should be greater than 0")],
    ),
    "currency.yaml": (
        "# a program in a currency that does not exist\n"
        "program: unknown-currency\n"
        "name: Unknown currency\n"
        "currency: XYZ\n"
        "timezone: Europe/Amsterdam\n"
        "enrolment: open\n"
        "rules:\n"
        "  - id: r1\n"
        "    kind: points_per_spend\n"
        "    points_per_unit: 1\n",
        [(4, 11, "currency: XYZ is not an ISO 4217 currency code")],
    ),
}


def _write_broken(directory: Path) -> list[str]:
    """Write the broken files; return every expected `path:line:col: message` line."""
    directory.mkdir()
    expected = []
    for name, (text, problems) in sorted(BROKEN.items()):
        (directory / name).write_text(text, encoding="utf-8")
        expected += [f"{directory.name}/{name}:{line}:{col}: {message}"
                     for line, col, message in problems]
    return expected


def test_validate_shipped_rules(tmp_path: Path) -> None:
    text = ok("rules", "validate", "rules/", cwd=ROOT)
    assert text.out_lines == [
        "rules/bean-there-coffee.yaml: ok (program bean-there, 3 rule(s))",
        "rules/big-box-warehouse.yaml: ok (program big-box, 2 rule(s))",
        "rules/campus-books.yaml: ok (program campus-books, 1 rule(s))",
        "rules/fresh-market-grocery.yaml: ok (program fresh-market, 4 rule(s))",
        "rules/glow-beauty.yaml: ok (program glow-beauty, 2 rule(s))",
    ], str(text)
    report = ok("rules", "validate", SHIPPED_RULES, "--json", cwd=tmp_path).json()
    assert report["valid"] is True
    coffee, *_, grocery, _ = report["programs"]
    assert (coffee["program"], coffee["rules"]) == ("bean-there", 3)
    assert (grocery["program"], grocery["rules"]) == ("fresh-market", 4)
    assert re.fullmatch(r"[0-9a-f]{64}", coffee["content_hash"])


def test_validate_reports_every_problem_with_its_location(tmp_path: Path) -> None:
    expected = _write_broken(tmp_path / "bad")
    text = run("rules", "validate", "bad", cwd=tmp_path)
    assert text.code == 1, str(text)
    assert text.stdout == "", str(text)
    *problems, summary = text.err_lines
    assert sorted(problems) == sorted(expected), str(text)
    assert summary == f"{len(expected)} problems found; nothing was changed"

    report = run("rules", "validate", "bad", "--json", cwd=tmp_path)
    assert report.code == 1, str(report)
    data = report.json()
    assert data["valid"] is False
    found = sorted(f"{p['file']}:{p['line']}:{p['column']}: {p['message']}"
                   for p in data["problems"])
    assert found == sorted(expected)


def test_apply_stores_a_version_once(db_url: str, tmp_path: Path) -> None:
    first = ok("rules", "apply", RULES_DIR, database=db_url, cwd=tmp_path)
    assert re.search(r"bean-there: version 1 stored, in force from "
                     r"the start \([0-9a-f]{12}\)", first.out_flat), str(first)

    second = ok("rules", "apply", RULES_DIR, database=db_url, via="option", cwd=tmp_path)
    assert re.fullmatch(r"bean-there: unchanged \(version 1, [0-9a-f]{12}\)",
                        second.out_flat), str(second)

    # Broken files are refused as a whole, with their problems, and store nothing.
    expected = _write_broken(tmp_path / "bad")
    refused = run("rules", "apply", "bad", database=db_url, cwd=tmp_path)
    assert refused.code == 1, str(refused)
    assert sorted(refused.err_lines[:-1]) == sorted(expected)
    assert refused.err_lines[-1].endswith("nothing was changed")

    # A changed program must take effect after the version in force.
    changed = tmp_path / "changed.yaml"
    changed.write_text((RULES_DIR / "bean-there-basic.yaml").read_text(encoding="utf-8")
                       .replace("points_per_unit: 1", "points_per_unit: 2"), encoding="utf-8")
    too_early = run("rules", "apply", changed, "--effective-from", "1969-12-31T00:00:00+00:00",
                    database=db_url, cwd=tmp_path)
    assert_one_sentence_error(too_early, "must take effect later")

    versions = ok("rules", "versions", "--json", database=db_url, cwd=tmp_path).json()
    assert [(v["program"], v["version"], v["effective_from"], v["from_the_start"])
            for v in versions] == [("bean-there", 1, "1970-01-01T00:00:00+00:00", True)]
    shown = ok("rules", "versions", database=db_url, cwd=tmp_path)
    assert "from the start" in shown.out_flat and "1970" not in shown.stdout, str(shown)
    assert first.out_flat.endswith(f"({versions[0]['content_hash'][:12]})")
    assert versions[0]["name"] == "Bean There Coffee Club"
    assert versions[0]["currency"] == "EUR"
