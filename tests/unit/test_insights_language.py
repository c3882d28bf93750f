"""The program language's keys for measuring members (economics:, analytics:, segments:)
and the rules that act on members' insights: each key accepted and compiled to the values
worked out by hand, each mistake refused at file:line:col in plain words, the segment map's
coverage and overlaps, segments: in when:, the CEL context read from the snapshot in force
at the purchase, and the content hash of files that do not use them unchanged."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction

import pytest

from loyalty_engine.analytics.segments import DEFAULT_SEGMENTS, ScoreRange, SegmentMap
from loyalty_engine.domain.decisions import MemberView, Snapshot, Standing
from loyalty_engine.domain.ledger_reasons import describe_reason
from loyalty_engine.engine.earning import evaluate
from loyalty_engine.records.standing import StandingNeeds
from loyalty_engine.rules import ProgramFileError, load_program_text
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.compiled_insights import (
    ClvSettings,
    Economics,
    LapseRule,
    MatrixThresholds,
    ProgramInsights,
    RfmSettings,
)
from loyalty_engine.rules.diff import diff_programs
from loyalty_engine.rules.insights_schema import check_segment_map, cover, describe_box
from loyalty_engine.rules.values import LocatedValueError

from .builders import purchase
from .test_program_language import Bad, assert_refused_as


def text(sections: str = "", when: str = "", level: str = "") -> str:
    """A one-rule program with the given top-level sections and the rule's `when:`."""
    head = textwrap.dedent("""\
        program: corner-cafe
        name: Corner Cafe
        currency: EUR
        timezone: Europe/Amsterdam
        enrolment: open
        """)
    rule = "rules:\n  - id: bonus\n    kind: fixed_bonus\n    points: 50\n"
    if when:
        rule += f"    when: {when}\n"
    return head + level + textwrap.dedent(sections) + rule


EVERY_KEY = """\
economics:
  margin: {default: 35, categories: {coffee: 62.5, beans: 40}}
  point_value: "0.02"
  discount_rate: 12
analytics:
  rfm:
    boundaries:
      recency_days: [14, 30, 90, 180]
      frequency: [1, 3, 6, 12]
      monetary: ["25", "100.50", 250, "1000"]
    window_months: 24
  lapse: {p_alive_below: 0.25, gap_multiple: 2.5, default_gap_days: 60, min_repeat_members: 12}
  clv: {horizon_weeks: 104, min_repeat_members: 50}
  loyalty_matrix: {f_at_least: 3, wallet_share_at_least: 40, nps_at_least: 8,
                   commitment_at_least: 6}
segments:
  best: [{r: [4, 5], f: [4, 5]}]
  slipping: [{r: [1, 2], f: [4, 5]}, {r: 3, f: [4, 5], m: [1, 2]}]
  rest: [{f: [1, 3]}, {r: 3, f: [4, 5], m: [3, 5]}]
"""


def test_a_point_value_may_be_a_fraction_of_the_minor_unit() -> None:
    for written, exact in (('"0.005"', Decimal("0.005")), ('"0.000001"', Decimal("0.000001")),
                           ("0.0125", Decimal("0.0125"))):
        economics = load_program_text(text(f"economics:\n  point_value: {written}\n"),
                                      "cafe.yaml").compiled.insights.economics
        assert economics.point_value == exact and isinstance(economics.point_value, Decimal)


def test_every_new_key_is_accepted_and_compiled() -> None:
    insights = load_program_text(text(EVERY_KEY), "cafe.yaml").compiled.insights
    assert insights == ProgramInsights(
        economics=Economics(margin=Fraction(35, 100),
                            category_margins={"coffee": Fraction(625, 1000),
                                              "beans": Fraction(40, 100)},
                            point_value=Decimal("0.02"),
                            annual_discount_rate=Fraction(12, 100)),
        rfm=RfmSettings(recency_days=(14, 30, 90, 180), frequency=(1, 3, 6, 12),
                        monetary_minor=(2500, 10050, 25000, 100000), window_months=24),
        segments=SegmentMap((
            ("best", (ScoreRange((4, 5), (4, 5)),)),
            ("slipping", (ScoreRange((1, 2), (4, 5)), ScoreRange((3, 3), (4, 5), (1, 2)))),
            ("rest", (ScoreRange(f=(1, 3)), ScoreRange((3, 3), (4, 5), (3, 5)))))),
        lapse=LapseRule(p_alive_below=0.25, gap_multiple=2.5, default_gap_days=60,
                        min_repeat_members=12),
        clv=ClvSettings(horizon_weeks=104, min_repeat_members=50),
        matrix=MatrixThresholds(f_at_least=3, wallet_share_at_least=Fraction(2, 5),
                                nps_at_least=8, commitment_at_least=6))
    assert insights.economics.margin_of("coffee") == Fraction(5, 8)
    assert insights.economics.margin_of("tea") == Fraction(7, 20)
    assert insights.segments.segment_of(3, 5, 2) == "slipping"
    assert insights.segments.segment_of(3, 5, 3) == "rest"


