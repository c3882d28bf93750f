"""Tender and channel (event, conditions, CEL), multipliers that do not stack (best-of
groups, exclusions) and the max_factor warning, under the pure engine and the loader."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from loyalty_engine.domain.events import PurchaseEvent, describe_errors
from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.rules.diff import diff_programs

from .builders import Line, event_dict
from .test_rule_kinds import at, coffee, earned, program, run

CROISSANT: Line = ("CROISSANT", "pastry", "1", "5.00")


def paid(*lines: Line, when: str = "2026-03-04 10:00", **fields: Any) -> Any:
    """A purchase (a Wednesday by default) with tender/channel fields as given."""
    return PurchaseEvent.model_validate(event_dict(
        list(lines) or [coffee()], occurred_at=at(when), **fields)).to_purchase()


# --- the event -------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"tender": "apple"},
     "tender: Input should be 'card', 'app', 'cash', 'gift_card' or 'points'"),
    ({"channel": "phone"}, "channel: Input should be 'store', 'web' or 'app'"),
    ({"tender": "APP"},
     "tender: Input should be 'card', 'app', 'cash', 'gift_card' or 'points'"),
    ({"tender": ""},
     "tender: Input should be 'card', 'app', 'cash', 'gift_card' or 'points'"),
])
def test_an_unknown_tender_or_channel_is_refused_naming_the_field(
        fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        PurchaseEvent.model_validate(event_dict([coffee()], **fields))
    assert describe_errors(info.value) == [message]


def test_tender_and_channel_are_kept_and_change_the_body_hash_only_when_sent() -> None:
    plain = PurchaseEvent.model_validate(event_dict([coffee()])).to_purchase()
    app = PurchaseEvent.model_validate(event_dict([coffee()], tender="app")).to_purchase()
    web = PurchaseEvent.model_validate(
        event_dict([coffee()], tender="app", channel="web")).to_purchase()
    assert (plain.tender, plain.channel) == (None, None)
    assert (web.tender, web.channel) == ("app", "web")
    # A purchase without them hashes as before they existed (the body tuple of the release
    # before them, written out below), so purchases stored then still replay.
    assert plain.body_hash == _hash_without_tender()
    assert len({plain.body_hash, app.body_hash, web.body_hash}) == 3


def _hash_without_tender() -> str:
    import hashlib

    from pydantic_core import to_json

    body = ("AMS-01", "T-1001", "M-42", "2026-03-14T08:30:00+00:00", "EUR", 1000,
            [("FLAT-WHITE", "coffee", 1000, 1000)])
    return hashlib.sha256(to_json(body)).hexdigest()


# --- conditions ------------------------------------------------------------------------------

APP_STARS = """\
- id: stars
  kind: points_per_spend
  points_per_unit: 1
  group: base
- id: app-stars
  kind: points_per_spend
  points_per_unit: 2
  when: {tenders: [app]}
  group: base
- id: web-or-app
  kind: fixed_bonus
  points: 5
  when: {channels: [web, app]}
- id: gift-card-spend
  kind: fixed_bonus
  points: 1
  when: 'purchase.tender == "gift_card" && purchase.channel == ""'
"""


@pytest.mark.parametrize(("fields", "expected"), [
    # 10.00 EUR: 1 star per euro, or 2 paid with the app (best of the group: not 3).
    ({}, {"stars": 10}),
    ({"tender": "card"}, {"stars": 10}),
    ({"tender": "app"}, {"app-stars": 20}),
    ({"tender": "app", "channel": "app"}, {"app-stars": 20, "web-or-app": 5}),
    ({"channel": "web"}, {"stars": 10, "web-or-app": 5}),
    ({"channel": "store"}, {"stars": 10}),
    # CEL sees '' for a channel not sent.
    ({"tender": "gift_card"}, {"stars": 10, "gift-card-spend": 1}),
    ({"tender": "gift_card", "channel": "store"}, {"stars": 10}),
])
def test_tenders_and_channels_in_conditions(fields: dict[str, str],
                                            expected: dict[str, int]) -> None:
    (evaluation,) = run(program(APP_STARS), [paid(**fields)])
    assert earned(evaluation) == expected


# --- multipliers that do not stack -----------------------------------------------------------

PROMOTIONS = """\
- id: per-euro
  kind: points_per_spend
  points_per_unit: 1
  multiplier_groups: {promotions: max}
  multipliers:
    - id: double-week
      when: {starts: 2026-03-02, ends: 2026-03-08}
      factor: 2
      group: promotions
    - id: app-triple
      when: {tenders: [app]}
      factor: 3
      group: promotions
    - id: pastry-boost
      when: {categories: [pastry]}
      factor: "2.5"
      group: promotions
    - id: tuesday
      when: {days: [tuesday]}
      factor: "1.5"
      excludes: [loyal-pastry]
    - id: loyal-pastry
      when: {categories: [pastry]}
      factor: 2
