"""`loyalty rules diff OLD NEW`: what two versions of a program file differ in, by meaning."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import SHIPPED_RULES, assert_json_error, assert_one_sentence_error, ok, run

COFFEE = SHIPPED_RULES / "bean-there-coffee.yaml"
GROCERY = SHIPPED_RULES / "fresh-market-grocery.yaml"

FIFTH_VISIT = """
  - id: fifth-visit
    kind: nth_visit
    visit: 5
    period: month
    points: 50
"""


def write_edit(path: Path, *replacements: tuple[str, str], append: str = "") -> Path:
    """The shipped coffee program with some text replaced, written to path."""
    text = COFFEE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, f"{old!r} is not in the coffee program"
        text = text.replace(old, new)
    path.write_text(text + append, encoding="utf-8")
    return path


def changed_coffee(tmp_path: Path) -> Path:
    return write_edit(
        tmp_path / "coffee-v2.yaml",
        ("points_per_unit: 1", "points_per_unit: 2"),
        ("card_size: 9", "card_size: 10"),
        ("pending_days: 14", "pending_days: 7"),
        ("[gift-cards, tobacco]", "[gift-cards, tobacco, alcohol]"),
        ("cost_points: 250", "cost_points: 300"),
        append=FIFTH_VISIT,
    )


def test_diff_prints_each_change_in_meaning(tmp_path: Path) -> None:
    new = changed_coffee(tmp_path)
    result = ok("rules", "diff", COFFEE, new, cwd=tmp_path)
    assert result.stderr == "", str(result)
    assert result.out_lines == [
        "bean-there: 2 rules changed, 1 added, 0 removed; 2 settings changed; "
        "rewards: 1 changed, 0 added, 0 removed",
        "~ setting exclude.categories: added alcohol",
        "~ setting points.pending_days: 14 -> 7",
        "+ rule fifth-visit (nth_visit)",
        "~ rule points-per-euro: points_per_unit 1 -> 2",
        "~ rule coffee-card: card_size 9 -> 10",
        "~ reward five-euro-off: cost_points 250 -> 300",
    ], str(result)

    # The other way round, the added rule is a removed one.
    back = ok("rules", "diff", new, COFFEE, cwd=tmp_path)
    assert back.out_lines[0].startswith("bean-there: 2 rules changed, 0 added, 1 removed"), \
        str(back)
    assert "- rule fifth-visit (nth_visit)" in back.out_lines, str(back)
    assert "~ setting exclude.categories: removed alcohol" in back.out_lines, str(back)


def test_diff_only_of_rules_has_the_short_header(tmp_path: Path) -> None:
    new = write_edit(tmp_path / "new.yaml", ("factor: 2", "factor: 1.5"),
                     (' - id: coffee-card', ' - id: coffee-card\n    priority: 0'))
    result = ok("rules", "diff", COFFEE, new, cwd=tmp_path)
    assert result.out_lines == [
        "bean-there: 1 rule changed, 0 added, 0 removed",
        "~ rule points-per-euro: multipliers[double-tuesday].factor 2 -> 1.5",
    ], str(result)


def test_diff_json(tmp_path: Path) -> None:
    new = changed_coffee(tmp_path)
    data = ok("rules", "diff", COFFEE, new, "--json", cwd=tmp_path).json()
    assert data == {
        "program": "bean-there",
        "identical": False,
        "settings": [
            {"path": "exclude.categories", "before": ["gift-cards", "tobacco"],
             "after": ["gift-cards", "tobacco", "alcohol"], "added": ["alcohol"],
             "removed": []},
            {"path": "points.pending_days", "before": 14, "after": 7},
        ],
        "rules": {
            "added": [{"id": "fifth-visit", "kind": "nth_visit"}],
            "removed": [],
            "changed": [
                {"id": "points-per-euro",
                 "changes": [{"path": "points_per_unit", "before": "1", "after": "2"}]},
                {"id": "coffee-card",
                 "changes": [{"path": "card_size", "before": 9, "after": 10}]},
            ],
        },
        "rewards": {
            "added": [],
            "removed": [],
            "changed": [{"id": "five-euro-off",
                         "changes": [{"path": "cost_points", "before": 250, "after": 300}]}],
        },
    }


def test_diff_of_the_same_meaning(tmp_path: Path) -> None:
    # Comments, layout and how a number is written are not meaning.
    relaid = write_edit(
        tmp_path / "relaid.yaml",
        ("# Bean There: a coffee chain's open program.", "# Bean There, reformatted."),
        ("when: {days: [tuesday]}", "when:\n          days:\n            - tuesday"),
        ('minimum_purchase: "2.00"', "minimum_purchase: 2"),
        ("factor: 2", "factor: 2.0  # double"),
    )
    for args in ((COFFEE, COFFEE), (COFFEE, relaid)):
        result = ok("rules", "diff", *args, cwd=tmp_path)
        assert result.out_lines == ["bean-there: no changes in meaning"], str(result)
        data = ok("rules", "diff", *args, "--json", cwd=tmp_path).json()
        assert data["identical"] is True
        assert data["settings"] == []
        assert data["rules"] == data["rewards"] == {"added": [], "removed": [], "changed": []}


def test_diff_of_different_programs_is_refused(tmp_path: Path) -> None:
    result = run("rules", "diff", COFFEE, GROCERY, cwd=tmp_path)
    assert_one_sentence_error(result, "'bean-there'", "'fresh-market'")
    as_json = run("rules", "diff", COFFEE, GROCERY, "--json", cwd=tmp_path)
    assert_json_error(as_json, "refused", "'bean-there'", "'fresh-market'")


def test_diff_of_an_invalid_file_reports_its_problems(tmp_path: Path) -> None:
    broken = write_edit(tmp_path / "broken.yaml", ("card_size: 9", "card_size: nine"))
    line = broken.read_text(encoding="utf-8").splitlines().index("    card_size: nine") + 1
    result = run("rules", "diff", COFFEE, "broken.yaml", cwd=tmp_path)
    assert result.code == 1, str(result)
    assert result.stdout == "", str(result)
    assert result.err_lines == [
        f"broken.yaml:{line}:16: rules[1].card_size: Input should be a valid integer, unable to "
        "parse string as an integer",
        "1 problem found; nothing was changed",
    ], str(result)

    # Problems in both files are all reported; --json gives them as `rules validate` does.
    missing = run("rules", "diff", "missing.yaml", "broken.yaml", "--json", cwd=tmp_path)
    assert missing.code == 1, str(missing)
    data = missing.json()
    assert data["valid"] is False
    assert [(p["file"], p["line"], p["column"]) for p in data["problems"]] == [
        ("missing.yaml", 1, 1), ("broken.yaml", line, 16)]