def test_without_the_keys_the_defaults_apply() -> None:
    compiled = load_program_text(text()).compiled
    assert compiled.insights == ProgramInsights()
    assert compiled.insights.segments is DEFAULT_SEGMENTS
    # A plain margin is every category's; a file may leave any part out.
    plain = load_program_text(text("economics: {margin: 45}\nanalytics: {lapse: {}}\n"))
    assert plain.compiled.insights.economics == Economics(margin=Fraction(9, 20))


def test_the_new_keys_leave_the_hash_of_a_file_that_does_not_use_them() -> None:
    bare = load_program_text(text()).content_hash
    # Written out at their defaults they mean the same: the same hash.
    at_defaults = text("economics: {margin: 30, discount_rate: 10}\n"
                       "analytics: {rfm: {}, lapse: {gap_multiple: 3}, clv: {}}\n")
    assert load_program_text(at_defaults).content_hash == bare
    # The shorthands hash as their long forms.
    short = text("economics: {margin: 40}\nsegments:\n  all: [{r: 1}, {r: [2, 5]}]\n")
    long = text("economics: {margin: {default: 40}}\n"
                "segments:\n  all: [{r: [1, 1], f: [1, 5]}, {r: [2, 5], m: [1, 5]}]\n")
    assert load_program_text(short).content_hash == load_program_text(long).content_hash
    assert load_program_text(short).content_hash != bare
    assert load_program_text(text(EVERY_KEY)).content_hash != bare


