"""Semantic program diffs: edits of the shipped coffee program and what they mean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loyalty_engine.rules import ProgramDefinition, load_program_text
from loyalty_engine.rules.diff import Plain, ProgramDiff, diff_programs, show

COFFEE = (Path(__file__).resolve().parents[2] / "rules" / "bean-there-coffee.yaml").read_text(
    encoding="utf-8")

STAMP_CARD = """\
  - id: coffee-card
    kind: stamp_card
    description: A stamp for every coffee; nine stamps make the tenth coffee free.
    when: {categories: [coffee]}
    stamp_per: item
    card_size: 9
    reward: free-coffee
    stamps_expire: {after_months: 6}
"""
FIVE_EURO_OFF = """\
  - id: five-euro-off
    name: Five euros off your next order
    kind: fixed_amount
    amount: "5.00"
    valid_days: 90
    cost_points: 250
"""
FIFTH_VISIT = """
  - id: fifth-visit
    kind: nth_visit
    visit: 5
    period: month
    points: 50
"""
assert STAMP_CARD in COFFEE and FIVE_EURO_OFF in COFFEE

Row = tuple[Plain, ...]


def edited(*replacements: tuple[str, str], append: str = "") -> str:
    text = COFFEE
    for old, new in replacements:
        assert old in text, f"{old!r} is not in the coffee program"
        text = text.replace(old, new)
    return text + append


def definition(text: str) -> ProgramDefinition:
    return load_program_text(text, "coffee.yaml").definition


def rows(diff: ProgramDiff) -> list[Row]:
    """The diff flattened: ("setting", path, before, after), ("+rule", id, kind),
    ("~rule", id, path, before, after), and the same for rewards."""
    found: list[Row] = [("setting", c.path, c.before, c.after) for c in diff.settings]
    for what, part in (("rule", diff.rules), ("reward", diff.rewards)):
        found += [(f"+{what}", e.id, e.kind) for e in part.added]
        found += [(f"-{what}", e.id, e.kind) for e in part.removed]
        found += [(f"~{what}", entry.id, c.path, c.before, c.after)
                  for entry in part.changed for c in entry.changes]
    return found


CASES: list[tuple[str, str, list[Row]]] = [
    ("rate", edited(("points_per_unit: 1", "points_per_unit: 2")),
     [("~rule", "points-per-euro", "points_per_unit", "1", "2")]),
    ("threshold and stamps", edited(('minimum_purchase: "2.00"', "minimum_purchase: 2.5"),
                                    ("card_size: 9", "card_size: 10")),
     [("~rule", "points-per-euro", "minimum_purchase", "2", "2.5"),
      ("~rule", "coffee-card", "card_size", 9, 10)]),
    ("condition tags", edited(("when: {categories: [coffee]}", "when: {categories: [tea]}")),
     [("~rule", "coffee-card", "when.categories", ["coffee"], ["tea"])]),
    ("condition expression", edited(
        ("when: {categories: [coffee]}",
         'when: {categories: [coffee], expression: "purchase.total_minor > 500"}')),
     [("~rule", "coffee-card", "when.expression", None, "purchase.total_minor > 500")]),
    ("multiplier factor", edited(("factor: 2", "factor: 1.5")),
     [("~rule", "points-per-euro", "multipliers[double-tuesday].factor", "2", "1.5")]),
    ("multiplier days", edited(("days: [tuesday]", "days: [tuesday, friday]")),
     [("~rule", "points-per-euro", "multipliers[double-tuesday].when.days", ["tuesday"],
       ["tuesday", "friday"])]),
    ("multiplier added", edited(("factor: 2", "factor: 2\n      - id: sunday\n"
                                              "        when: {days: [sunday]}\n"
                                              "        factor: 3")),
     [("~rule", "points-per-euro", "multipliers[sunday]", None,
       {"id": "sunday", "when": {"days": ["sunday"]}, "factor": "3"})]),
    ("category multiplier", edited(("coffee-beans: 2", "coffee-beans: 3\n      tea: 2")),
     [("~rule", "points-per-euro", "category_multipliers.coffee-beans", "2", "3"),
      ("~rule", "points-per-euro", "category_multipliers.tea", None, "2")]),
    ("rule caps", edited(("card_size: 9", "card_size: 9\n    caps: {per_day: 3}")),
     [("~rule", "coffee-card", "caps.per_day", None, 3)]),
    ("rule added", edited(append=FIFTH_VISIT), [("+rule", "fifth-visit", "nth_visit")]),
    ("rule removed", edited((STAMP_CARD, "")), [("-rule", "coffee-card", "stamp_card")]),
    ("kind change", edited((STAMP_CARD, STAMP_CARD.split("    kind:")[0]
                            + "    kind: fixed_bonus\n    points: 5\n")),
     [("~rule", "coffee-card", "kind", "stamp_card", "fixed_bonus"),
      ("~rule", "coffee-card", "description",
       "A stamp for every coffee; nine stamps make the tenth coffee free.", None),
      ("~rule", "coffee-card", "when.categories", ["coffee"], []),
      ("~rule", "coffee-card", "stamp_per", "item", None),
      ("~rule", "coffee-card", "card_size", 9, None),
      ("~rule", "coffee-card", "reward", "free-coffee", None),
      ("~rule", "coffee-card", "stamps_expire.after_months", 6, None),
      ("~rule", "coffee-card", "count", "purchases", None),
      ("~rule", "coffee-card", "points", None, 5)]),
    ("reward changed", edited(("cost_points: 250", "cost_points: 300"),
                              ('amount: "5.00"', "amount: 5")),
     [("~reward", "five-euro-off", "cost_points", 250, 300)]),
    ("reward removed", edited((FIVE_EURO_OFF, "")),
     [("-reward", "five-euro-off", "fixed_amount")]),
    ("reward added", edited(("rewards:\n", "rewards:\n  - id: free-cake\n    name: Cake\n"
                                             "    kind: free_item\n    category: pastry\n")),
     [("+reward", "free-cake", "free_item")]),
    ("settings", edited(("pending_days: 14", "pending_days: 7"),
                        ("name: Bean There Coffee Club", "name: Bean There"),
                        ("[gift-cards, tobacco]", "[gift-cards, alcohol]"),
                        ('stores: ["AMS-*", "UTR-*", "RTM-*"]', 'stores: ["AMS-*", "UTR-*"]'),
                        ("expiry: never", "expiry: {after_months: 12}"),
                        ("refund_shortfall: negative_balance", "refund_shortfall: debt\n"
                                                               "caps: {per_week: 500}")),
     [("setting", "name", "Bean There Coffee Club", "Bean There"),
      ("setting", "stores", ["AMS-*", "UTR-*", "RTM-*"], ["AMS-*", "UTR-*"]),
      ("setting", "exclude.categories", ["gift-cards", "tobacco"], ["gift-cards", "alcohol"]),
      ("setting", "points.pending_days", 14, 7),
      ("setting", "points.expiry.after_months", None, 12),
      ("setting", "points.refund_shortfall", "negative_balance", "debt"),
      ("setting", "caps.per_week", None, 500)]),
    ("rule order", edited((STAMP_CARD, ""), ("rules:\n", "rules:\n" + STAMP_CARD)),
     [("setting", "rules.order", ["points-per-euro", "coffee-card", "club-friday"],
       ["coffee-card", "points-per-euro", "club-friday"])]),
    # Edits that change the text but not the meaning.
    ("comments", edited(("# Bean There: a coffee chain", "# Bean There (edited): a coffee"),
                        ("card_size: 9", "card_size: 9  # ten would be kinder")), []),
    ("layout, key order and explicit defaults",
     edited(("    when: {categories: [coffee]}\n", "    priority: 0\n    when:\n"
                                                   "      categories:\n        - coffee\n"),
            ("    rounding: floor\n", ""), ('stores: ["AMS-*", "UTR-*", "RTM-*"]',
                                        'stores: ["RTM-*", "AMS-*", "UTR-*"]')), []),
    ("equal decimals", edited(("points_per_unit: 1", 'points_per_unit: "1.000"'),
                              ("factor: 2", "factor: 2.0"), ('"2.00"', "2")), []),
]


@pytest.mark.parametrize(("new_text", "expected"), [(n, e) for _, n, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_diff_of_an_edit(new_text: str, expected: list[Row]) -> None:
    diff = diff_programs(definition(COFFEE), definition(new_text))
    assert rows(diff) == expected
    assert diff.identical is (expected == [])
    assert diff.program == "bean-there"
    json.dumps(diff.to_plain())  # plain JSON throughout: no Decimal or date left


def test_identical_programs_give_an_empty_diff() -> None:
    diff = diff_programs(definition(COFFEE), definition(COFFEE))
    assert diff.identical
    assert diff.to_plain() == {
        "program": "bean-there", "identical": True, "settings": [],
        "rules": {"added": [], "removed": [], "changed": []},
        "rewards": {"added": [], "removed": [], "changed": []},
    }


def test_tag_lists_show_added_and_removed_members() -> None:
    diff = diff_programs(definition(COFFEE), definition(edited(
        ("[gift-cards, tobacco]", "[gift-cards, alcohol, lottery]"),
        ("days: [tuesday]", "days: [wednesday]"))))
    (setting,) = diff.settings
    assert (setting.added, setting.removed) == (("alcohol", "lottery"), ("tobacco",))
    assert setting.describe() == "added alcohol, lottery; removed tobacco"
    assert setting.to_plain() == {
        "path": "exclude.categories", "before": ["gift-cards", "tobacco"],
        "after": ["gift-cards", "alcohol", "lottery"], "added": ["alcohol", "lottery"],
        "removed": ["tobacco"]}
    (rule,) = diff.rules.changed
    assert [c.describe() for c in rule.changes] == ["added wednesday; removed tuesday"]


@pytest.mark.parametrize(("value", "shown"), [
    (None, "(none)"), (7, "7"), ("0.5", "0.5"), ("floor", "floor"), ("AMS-*", "AMS-*"),
    ("purchase.total > 500", '"purchase.total > 500"'), ("", '""'),
    (["tuesday", "friday"], "[tuesday, friday]"),
    ({"id": "m", "when": {"days": ["sunday"], "skus": []}, "factor": "3"},
     '{"id": "m", "when": {"days": ["sunday"]}, "factor": "3"}'),
])
def test_values_are_shown_for_people(value: Plain, shown: str) -> None:
    assert show(value) == shown


def test_decimals_print_normalised() -> None:
    diff = diff_programs(definition(COFFEE), definition(edited(
        ("points_per_unit: 1", "points_per_unit: 0.50"), ("factor: 2", "factor: 20.0"))))
    changes = [c for entry in diff.rules.changed for c in entry.changes]
    assert [(c.path, c.describe()) for c in changes] == [
        ("points_per_unit", "1 -> 0.5"), ("multipliers[double-tuesday].factor", "2 -> 20")]


# --- tier measures and windows (issue 16) ----------------------------------------------------

HOTEL = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
         / "hotel-nights.yaml").read_text(encoding="utf-8")
GLOW = (Path(__file__).resolve().parents[2] / "rules" / "glow-beauty.yaml").read_text(
    encoding="utf-8")


def _changes(old: str, new: str) -> list[tuple[str, str]]:
    diff = diff_programs(load_program_text(old).definition, load_program_text(new).definition)
    return [(c.path, c.describe()) for c in diff.settings]


@pytest.mark.parametrize(
    ("old", "replacements", "expected"),
    [
        (HOTEL, [("    any:\n", "    all:\n")], [("tiers.measure.combine", "any -> all")]),
        (HOTEL, [("nights: {quantity: {categories: [room-night]}}",
                  "nights: {quantity: {categories: [room-night, suite-night]}}")],
         [("tiers.measure.nights.quantity.categories", "added suite-night")]),
        (HOTEL, [("thresholds: {nights: 25, points: 50000}",
                  "thresholds: {nights: 20, points: 50000}")],
         [("tiers.levels[gold].thresholds.nights", "25 -> 20")]),
        (HOTEL, [("window: calendar_year", "window: {rolling_months: 12, review: quarterly}")],
         [("tiers.window", 'calendar_year -> {"rolling_months": 12, "review": "quarterly"}')]),
        (GLOW, [("window: calendar_year", "window: {rolling_months: 12, review: yearly, "
                 "review_on: 03-01}")],
         [("tiers.window", 'calendar_year -> {"rolling_months": 12, "review": "yearly", '
                           '"review_on": "03-01"}')]),
        (GLOW.replace("window: calendar_year", "window: {rolling_months: 12}"),
         [("window: {rolling_months: 12}", "window: {rolling_months: 12, review: quarterly}")],
         [("tiers.window.review", "monthly -> quarterly")]),
        (GLOW, [("measure: spend", "measure: days"), ('"350.00"', "10"), ('"1000.00"', "30")],
         [("tiers.measure", "spend -> days"), ("tiers.levels[glow].threshold", "350 -> 10"),
          ("tiers.levels[radiant].threshold", "1000 -> 30")]),
    ],
    ids=["any to all", "a quantity's selection", "a threshold of two", "window to rolling",
         "a yearly review day", "monthly to quarterly", "spend to days"],
)
def test_diff_describes_measure_and_window_changes(
        old: str, replacements: list[tuple[str, str]], expected: list[tuple[str, str]]) -> None:
    new = old
    for before, after in replacements:
        assert before in new
        new = new.replace(before, after)
    assert _changes(old, new) == expected
