"""Program files: loading, compiling, content hashes and problems reported as file:line:col."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_engine.rules import (
    LoadedProgram,
    Problem,
    ProgramFileError,
    load_program_text,
)
from loyalty_engine.rules.compiled import PointsPerSpend, StampCard
from loyalty_engine.rules.expressions import stored_programs
from loyalty_engine.services.program_files import load_program_file

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"

GOOD = """\
# A small program used throughout these tests.
program: corner-cafe
name: Corner Cafe
currency: EUR
timezone: Europe/Amsterdam
enrolment: open

exclude:
  categories: [gift-cards, tobacco]
  skus: [DEPOSIT-BOTTLE]

rules:
  - id: points-per-euro
    kind: points_per_spend
    points_per_unit: 1
    rounding: floor
    minimum_purchase: "2.00"
    category_multipliers:
      coffee-beans: 2
  - id: weekend-bonus
    kind: points_per_spend
    points_per_unit: "0.5"
    rounding: half_up
"""


def problems_of(text: str, name: str = "cafe.yaml") -> list[Problem]:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, name)
    assert info.value.problems, "a ProgramFileError must carry at least one problem"
    return info.value.problems


def only_problem(text: str, name: str = "cafe.yaml") -> Problem:
    problems = problems_of(text, name)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line number of the occurrence-th line containing needle."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} occurs {len(hits)} times"
    return hits[occurrence - 1]


def column_of(text: str, line: int, needle: str) -> int:
    """1-based column of needle on a 1-based line."""
    return text.splitlines()[line - 1].index(needle) + 1


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


# --- loading good files ----------------------------------------------------------------------


def test_good_program_loads_and_compiles() -> None:
    loaded = load_program_text(GOOD, "cafe.yaml")
    assert isinstance(loaded, LoadedProgram)
    assert loaded.path == "cafe.yaml"
    assert loaded.source_text == GOOD

    compiled = loaded.compiled
    assert compiled.program_id == "corner-cafe"
    assert compiled.name == "Corner Cafe"
    assert compiled.currency == "EUR"
    assert compiled.exponent == 2
    assert compiled.timezone.key == "Europe/Amsterdam"
    assert compiled.excluded_categories == frozenset({"gift-cards", "tobacco"})
    assert compiled.excluded_skus == frozenset({"DEPOSIT-BOTTLE"})
    assert [r.rule_id for r in compiled.rules] == ["points-per-euro", "weekend-bonus"]

    first, second = compiled.rules
    assert first.minimum_minor == 200
    assert first.rounding == "floor"
    assert first.points_per_unit == Decimal(1)
    assert first.category_multipliers == {"coffee-beans": Decimal(2)}
    assert second.minimum_minor == 0
    assert second.rounding == "half_up"
    assert second.points_per_unit == Decimal("0.5")


def test_rounding_defaults_to_floor_and_minimum_to_zero() -> None:
    text = GOOD.replace("    rounding: floor\n", "").replace('    minimum_purchase: "2.00"\n', "")
    rule = load_program_text(text).compiled.rules[0]
    assert rule.rounding == "floor"
    assert rule.minimum_minor == 0


@pytest.mark.parametrize("written", ["0.1", "'0.1'", '"0.10"', "1.10", "2.5", "0.3"])
def test_yaml_numbers_are_read_as_the_decimal_that_was_written(written: str) -> None:
    text = replace_once(GOOD, "points_per_unit: 1\n", f"points_per_unit: {written}\n")
    value = load_program_text(text).definition.rules[0].points_per_unit
    assert value == Decimal(written.strip("'\""))


def test_the_example_program_in_the_repository_loads() -> None:
    loaded = load_program_file(RULES_DIR / "bean-there-coffee.yaml")
    compiled = loaded.compiled
    assert compiled.program_id == "bean-there"
    assert compiled.currency == "EUR"
    assert compiled.excluded_categories == frozenset({"gift-cards", "tobacco"})
    assert compiled.excluded_skus == frozenset({"DEPOSIT-BOTTLE"})
    assert compiled.pending_days == 14
    rule, card, friday = compiled.rules
    assert isinstance(rule, PointsPerSpend) and isinstance(card, StampCard)
    assert friday.rule_id == "club-friday"
    assert set(compiled.clubs) == {"bean-club"} and compiled.clubs["bean-club"].joins_on_purchase
    assert rule.minimum_minor == 200
    assert rule.category_multipliers == {"coffee-beans": Decimal(2)}
    assert [(m[0], m[2]) for m in rule.multipliers] == [("double-tuesday", 2)]
    assert (card.card_size, card.reward_id) == (9, "free-coffee")


def test_load_program_file_uses_the_path_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "cafe.yaml"
    path.write_text(GOOD.replace("currency: EUR", "currency: XYZ"), encoding="utf-8")
    with pytest.raises(ProgramFileError) as info:
        load_program_file(path)
    line = line_of(GOOD, "currency: EUR")
    assert str(info.value) == (
        f"{path}:{line}:11: currency: XYZ is not an ISO 4217 currency code"
    )


def test_load_program_file_reads_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "cafe.yaml"
    path.write_text(GOOD, encoding="utf-8")
    loaded = load_program_file(str(path))
    assert loaded.path == str(path)
    assert loaded.content_hash == load_program_text(GOOD).content_hash


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ProgramFileError) as info:
        load_program_file(path)
    assert str(info.value) == f"{path}:1:1: no such file"


def test_directory_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ProgramFileError) as info:
        load_program_file(tmp_path)
    assert str(info.value) == f"{tmp_path}:1:1: is a directory, not a file"


def test_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ProgramFileError) as info:
        load_program_file(path)
    assert str(info.value) == f"{path}:1:1: is not UTF-8 text (byte 9)"


# --- problems and their locations ------------------------------------------------------------


def test_problem_prints_as_file_line_column_message() -> None:
    assert str(Problem("a.yaml", 3, 7, "boom")) == "a.yaml:3:7: boom"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("program: p\nname: P\n  currency: EUR\n", 3, 11),  # bad indentation
        ("program: p\nname: P\ncurrency: [EUR\ntimezone: UTC\n", 4, 9),  # unclosed [
        ("program: p\nname: P\n- x\n", 3, 1),  # list item inside a mapping
        ("program: p\n\tname: P\n", 2, 1),  # tab indentation
    ],
)
def test_malformed_yaml_is_reported_where_the_parser_stopped(
    text: str, line: int, column: int
) -> None:
    problem = only_problem(text)
    assert (problem.path, problem.line, problem.column) == ("cafe.yaml", line, column)
    assert problem.message.startswith("malformed YAML: ")


def test_malformed_yaml_later_in_a_real_file_points_at_its_line() -> None:
    text = replace_once(GOOD, "  skus: [DEPOSIT-BOTTLE]", "  skus: [DEPOSIT-BOTTLE")
    problem = only_problem(text)
    assert problem.message.startswith("malformed YAML: ")
    # The parser notices the unclosed bracket at the next key, on the "rules:" line.
    assert problem.line == line_of(text, "rules:")


def test_unknown_top_level_key_points_at_the_key() -> None:
    text = GOOD.replace("enrolment: open\n", "enrolment: open\ncolour: red\n")
    problem = only_problem(text)
    assert problem.message == "unknown key 'colour'"
    assert (problem.line, problem.column) == (line_of(text, "colour:"), 1)


def test_unknown_key_inside_a_rule_points_at_the_key() -> None:
    text = replace_once(GOOD, "    rounding: half_up\n", "    rounding: half_up\n    bonus: 5\n")
    problem = only_problem(text)
    assert problem.message == "rules[1]: unknown key 'bonus'"
    assert (problem.line, problem.column) == (line_of(text, "bonus: 5"), 5)


def test_unknown_key_inside_exclude_points_at_the_key() -> None:
    text = replace_once(GOOD, "  skus: [DEPOSIT-BOTTLE]\n",
                        "  skus: [DEPOSIT-BOTTLE]\n  stores: [AMS-01]\n")
    problem = only_problem(text)
    assert problem.message == "exclude: unknown key 'stores'"
    assert (problem.line, problem.column) == (line_of(text, "stores:"), 3)


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("points_per_unit: 1\n", "points_per_unit: lots\n", "lots",
         "rules[0].points_per_unit: value 'lots' is not a decimal number"),
        ("points_per_unit: 1\n", "points_per_unit: true\n", "true",
         "rules[0].points_per_unit: "),
        ("rounding: floor", "rounding: bankers", "bankers", "rules[0].rounding: "),
        ("name: Corner Cafe", "name: 42", "42", "name: Input should be a valid string"),
        ("categories: [gift-cards, tobacco]", "categories: tobacco", "tobacco",
         "exclude.categories: Input should be a valid list"),
        ("enrolment: open", "enrolment: invite", "invite", "enrolment: "),
    ],
)
def test_wrong_type_points_at_the_value(old: str, new: str, needle: str, message: str) -> None:
    text = replace_once(GOOD, old, new)
    problem = only_problem(text)
    line = line_of(text, new.strip())
    assert problem.message.startswith(message), problem.message
    assert (problem.line, problem.column) == (line, column_of(text, line, needle))


def test_rules_that_are_not_a_list_point_at_the_value() -> None:
    text = "program: p\nname: P\ncurrency: EUR\ntimezone: UTC\nenrolment: open\nrules: 5\n"
    problem = only_problem(text)
    assert problem.message == "rules: Input should be a valid list"
    assert (problem.line, problem.column) == (6, 8)


def test_empty_rules_are_a_problem() -> None:
    text = "program: p\nname: P\ncurrency: EUR\ntimezone: UTC\nenrolment: open\nrules: []\n"
    problem = only_problem(text)
    assert problem.message.startswith("rules: List should have at least 1 item")
    assert problem.line == 6


@pytest.mark.parametrize("value", ["-1", '"-0.5"', "0"])
def test_points_per_unit_must_be_positive(value: str) -> None:
    text = replace_once(GOOD, "points_per_unit: 1\n", f"points_per_unit: {value}\n")
    problem = only_problem(text)
    line = line_of(text, f"points_per_unit: {value}")
    assert problem.message == "rules[0].points_per_unit: Input should be greater than 0"
    assert (problem.line, problem.column) == (line, 22)


def test_negative_minimum_purchase_points_at_the_value() -> None:
    text = replace_once(GOOD, 'minimum_purchase: "2.00"', 'minimum_purchase: "-2.00"')
    problem = only_problem(text)
    assert problem.message.startswith("rules[0].minimum_purchase: ")
    assert problem.line == line_of(text, "minimum_purchase:")


def test_non_positive_multiplier_points_at_the_value() -> None:
    text = replace_once(GOOD, "coffee-beans: 2", "coffee-beans: 0")
    problem = only_problem(text)
    assert problem.message == (
        "rules[0].category_multipliers.coffee-beans: Input should be greater than 0"
    )
    assert (problem.line, problem.column) == (line_of(text, "coffee-beans: 0"), 21)


@pytest.mark.parametrize(
    ("currency", "message"),
    [
        ("XYZ", "currency: XYZ is not an ISO 4217 currency code"),
        ("XAU", "currency: XAU has no minor unit and cannot be used for purchases"),
        ("eur", "currency: 'eur' is not an ISO 4217 currency code (three capital letters)"),
    ],
)
def test_unknown_currency_points_at_the_currency(currency: str, message: str) -> None:
    text = replace_once(GOOD, "currency: EUR", f"currency: {currency}")
    problem = only_problem(text)
    assert problem.message == message
    assert (problem.line, problem.column) == (line_of(text, "currency:"), 11)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "CET+1", "../etc/passwd", "''"])
def test_bad_timezone_points_at_the_timezone(zone: str) -> None:
    text = replace_once(GOOD, "timezone: Europe/Amsterdam", f"timezone: {zone}")
    problem = only_problem(text)
    assert problem.message.startswith("timezone: ")
    assert "is not an IANA time zone" in problem.message
    assert (problem.line, problem.column) == (line_of(text, "timezone:"), 11)


def test_missing_key_is_named() -> None:
    text = GOOD.replace("enrolment: open\n", "")
    problem = only_problem(text)
    assert problem.message == "missing required key 'enrolment'"


def test_missing_key_inside_a_rule_points_at_the_rule() -> None:
    text = replace_once(GOOD, '    points_per_unit: "0.5"\n', "")
    problem = only_problem(text)
    assert problem.message == "rules[1]: missing required key 'points_per_unit'"
    assert problem.line == line_of(text, "- id: weekend-bonus")


def test_duplicate_rule_ids_are_reported() -> None:
    text = replace_once(GOOD, "- id: weekend-bonus", "- id: points-per-euro")
    problem = only_problem(text)
    assert "rule id 'points-per-euro' is used twice" in problem.message


def test_duplicate_rule_id_points_at_the_second_rule() -> None:
    text = replace_once(GOOD, "- id: weekend-bonus", "- id: points-per-euro")
    problem = only_problem(text)
    assert problem.line == line_of(text, "- id: points-per-euro", occurrence=2), str(problem)


@pytest.mark.parametrize("written", ['"2.005"', "2.005", '"0.001"'])
def test_minimum_purchase_with_too_many_decimals_is_reported(written: str) -> None:
    text = replace_once(GOOD, 'minimum_purchase: "2.00"', f"minimum_purchase: {written}")
    problem = only_problem(text)
    assert problem.message == (f"rules[0].minimum_purchase: amount {written.strip(chr(34))} "
                               "has more decimals than EUR allows (2)")


def test_minimum_purchase_with_too_many_decimals_points_at_its_line() -> None:
    text = replace_once(GOOD, 'minimum_purchase: "2.00"', 'minimum_purchase: "2.005"')
    problem = only_problem(text)
    assert problem.line == line_of(text, "minimum_purchase:"), str(problem)


def test_minimum_purchase_decimals_follow_the_currency() -> None:
    jpy = replace_once(GOOD, "currency: EUR", "currency: JPY")
    # "2.00" is 2 yen written with zeros: a new file is told to write 2 (issue 16: the
    # zeros say the manager thinks in cents); a version stored before still loads as 2.
    problem = only_problem(jpy)
    assert problem.message.endswith("amount 2.00 is written with more decimals than JPY "
                                    "has (no decimals); write 2")
    with stored_programs():
        assert load_program_text(jpy).compiled.rules[0].minimum_minor == 2
    assert load_program_text(replace_once(jpy, '"2.00"', '"2"')).compiled.rules[
        0].minimum_minor == 2
    problem = only_problem(replace_once(jpy, '"2.00"', '"2.50"'))
    assert "more decimals than JPY allows (0)" in problem.message


@pytest.mark.parametrize("text", ["", "\n\n", "   \n", "# only a comment\n", "---\n"])
def test_empty_file_is_a_problem(text: str) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message == "file is empty; expected a program definition"


@pytest.mark.parametrize("text", ["- program: p\n- name: P\n", "42\n", "just some words\n"])
def test_root_that_is_not_a_mapping_is_a_problem(text: str) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message.startswith("a program file must be a mapping")


def test_duplicate_top_level_key_points_at_the_second_occurrence() -> None:
    text = GOOD + "currency: USD\n"
    problem = only_problem(text)
    assert problem.message.startswith("malformed YAML: ")
    assert 'duplicate key "currency"' in problem.message
    assert (problem.line, problem.column) == (line_of(text, "currency: USD"), 1)


def test_duplicate_nested_key_points_at_the_second_occurrence() -> None:
    text = replace_once(GOOD, "    rounding: half_up\n",
                        "    rounding: half_up\n    rounding: floor\n")
    problem = only_problem(text)
    assert 'duplicate key "rounding"' in problem.message
    line = line_of(text, "rounding:", occurrence=3)
    assert (problem.line, problem.column) == (line, 5)


def test_several_problems_are_all_reported_in_line_order() -> None:
    text = (
        GOOD.replace("currency: EUR", "currency: XYZ")
        .replace("timezone: Europe/Amsterdam", "timezone: Mars/Olympus")
        .replace("points_per_unit: 1\n", "points_per_unit: -1\n")
        .replace("rounding: half_up", "rounding: sometimes")
        + "colour: red\n"
    )
    problems = problems_of(text)
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (line_of(text, "currency:"), "currency"),
        (line_of(text, "timezone:"), "timezone"),
        (line_of(text, "points_per_unit: -1"), "rules[0].points_per_unit"),
        (line_of(text, "rounding: sometimes"), "rules[1].rounding"),
        (line_of(text, "colour:"), "unknown key 'colour'"),
    ]
    assert all(p.path == "cafe.yaml" for p in problems)


def test_error_text_lists_every_problem_one_per_line() -> None:
    text = GOOD.replace("currency: EUR", "currency: XYZ").replace(
        "timezone: Europe/Amsterdam", "timezone: Mars/Olympus"
    )
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "cafe.yaml")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"cafe.yaml:{line_of(text, 'currency:')}:11: currency: ")
    assert lines[1].startswith(f"cafe.yaml:{line_of(text, 'timezone:')}:11: timezone: ")


def test_default_name_is_used_when_none_is_given() -> None:
    with pytest.raises(ProgramFileError) as info:
        load_program_text("")
    assert str(info.value).startswith("<text>:1:1: ")


# --- content_hash ----------------------------------------------------------------------------


def content_hash(text: str) -> str:
    return load_program_text(text).content_hash


REWRITTEN = """\
rules:
- kind: points_per_spend
  id: points-per-euro        # the everyday rule
  category_multipliers: {coffee-beans: "2.0"}
  minimum_purchase: 2
  rounding: floor
  points_per_unit: "1.00"