BAD: dict[str, Bad] = {
    "margin above 100": Bad(
        text("economics:\n  margin: 120\n"), at="margin: 120", col="120",
        message="economics.margin.default: gross margin 120 % is above 100 %: it is a "
                "percentage, 0 to 100"),
    "category margin above 100": Bad(
        text("economics:\n  margin: {default: 30, categories: {coffee: 100.5}}\n"),
        at="coffee: 100.5", col="100.5",
        message="economics.margin.categories.coffee: gross margin 100.5 % is above 100 %: it "
                "is a percentage, 0 to 100"),
    "negative margin": Bad(
        text("economics:\n  margin: -5\n"), at="margin: -5", col="-5",
        message="economics.margin.default: gross margin -5 % is out of range: it is a "
                "percentage, 0 to 100"),
    "margin by category without a default": Bad(
        text("economics:\n  margin: {categories: {coffee: 50}}\n"), at="margin:",
        col="margin", message="economics.margin: missing required key 'default'"),
    "discount rate above 100": Bad(
        text("economics:\n  discount_rate: 101\n"), at="discount_rate", col="101",
        message="economics.discount_rate: discount_rate 101 % is above 100 %: it is a "
                "percentage, 0 to 100"),
    "point value zero": Bad(
        text("economics:\n  point_value: 0\n"), at="point_value", col="0",
        message="economics.point_value: Input should be greater than 0"),
    "point value below zero": Bad(
        text("economics:\n  point_value: -1\n"), at="point_value", col="-1",
        message="economics.point_value: Input should be greater than 0"),
    # A point is often worth a fraction of a cent (0.005 EUR: accepted, below); seven
    # decimal places is past what any program prices a point at.
    "point value finer than six places": Bad(
        text("economics:\n  point_value: \"0.0000001\"\n"), at="point_value",
        col='"0.0000001"',
        message="economics.point_value: point_value 0.0000001 has more than 6 decimal "
                "places"),
    "unknown economics key": Bad(
        text("economics:\n  margins: 30\n"), at="margins", col="margins",
        message="economics: unknown key 'margins'"),
    "three cut points": Bad(
        text("analytics:\n  rfm:\n    boundaries:\n      frequency: [1, 2, 3]\n"),
        at="frequency:", col="frequency",
        message="analytics.rfm.boundaries.frequency: List should have at least 4 items after "
                "validation, not 3"),
    "cut points not rising": Bad(
        text("analytics:\n  rfm:\n    boundaries:\n      recency_days: [30, 14, 90, 180]\n"),
        at="recency_days:", col="14",
        message="analytics.rfm.boundaries.recency_days[1]: recency_days cut points must rise: "
                "14 is not above 30 (four cut points make five scores)"),
    "monetary cut finer than the currency": Bad(
        text("analytics:\n  rfm:\n    boundaries:\n"
             "      monetary: [\"10\", \"20.005\", \"30\", \"40\"]\n"),
        at="monetary:", col='"20.005"',
        message="analytics.rfm.boundaries.monetary[1]: amount 20.005 has more decimals than "
                "EUR allows (2)"),
    "window of no months": Bad(
        text("analytics:\n  rfm: {window_months: 0}\n"), at="window_months", col="0}",
        message="analytics.rfm.window_months: Input should be greater than or equal to 1"),
    "p_alive threshold of 1": Bad(
        text("analytics:\n  lapse: {p_alive_below: 1}\n"), at="p_alive_below", col="1}",
        message="analytics.lapse.p_alive_below: Input should be less than 1"),
    "gap multiple of 1": Bad(
        text("analytics:\n  lapse: {gap_multiple: 1.0}\n"), at="gap_multiple", col="1.0",
        message="analytics.lapse.gap_multiple: Input should be greater than 1"),
    "horizon of no weeks": Bad(
        text("analytics:\n  clv: {horizon_weeks: 0}\n"), at="horizon_weeks", col="0}",
        message="analytics.clv.horizon_weeks: Input should be greater than or equal to 1"),
    "f score threshold of 6": Bad(
        text("analytics:\n  loyalty_matrix: {f_at_least: 6}\n"), at="f_at_least",
        col="6}",
        message="analytics.loyalty_matrix.f_at_least: Input should be less than or equal "
                "to 5"),
    "nps threshold of 11": Bad(
        text("analytics:\n  loyalty_matrix: {nps_at_least: 11}\n"), at="nps_at_least",
        col="11",
        message="analytics.loyalty_matrix.nps_at_least: Input should be less than or equal "
                "to 10"),
    "commitment threshold of 0": Bad(
        text("analytics:\n  loyalty_matrix: {commitment_at_least: 0}\n"),
        at="commitment_at_least", col="0}",
        message="analytics.loyalty_matrix.commitment_at_least: Input should be greater than "
                "or equal to 1"),
    "wallet share of 0": Bad(
        text("analytics:\n  loyalty_matrix: {wallet_share_at_least: 0}\n"),
        at="wallet_share_at_least", col="0}",
        message="analytics.loyalty_matrix.wallet_share_at_least: wallet_share_at_least 0 % is "
                "out of range: it is a percentage, above 0 to 100"),
    "score of 6": Bad(
        text("segments:\n  everyone: [{r: [1, 6]}]\n"), at="everyone", col="6",
        message="segments.everyone[0].r[1]: score 6 is out of range: R, F and M scores are 1 "
                "to 5"),
    "score of 0": Bad(
        text("segments:\n  everyone: [{m: 0}]\n"), at="everyone", col="0",
        message="segments.everyone[0].m: score 0 is out of range: R, F and M scores are 1 "
                "to 5"),
    "range the wrong way round": Bad(
        text("segments:\n  everyone: [{f: [5, 1]}]\n"), at="everyone", col="f:",
        message="segments.everyone[0].f: f [5, 1] holds no score: the lower score comes "
                "first ([1, 5])"),
    "a segment without boxes": Bad(
        text("segments:\n  everyone: [{}]\n  nobody: []\n"), at="nobody", col="nobody",
        message="segments.nobody: List should have at least 1 item after validation, not 0"),
    "a bad segment name": Bad(
        text("segments:\n  At Risk: [{}]\n"), at="At Risk", col="At Risk",
        message="segments.At Risk: segment name 'At Risk' is not an id: lower-case letters, "
                "digits, '_', '.' and '-', starting with a letter or digit, at most 64 (e.g. "
                "at_risk)"),
    "an unknown score key": Bad(
        text("segments:\n  everyone: [{x: 1}]\n"), at="everyone", col="x:",
        message="segments.everyone[0]: unknown key 'x'"),
    "overlapping segments": Bad(
        text("segments:\n  recent: [{r: [4, 5]}]\n"
             "  others: [{r: [1, 2]}, {r: [3, 4], f: [2, 3]}, {r: 3}]\n"),
        at="others", col="{r: [3, 4]",
        message="segments.others[1]: this box of segment 'others' overlaps segment 'recent' "
                "in 10 cells (e.g. r 4, f 2, m 1): each cell must be in exactly one segment; "
                "narrow one of them"),
    "cells in no segment": Bad(
        text("segments:\n  recent: [{r: [4, 5]}]\n  lapsed: [{r: 1}, {r: [2, 3], f: 1}]\n"
             "  middle: [{r: [2, 3], f: [2, 4], m: [1, 4]}]\n"),
        at="segments:", col="segments",
        # r 2-3 at m 5 for f 2-4 (6 cells) and at every m for f 5 (10): the first box
        # grows from (2, 2, 5) along f to 5 and r to 3, the second takes f 5 at m 1-4.
        message="segments: 16 of the 125 score cells are in no segment: {r: [2, 3], f: [2, 5], "
                "m: 5}, {r: [2, 3], f: 5, m: [1, 4]}; each cell must be in exactly one "
                "segment"),
    "an unknown segment in when": Bad(
        text(EVERY_KEY, when="{segments: [best, at_risk]}"), at="when:", col="at_risk",
        message="rules[0].when.segments[1]: unknown segment 'at_risk' (the program's "
                "segments: best, slipping, rest)"),
    "an unknown segment of the default map": Bad(
        text(when="{segments: [at-risk]}"), at="when:", col="at-risk",
        message="rules[0].when.segments[0]: unknown segment 'at-risk' (the default map's "
                "segments (the file declares no segments:): champions, loyal, "
                "potential_loyalists, new, promising, need_attention, about_to_sleep, at_risk, "
                "cant_lose, hibernating, lost)"),
    "clv in an expression without a level": Bad(
        text(when="\"member.clv > 100\""), at="when:", col='"member',
        prefix="rules[0].when.expression: CEL: at 1:7: member.clv says no unit: add "
               "`language: 2`", contains=("member.clv_minor >= 5000",)),
    "p_alive against a whole number": Bad(
        text(when="\"member.p_alive < 1\""), at="when:", col='"member',
        prefix="rules[0].when.expression: CEL: at 1:16: found no matching overload for '_<_' "
               "applied to '(double, int)'", contains=("50.0",)),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_insight_key_is_refused_at_the_mistake(name: str) -> None:
    problem = assert_refused_as(BAD[name])
    assert str(problem).startswith(f"cafe.yaml:{problem.line}:{problem.column}: ")


def test_the_default_map_puts_every_cell_in_exactly_one_segment() -> None:
    check_segment_map(DEFAULT_SEGMENTS)
    cells = [(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)]
    owners = {cell: [n for n, boxes in DEFAULT_SEGMENTS.segments
                     if any(b.holds(*cell) for b in boxes)] for cell in cells}
    assert all(len(names) == 1 for names in owners.values())
    # The R x F grid of the shipped map, row r = 5 at the top, f = 1 ... 5 left to right.
    grid = {5: ["new", "potential_loyalists", "potential_loyalists", "champions", "champions"],
            4: ["promising", "potential_loyalists", "potential_loyalists", "loyal", "loyal"],
            3: ["about_to_sleep", "about_to_sleep", "need_attention", "loyal", "loyal"],
            2: ["hibernating", "hibernating", "at_risk", "at_risk", "cant_lose"],
            1: ["lost", "hibernating", "at_risk", "at_risk", "cant_lose"]}
    for r, row in grid.items():
        for f, name in enumerate(row, start=1):
            assert {DEFAULT_SEGMENTS.segment_of(r, f, m) for m in range(1, 6)} == {name}


def test_an_overlap_within_one_segment_is_no_overlap() -> None:
    load_program_text(text("segments:\n  a: [{r: [1, 3]}, {r: [2, 5]}]\n"))


def test_a_map_check_names_the_segment_and_box_it_refuses() -> None:
    clash = SegmentMap((("a", (ScoreRange(),)), ("b", (ScoreRange(r=(5, 5), m=(5, 5)),))))
    with pytest.raises(LocatedValueError) as info:
        check_segment_map(clash)
    assert info.value.where == ("b", 0)
    assert "overlaps segment 'a' in 5 cells (e.g. r 5, f 1, m 5)" in str(info.value)


@pytest.mark.parametrize(("cells", "boxes"), [
    # Everything: one box, written as the whole grid.
    ({(r, f, m) for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)},
     ["every cell"]),
    ({(1, 1, 1)}, ["{r: 1, f: 1, m: 1}"]),
    # An R x F column with m free, and a lone cell elsewhere.
    ({(r, 2, m) for r in (1, 2) for m in range(1, 6)} | {(5, 5, 5)},
     ["{r: [1, 2], f: 2}", "{r: 5, f: 5, m: 5}"]),
    # An L shape: two boxes.
    ({(1, f, 1) for f in range(1, 6)} | {(r, 1, 1) for r in range(1, 6)},
     ["{r: 1, m: 1}", "{r: [2, 5], f: 1, m: 1}"]),
])
def test_uncovered_cells_are_named_as_few_boxes(cells: set[tuple[int, int, int]],
                                                boxes: list[str]) -> None:
    found = cover(cells)
    assert [describe_box(b) for b in found] == boxes
    assert {c for b in found for c in b.cells()} == cells