"""


@pytest.mark.parametrize(("lines", "when", "tender", "points", "boosts", "aside"), [
    # Wed 11 March, no promotion: 10.00 -> 10.
    ([coffee()], "2026-03-11 10:00", None, 10, None, None),
    # Wed 4 March, the double week: 10.00 x 2 = 20.
    ([coffee()], "2026-03-04 10:00", None, 20, {"double-week": "2"}, None),
    # The double week paid with the app: best of 2 and 3 is 3 (not 6): 30.
    ([coffee()], "2026-03-04 10:00", "app", 30, {"app-triple": "3"},
     {"double-week": "best of promotions: app-triple is larger"}),
    # Item-selecting: best of per line. Coffee 10.00 x 2 (double week) = 20; the croissant
    # 5.00 x max(2, 2.5) = 12.5 and x 2 (loyal-pastry, another group) = 25; 20 + 25 = 45.
    ([coffee(), CROISSANT], "2026-03-04 10:00", None, 45,
     {"double-week": "2", "loyal-pastry": "2", "pastry-boost": "2.5"}, None),
    # With the app: coffee 10 x 3 = 30; croissant 5 x max(2, 3, 2.5) = 15, x 2 = 30; 60.
    ([coffee(), CROISSANT], "2026-03-04 10:00", "app", 60,
     {"app-triple": "3", "loyal-pastry": "2"},
     {"double-week": "best of promotions: app-triple is larger",
      "pastry-boost": "best of promotions: app-triple is larger"}),
    # Tue 10 March: tuesday (1.5) excludes loyal-pastry. Coffee 10 x 1.5 = 15; croissant
    # 5 x 2.5 (pastry-boost) x 1.5 = 18.75, loyal-pastry excluded; 33.75 -> 33 (floor).
    ([coffee(), CROISSANT], "2026-03-10 10:00", None, 33,
     {"pastry-boost": "2.5", "tuesday": "1.5"}, {"loyal-pastry": "excluded by tuesday"}),
    # A Tuesday without pastry: loyal-pastry holds on no line, nothing is set aside.
    ([coffee()], "2026-03-10 10:00", None, 15, {"tuesday": "1.5"}, None),
])
def test_best_of_groups_and_exclusions(lines: list[Line], when: str, tender: str | None,
                                       points: int, boosts: dict[str, str] | None,
                                       aside: dict[str, str] | None) -> None:
    fields = {} if tender is None else {"tender": tender}
    (evaluation,) = run(program(PROMOTIONS), [paid(*lines, when=when, **fields)])
    (award,) = evaluation.awards
    assert (award.rule_id, award.points) == ("per-euro", points)
    assert award.reason.get("boosts") == boosts
    assert award.reason.get("set_aside") == aside


def test_a_group_left_to_multiply_stacks_as_without_groups() -> None:
    rules = PROMOTIONS.replace("{promotions: max}", "{promotions: multiply}")
    # Wed 4 March with the app, one coffee: 10.00 x 2 x 3 = 60, as multipliers always did.
    (evaluation,) = run(program(rules), [paid(when="2026-03-04 10:00", tender="app")])
    assert earned(evaluation) == {"per-euro": 60}


def test_equal_factors_in_a_best_of_group_count_the_first_listed() -> None:
    rules = PROMOTIONS.replace('factor: "2.5"', "factor: 3")
    # Wed 11 March with the app, a croissant: app-triple and pastry-boost are both 3; the
    # first listed counts; 5.00 x 3 x 2 (loyal-pastry) = 30.
    (evaluation,) = run(program(rules), [paid(CROISSANT, when="2026-03-11 10:00",
                                              tender="app")])
    (award,) = evaluation.awards
    assert award.points == 30
    assert award.reason["boosts"] == {"app-triple": "3", "loyal-pastry": "2"}
    assert award.reason["set_aside"] == {"pastry-boost": "best of promotions: app-triple "
                                                         "is larger"}


def test_an_excluded_multiplier_that_is_itself_excluded_excludes_nothing() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      multipliers:
        - {id: a, when: {days: [wednesday]}, factor: 2, excludes: [b]}
        - {id: b, when: {days: [wednesday]}, factor: 3, excludes: [c]}
        - {id: c, when: {days: [wednesday]}, factor: 5}
    """
    # a applies and excludes b, so b excludes nothing: c applies. 10 x 2 x 5 = 100.
    (evaluation,) = run(program(textwrap.dedent(rules)), [paid()])
    (award,) = evaluation.awards
    assert award.points == 100
    assert award.reason["set_aside"] == {"b": "excluded by a"}