- {id: weekend-bonus, kind: points_per_spend, points_per_unit: 0.50, rounding: half_up}
enrolment: open
exclude:
  skus:
  - DEPOSIT-BOTTLE
  categories:
  - gift-cards
  - tobacco
timezone: "Europe/Amsterdam"
currency: 'EUR'
name: "Corner Cafe"
program: corner-cafe
"""


def test_content_hash_is_a_sha256_hex_digest() -> None:
    digest = content_hash(GOOD)
    assert len(digest) == 64
    int(digest, 16)


def test_content_hash_ignores_comments() -> None:
    commented = GOOD.replace("rounding: floor", "rounding: floor   # never round up")
    assert content_hash("# header\n" + commented + "# trailer\n") == content_hash(GOOD)


def test_content_hash_ignores_key_order_layout_and_number_spelling() -> None:
    assert content_hash(REWRITTEN) == content_hash(GOOD)


def test_content_hash_ignores_explicit_defaults() -> None:
    explicit = replace_once(GOOD, '    points_per_unit: "0.5"\n',
                            '    points_per_unit: "0.5"\n    minimum_purchase: "0"\n')
    assert content_hash(explicit) == content_hash(GOOD)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("points_per_unit: 1\n", "points_per_unit: 2\n"),
        ("points_per_unit: 1\n", "points_per_unit: 1.01\n"),
        ('points_per_unit: "0.5"', 'points_per_unit: "0.25"'),
        ("coffee-beans: 2", "coffee-beans: 3"),
        ("coffee-beans: 2", "coffee-bean: 2"),
        ('minimum_purchase: "2.00"', 'minimum_purchase: "2.01"'),
        ("rounding: floor", "rounding: ceiling"),
        ("skus: [DEPOSIT-BOTTLE]", "skus: []"),
        ("categories: [gift-cards, tobacco]", "categories: [gift-cards]"),
        ("currency: EUR", "currency: USD"),
        ("timezone: Europe/Amsterdam", "timezone: Europe/Brussels"),
        ("program: corner-cafe", "program: corner-cafe-2"),
    ],
)
def test_content_hash_changes_when_the_meaning_changes(old: str, new: str) -> None:
    assert content_hash(replace_once(GOOD, old, new)) != content_hash(GOOD)


def test_yaml_numbers_keep_every_digit_the_author_wrote() -> None:
    text = replace_once(GOOD, 'minimum_purchase: "2.00"', "minimum_purchase: 2.005")
    assert "more decimals than EUR allows" in only_problem(text).message
    precise = load_program_text(replace_once(GOOD, "points_per_unit: 1\n",
                                             "points_per_unit: 1.00000000000000001\n"))
    assert str(precise.definition.rules[0].points_per_unit) == "1.00000000000000001"


# --- files bounded before parsing ---------------------------------------------------------

def test_a_program_file_over_the_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    import time

    from loyalty_engine.rules.loader import MAX_PROGRAM_BYTES

    path = tmp_path / "huge.yaml"
    with path.open("wb") as out:  # 16 MB, sparse: only the bound's worth is ever read
        out.truncate(16_000_000)
    started = time.monotonic()
    with pytest.raises(ProgramFileError) as info:
        load_program_file(path)
    assert time.monotonic() - started < 0.5
    [problem] = info.value.problems
    assert (problem.line, problem.column) == (1, 1)
    assert f"larger than {MAX_PROGRAM_BYTES:,} bytes (256 KiB)" in problem.message


def test_a_program_text_over_the_limit_is_refused() -> None:
    from loyalty_engine.rules.loader import MAX_PROGRAM_BYTES

    with pytest.raises(ProgramFileError, match="larger than 262,144 bytes"):
        load_program_text("# é\n" * (MAX_PROGRAM_BYTES // 5 + 1), "big.yaml")


@pytest.mark.parametrize(
    ("text", "place", "fragment"),
    [
        # levels: the file, a, b, then c's lists from column 8: the 65th opens at column 69
        ("a:\n  b:\n    c: [" + "[" * 70 + "]" * 70 + "]\n", (3, 69),
         "nested more than 64 levels deep"),
        ("program: x\nname: " + "1" * 5000 + "\n", (2, 7), "a number of 5,000 digits"),
        ("program: x\nname: 1." + "0" * 200 + "\n", (2, 7), "a number of 201 digits"),
        ("program: x\nname: y\n\ncurrency: E\x01UR\n", (4, 12), "U+0001 is not allowed"),
    ],
    ids=["deep", "long integer", "long decimal", "control character"],
)
def test_yaml_that_cannot_be_read_is_placed(text: str, place: tuple[int, int],
                                            fragment: str) -> None:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "bad.yaml")
    [problem] = info.value.problems
    assert (problem.line, problem.column) == place, problem
    assert problem.message.startswith("malformed YAML: ") and fragment in problem.message