def test_segment_comparisons_with_no_segment_of_the_map_warn() -> None:
    loaded = load_program_text(text(when="\"member.segment == 'student' || "
                                         "member.segment in ['at_risk', 'vip']\""), "cafe.yaml")
    assert [(w.line, w.column) for w in loaded.warnings] == [(10, 11), (10, 11)]
    assert [w.message for w in loaded.warnings] == [
        f"warning: rules[0].when.expression: member.segment is the member's RFM segment (of "
        f"the snapshot in force at the purchase) and {name!r} is no segment of the default "
        f"map (champions, loyal, potential_loyalists, new, promising, need_attention, "
        f"about_to_sleep, at_risk, cant_lose, hibernating, lost), so this comparison never "
        f"matches; for the member's `segment` attribute write has(member.attributes.segment) "
        f"&& member.attributes.segment == {name!r}" for name in ("student", "vip")]
    # Names of the map, and the empty segment of a member without a snapshot, do not warn.
    quiet = load_program_text(text(when="\"member.segment == 'lost' || member.segment == ''\""))
    assert quiet.warnings == ()


# --- CEL and segments: in when -----------------------------------------------------------

AT_RISK = Snapshot(datetime(2026, 3, 2, 4, 0, tzinfo=UTC), date(2026, 3, 2), 2, 3, 4,
                   "at_risk", 12345, 0.42)