# --- validation: refused -----------------------------------------------------------------------

HEAD = """\
program: cafe
name: Cafe
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


@pytest.mark.parametrize(("rule", "needle", "message"), [
    ("    when: {tenders: [apple]}\n", "apple",
     "rules[0].when.tenders[0]: Input should be 'card', 'app', 'cash', 'gift_card' or "
     "'points'"),
    ("    when: {channels: [store, phone]}\n", "phone",
     "rules[0].when.channels[1]: Input should be 'store', 'web' or 'app'"),
    ("    multipliers:\n      - {id: a, when: {channels: [kiosk]}, factor: 2}\n", "kiosk",
     "rules[0].multipliers[0].when.channels[0]: Input should be 'store', 'web' or 'app'"),
    ("    multipliers:\n      - {id: a, when: {days: [monday]}, factor: 2, excludes: [bb]}\n"
     "      - {id: b, when: {days: [monday]}, factor: 2}\n", "bb",
     "rules[0].multipliers[0].excludes[0]: unknown multiplier 'bb' (this rule's "
     "multipliers: a, b)"),
    ("    multipliers:\n      - {id: a, when: {days: [monday]}, factor: 2, excludes: [a]}\n",
     "[a]", "rules[0].multipliers[0].excludes[0]: multiplier 'a' cannot exclude itself"),
    ("    multipliers:\n      - {id: a, when: {days: [monday]}, factor: 2, excludes: [b]}\n"
     "      - {id: b, when: {days: [monday]}, factor: 2, excludes: [a]}\n", "[a]",
     "rules[0].multipliers[1].excludes[0]: exclusions go round in a circle (a excludes b, "
     "b excludes a), so which of them applies could not be decided; drop one of these "
     "exclusions"),
    ("    multipliers:\n      - {id: a, when: {days: [monday]}, factor: 2, excludes: [b]}\n"
     "      - {id: b, when: {days: [monday]}, factor: 2, excludes: [c]}\n"
     "      - {id: c, when: {days: [monday]}, factor: 2, excludes: [a]}\n", "[a]",
     "rules[0].multipliers[2].excludes[0]: exclusions go round in a circle (a excludes b, "
     "b excludes c, c excludes a), so which of them applies could not be decided; drop "
     "one of these exclusions"),
    ("    multiplier_groups: {promos: max}\n    multipliers:\n"
     "      - {id: a, when: {days: [monday]}, factor: 2, group: promotions}\n", "max}",
     "rules[0].multiplier_groups.promos: no multiplier of this rule is in group 'promos' "
     "(groups used: promotions)"),
    ("    multiplier_groups: {promotions: best}\n    multipliers:\n"
     "      - {id: a, when: {days: [monday]}, factor: 2, group: promotions}\n", "best",
     "rules[0].multiplier_groups.promotions: Input should be 'max' or 'multiply'"),
    ("    multipliers:\n      - {id: a, when: {days: [monday]}, factor: 2, group: g}\n"
     "      - {id: a, when: {days: [friday]}, factor: 2}\n", "friday",
     "rules[0].multipliers[1].id: multiplier id 'a' is used twice; give each multiplier its "
     "own id"),
])
def test_bad_tenders_channels_and_multipliers_are_refused_where_they_are(
        rule: str, needle: str, message: str) -> None:
    text = HEAD + rule
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text, "cafe.yaml")
    (problem,) = info.value.problems
    assert problem.message == message
    # On the line of the mistake (the last one holding the needle).
    lines = text.splitlines()
    line = max(n for n, t in enumerate(lines, start=1) if needle in t)
    assert problem.line == line, str(problem)
    assert str(problem).startswith(f"cafe.yaml:{line}:{problem.column}: ")


# --- validation: warned about -------------------------------------------------------------------

def _warnings(multipliers: str, extra: str = "    max_factor: 3\n") -> list[str]:
    loaded = load_program_text(HEAD + extra + "    multipliers:\n" + multipliers, "cafe.yaml")
    return [str(w) for w in loaded.warnings]


@pytest.mark.parametrize(("multipliers", "extra", "expected"), [
    # 2 x 2 = 4 > 3, all year: warned at max_factor (line 10, column 17).
    ("      - {id: a, when: {days: [monday]}, factor: 2}\n"
     "      - {id: b, when: {tenders: [app]}, factor: 2}\n", None,
     ["cafe.yaml:10:17: warning: rules[0].max_factor: multipliers a and b can apply "
      "together (their dates overlap and nothing excludes one of them) and multiply to 4, "
      "above max_factor 3; add `excludes:`, put them in a best-of group (multiplier_groups: "
      "max) or separate their dates if they should not"]),
    # Exactly 3 is not above it.
    ("      - {id: a, when: {days: [monday]}, factor: 2}\n"
     "      - {id: b, when: {tenders: [app]}, factor: 1.5}\n", None, []),
    # Windows that do not overlap.
    ("      - {id: a, when: {starts: 2026-03-01, ends: 2026-03-31}, factor: 2}\n"
     "      - {id: b, when: {starts: 2026-04-01}, factor: 2}\n", None, []),
    # Windows that share a day.
    ("      - {id: a, when: {starts: 2026-03-01, ends: 2026-03-31}, factor: 2}\n"
     "      - {id: b, when: {starts: 2026-03-31}, factor: 2}\n", None, ["and multiply to 4"]),
    # An exclusion separates them.
    ("      - {id: a, when: {days: [monday]}, factor: 2, excludes: [b]}\n"
     "      - {id: b, when: {tenders: [app]}, factor: 2}\n", None, []),
    # Different weekdays, different tenders or channels never meet.
    ("      - {id: a, when: {days: [monday]}, factor: 2}\n"
     "      - {id: b, when: {days: [friday]}, factor: 2}\n", None, []),
    ("      - {id: a, when: {tenders: [card]}, factor: 2}\n"
     "      - {id: b, when: {tenders: [app]}, factor: 2}\n", None, []),
    ("      - {id: a, when: {channels: [web]}, factor: 2}\n"
     "      - {id: b, when: {channels: [app, store]}, factor: 2}\n", None, []),
    # A best-of group counts one of them: max(2, 2.5) = 2.5.
    ("      - {id: a, when: {days: [monday]}, factor: 2, group: p}\n"
     "      - {id: b, when: {days: [monday]}, factor: 2.5, group: p}\n",
     "    max_factor: 3\n    multiplier_groups: {p: max}\n", []),
    # The largest set: a x c = 2 x 4 = 8 (a and b never meet; b x c = 6).
    ("      - {id: a, when: {days: [monday]}, factor: 2}\n"
     "      - {id: b, when: {days: [friday]}, factor: 1.5}\n"
     "      - {id: c, when: {categories: [pastry]}, factor: 4}\n", None,
     ["multipliers a and c can apply together", "multiply to 8, above max_factor 3"]),
    # Without max_factor nothing is said.
    ("      - {id: a, when: {days: [monday]}, factor: 5}\n"
     "      - {id: b, when: {days: [monday]}, factor: 5}\n", "", []),
])
def test_multipliers_beyond_max_factor_are_a_warning(multipliers: str, extra: str | None,
                                                      expected: list[str]) -> None:
    found = _warnings(multipliers, "    max_factor: 3\n" if extra is None else extra)
    if not expected:
        assert found == []
        return
    (warning,) = found
    if expected[0].startswith("cafe.yaml"):
        assert warning == expected[0]
    for fragment in expected:
        assert fragment in warning, warning


# --- the rules diff ----------------------------------------------------------------------------

def test_the_diff_describes_tenders_channels_and_multiplier_keys() -> None:
    before = load_program_text(HEAD + "    when: {tenders: [app]}\n    multipliers:\n"
                               "      - {id: a, when: {days: [monday]}, factor: 2}\n"
                               "      - {id: b, when: {days: [monday]}, factor: 3}\n")
    after = load_program_text(HEAD + "    when: {tenders: [app, card], channels: [web]}\n"
                              "    max_factor: 4\n    multiplier_groups: {p: max}\n"
                              "    multipliers:\n"
                              "      - {id: a, when: {days: [monday]}, factor: 2, group: p,"
                              " excludes: [b]}\n"
                              "      - {id: b, when: {days: [monday]}, factor: 3}\n")
    result = diff_programs(before.definition, after.definition)
    (entry,) = result.rules.changed
    described = {c.path: c.describe() for c in entry.changes}
    assert described == {
        "when.tenders": "added card",
        "when.channels": "added web",
        "multipliers[a].group": "(none) -> p",
        "multipliers[a].excludes": "added b",
        "multiplier_groups.p": "(none) -> max",
        "max_factor": "(none) -> 4",
    }


def test_the_new_keys_leave_the_content_hash_of_a_file_without_them_as_it_was() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "fixtures" / "rules" / "bean-there-basic.yaml"
    loaded = load_program_text(path.read_text(encoding="utf-8"), "bean-there-basic.yaml")
    # The hash the release before tenders, channels, multiplier groups, excludes and
    # max_factor gave this file (tests/e2e/test_cli_members.py pins the same prefix): a
    # stored program applied again after the upgrade is unchanged, not a new version.
    assert loaded.content_hash.startswith("88b5ccb0354d")