EARLIER = Snapshot(datetime(2026, 2, 2, 4, 0, tzinfo=UTC), date(2026, 2, 2), 4, 2, 2,
                   "potential_loyalists", None, None)


def member(*snapshots: Snapshot, enrolled_on: date | None = None) -> MemberView:
    view = MemberView("M-1", {"segment": "student"})
    view.standings["corner-cafe"] = Standing(snapshots=list(snapshots),
                                             enrolled_on=enrolled_on)
    return view


def earns(compiled: CompiledProgram, view: MemberView | None, when: str) -> bool:
    bought = purchase([("LATTE", "coffee", "1", "4.00")], occurred_at=when)
    return bool(evaluate(compiled, bought, view, {}).awards)


@pytest.mark.parametrize(("expression", "when", "expected"), [
    # The snapshot in force: taken at or before the purchase (04:00 UTC is 05:00 local).
    ("member.segment == 'at_risk'", "2026-03-02T05:00:00+01:00", True),
    ("member.segment == 'at_risk'", "2026-03-02T04:59:59+01:00", False),
    ("member.segment == 'potential_loyalists'", "2026-03-02T04:59:59+01:00", True),
    ("member.segment == ''", "2026-02-02T04:59:59+01:00", True),  # before any snapshot
    ("member.rfm.r == 2 && member.rfm.f == 3 && member.rfm.m == 4",
     "2026-03-10T09:00:00+01:00", True),
    ("member.rfm.r == 0 && member.rfm.f == 0 && member.rfm.m == 0",
     "2026-01-10T09:00:00+01:00", True),
    ("member.clv_minor == 12345", "2026-03-10T09:00:00+01:00", True),
    ("member.clv_minor == 0", "2026-02-10T09:00:00+01:00", True),  # a snapshot without CLV
    ("member.p_alive == 0.42", "2026-03-10T09:00:00+01:00", True),
    ("member.p_alive == -1.0", "2026-02-10T09:00:00+01:00", True),  # no figure
    ("member.p_alive == -1.0", "2026-01-10T09:00:00+01:00", True),  # no snapshot
    # Enrolled 1 March 2025 (local): 365 days to 1 March 2026, 0 on the day itself.
    ("member.tenure_days == 365", "2026-03-01T23:30:00+01:00", True),
    ("member.tenure_days == 366", "2026-03-01T23:30:00+00:00", True),  # 2 March local
    ("member.tenure_days == 0", "2025-03-01T09:00:00+01:00", True),
    ("member.tenure_days == 0", "2025-02-01T09:00:00+01:00", True),  # before the enrolment
])
def test_cel_reads_the_snapshot_in_force_and_the_tenure(expression: str, when: str,
                                                        expected: bool) -> None:
    compiled = load_program_text(text(when=f'"{expression}"')).compiled
    view = member(EARLIER, AT_RISK, enrolled_on=date(2025, 3, 1))
    assert earns(compiled, view, when) is expected


@pytest.mark.parametrize(("level", "expression"), [
    ("language: 2\n", "member.clv == 123.45"),
    ("language: 1\n", "member.clv == 12345"),
])
def test_clv_is_an_amount_at_the_files_level(level: str, expression: str) -> None:
    compiled = load_program_text(text(when=f'"{expression}"', level=level)).compiled
    assert earns(compiled, member(AT_RISK), "2026-03-10T09:00:00+01:00")


def test_an_anonymous_purchase_has_no_insights() -> None:
    compiled = load_program_text(text(
        when="\"member.segment == '' && member.rfm.r == 0 && member.p_alive == -1.0 "
             "&& member.tenure_days == 0 && member.clv_minor == 0\"")).compiled
    assert earns(compiled, None, "2026-03-10T09:00:00+01:00")


def test_a_member_new_to_the_program_has_no_tenure_yet() -> None:
    compiled = load_program_text(text(when="\"member.tenure_days == 0\"")).compiled
    view = MemberView("M-9")
    assert earns(compiled, view, "2026-03-10T09:00:00+01:00")
    # Enrolled by that purchase (an open program): a later one counts from its day.
    later = load_program_text(text(when="\"member.tenure_days == 5\"")).compiled
    assert earns(later, view, "2026-03-15T09:00:00+01:00")


def test_segments_in_when_and_the_reason_they_give() -> None:
    compiled = load_program_text(text(when="{segments: [at_risk, cant_lose]}")).compiled
    view = member(EARLIER, AT_RISK)
    bought = purchase([("LATTE", "coffee", "1", "4.00")], occurred_at="2026-03-10T09:00:00Z")
    (award,) = evaluate(compiled, bought, view, {}).awards
    assert award.reason["because"] == {"segment": "at_risk", "segment_as_of": "2026-03-02"}
    assert describe_reason("earn", award.reason, "EUR") == (
        "because segment at_risk (RFM snapshot of 2026-03-02)")
    before = purchase([("LATTE", "coffee", "1", "4.00")], occurred_at="2026-03-01T09:00:00Z")
    assert evaluate(compiled, before, view, {}).awards == []  # potential_loyalists then
    assert evaluate(compiled, before, None, {}).awards == []


def test_an_expression_reading_the_segment_records_it_and_one_without_does_not() -> None:
    rules = load_program_text(textwrap.dedent("""\
        program: corner-cafe
        name: Corner Cafe
        currency: EUR
        timezone: Europe/Amsterdam
        enrolment: open
        rules:
          - id: newcomers
            kind: fixed_bonus
            points: 5
            when: "member.segment == ''"
          - id: per-euro
            kind: points_per_spend
            points_per_unit: 1
            multipliers:
              - id: winback
                when: "member.p_alive >= 0.0 && member.p_alive < 0.5"
                factor: 3
              - id: mornings
                when: "local.hour < 11"
                factor: 2
        """)).compiled
    bought = purchase([("LATTE", "coffee", "1", "4.00")], occurred_at="2026-03-10T15:00:00Z")
    reasons = {a.rule_id: a.reason for a in evaluate(rules, bought, member(AT_RISK), {}).awards}
    # 4 EUR x 1 x 3 (P(alive) 0.42): 12 points, owed to the at-risk snapshot.
    assert reasons["per-euro"]["boosts"] == {"winback": "3"}
    assert reasons["per-euro"]["because"] == {"segment": "at_risk",
                                              "segment_as_of": "2026-03-02"}
    none = {a.rule_id: a.reason for a in evaluate(rules, bought, member(), {}).awards}
    assert none["newcomers"]["because"] == {"segment": ""}
    assert describe_reason("earn", none["newcomers"], "EUR") == (
        "because no segment (no RFM snapshot yet)")
    assert "because" not in none["per-euro"]  # only the morning boost could count: none did
    early = purchase([("LATTE", "coffee", "1", "4.00")], occurred_at="2026-03-10T08:00:00Z")
    morning = {a.rule_id: a.reason for a in evaluate(rules, early, member(), {}).awards}
    assert morning["per-euro"]["boosts"] == {"mornings": "2"}
    assert "because" not in morning["per-euro"]


def test_only_programs_that_read_insights_load_them() -> None:
    plain = load_program_text(text(when="\"member.attributes.size() > 0\"")).compiled
    assert not plain.reads_insights and not plain.reads_tenure
    assert StandingNeeds.of([plain]) == StandingNeeds()
    assert not StandingNeeds.of([plain]).any
    by_segment = load_program_text(text(when="{segments: [lost]}")).compiled
    by_rfm = load_program_text(text(when="\"member.rfm.f >= 4\"")).compiled
    by_tenure = load_program_text(text(when="\"member.tenure_days > 30\"")).compiled
    assert StandingNeeds.of([by_segment]) == StandingNeeds(insights=True)
    assert StandingNeeds.of([by_rfm]) == StandingNeeds(insights=True)
    assert StandingNeeds.of([by_tenure]) == StandingNeeds(tenure=True)
    # A string that merely says member.segment reads nothing.
    quoted = load_program_text(text(when="\"'member.segment' != local.date\"")).compiled
    assert not quoted.reads_insights


def test_a_stored_snapshot_list_finds_the_one_in_force() -> None:
    standing = Standing(snapshots=[EARLIER, AT_RISK])
    assert standing.snapshot_at(datetime(2026, 2, 2, 3, 59, tzinfo=UTC)) is None
    assert standing.snapshot_at(EARLIER.taken_at) == EARLIER
    assert standing.snapshot_at(datetime(2026, 3, 2, 3, 59, tzinfo=UTC)) == EARLIER
    assert standing.snapshot_at(AT_RISK.taken_at) == AT_RISK
    assert standing.snapshot_at(datetime(2027, 1, 1, tzinfo=UTC)) == AT_RISK


def test_the_diff_shows_changes_to_the_insight_keys() -> None:
    old = load_program_text(text()).definition
    new = load_program_text(text(
        "economics: {margin: {default: 30, categories: {coffee: 60}}, discount_rate: 8}\n"
        "analytics: {lapse: {gap_multiple: 2}}\n"
        "segments:\n  recent: [{r: [4, 5]}]\n  earlier: [{r: [1, 3]}]\n")).definition
    changes = {c.path: c.describe() for c in diff_programs(old, new).settings}
    assert changes["economics.margin.categories.coffee"] == "(none) -> 60"
    assert changes["economics.discount_rate"] == "10 -> 8"
    assert changes["analytics.lapse.gap_multiple"] == "3 -> 2"
    assert changes["segments.champions"] == 'removed "{r: 5, f: [4, 5]}"'
    assert changes["segments.recent"] == 'added "{r: [4, 5]}"'
    assert diff_programs(old, load_program_text(text()).definition).identical


def test_every_problem_of_the_insight_keys_is_reported_at_once() -> None:
    with pytest.raises(ProgramFileError) as info:
        load_program_text(text("economics: {margin: 101}\nanalytics: {clv: {horizon_weeks: 0}}\n"),
                          "cafe.yaml")
    assert [p.message.split(":")[0] for p in info.value.problems] == [
        "economics.margin.default", "analytics.clv.horizon_weeks"]
