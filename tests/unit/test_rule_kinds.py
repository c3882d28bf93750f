"""Every rule kind under the pure engine: what a member earns, purchase by purchase.

Programs are built from small YAML texts through the real loader; times are written in
program time (Europe/Amsterdam) unless an explicit UTC instant is the point of the test.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest

from loyalty_engine.domain.decisions import Evaluation, IssueVoucher, MemberView, Standing
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.engine.earning import Progress, RuleFailed, evaluate
from loyalty_engine.rules import CompiledProgram, load_program_text
from loyalty_engine.rules.compiled import StampCard
from loyalty_engine.rules.expressions import stored_programs

from .builders import Line, purchase

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
MEMBER = MemberView("M-42")

HEAD = """\
program: test-program
name: Test Program
currency: EUR
timezone: Europe/Amsterdam
enrolment: open
exclude:
  categories: [tobacco]
  skus: [DEPOSIT-BOTTLE]
rewards:
  - id: free-coffee
    name: A free coffee
    kind: free_item
    category: coffee
"""


def program_text(rules: str, extra: str = "") -> str:
    return HEAD + textwrap.dedent(extra) + "rules:\n" + textwrap.indent(
        textwrap.dedent(rules), "  ")


@lru_cache(maxsize=128)
def program(rules: str, extra: str = "") -> CompiledProgram:
    """A compiled program with these rules (a YAML list) and extra top-level sections."""
    return load_program_text(program_text(rules, extra), "test.yaml").compiled


def stored_program(rules: str) -> CompiledProgram:
    """A program as an earlier release stored it: validation then let an unguarded
    attribute through, which fails at evaluation (new files are refused, see
    test_program_language.py)."""
    with stored_programs():
        return program(rules)


_transactions = itertools.count(1)


# A ladder the tier conditions can name; thresholds too high for the tests' purchases to
# change anyone's tier.
LADDER = """\
tiers:
  measure: spend
  window: calendar_year
  downgrade: qualified
  levels:
    - {id: silver, threshold: 100000}
    - {id: gold, threshold: 200000}
    - {id: platinum, threshold: 300000}
"""


def holding(tier: str, member_id: str = "M-1") -> MemberView:
    """A member who holds a tier of test-program."""
    return MemberView(member_id, standings={
        "test-program": Standing(tier=tier, has_tier_row=True)})


def at(local: str) -> str:
    """An instant given as a wall-clock time in program time, with its UTC offset."""
    return datetime.fromisoformat(local).replace(tzinfo=AMSTERDAM).isoformat()


def coffee(price: str = "10.00", quantity: str = "1") -> Line:
    return ("FLAT-WHITE", "coffee", quantity, price)


def buy(*lines: Line, when: str = "2026-03-04 10:00", store: str = "AMS-01",
        instant: str | None = None, member: str | None = "M-42") -> Purchase:
    """A purchase at a local time (or at an explicit instant)."""
    return purchase(list(lines) or [coffee()], occurred_at=instant or at(when),
                    store_id=store, member_id=member,
                    transaction_id=f"T-{next(_transactions)}")


def earned(evaluation: Evaluation) -> dict[str, int]:
    """Points per rule id."""
    return {award.rule_id: award.points for award in evaluation.awards}


def run(compiled: CompiledProgram, purchases: Sequence[Purchase],
        progress: Progress | None = None,
        member: MemberView | None = MEMBER) -> list[Evaluation]:
    """Evaluate purchases one after the other for one member."""
    progress = {} if progress is None else progress
    return [evaluate(compiled, p, member, progress) for p in purchases]


# --- points_per_spend with multipliers -------------------------------------------------------

MULTIPLIED = """\
- id: per-euro
  kind: points_per_spend
  points_per_unit: 1
  multipliers:
    - id: double-tuesday
      when: {days: [tuesday]}
      factor: 2
    - id: airport
      when: {stores: [SCHIPHOL-1]}
      factor: 3
    - id: pastry-boost
      when: {categories: [pastry]}
      factor: 4
"""

CROISSANT: Line = ("CROISSANT", "pastry", "1", "5.00")
CIGARS: Line = ("CIGARS", "tobacco", "1", "20.00")


@pytest.mark.parametrize(
    ("lines", "when", "store", "points", "boosts"),
    [
        ([coffee()], "2026-03-04 10:00", "AMS-01", 10, None),  # a Wednesday
        ([coffee()], "2026-03-03 10:00", "AMS-01", 20, {"double-tuesday": "2"}),
        ([coffee()], "2026-03-03 00:30", "AMS-01", 20, {"double-tuesday": "2"}),
        ([coffee()], "2026-03-03 23:59", "AMS-01", 20, {"double-tuesday": "2"}),
        ([coffee()], "2026-03-04 00:00", "AMS-01", 10, None),
        ([coffee()], "2026-03-04 10:00", "SCHIPHOL-1", 30, {"airport": "3"}),
        ([coffee()], "2026-03-04 10:00", "SCHIPHOL-2", 10, None),  # store ids are exact
        # Category-scoped: only the pastry is boosted.
        ([coffee(), CROISSANT], "2026-03-04 10:00", "AMS-01", 10 + 20, {"pastry-boost": "4"}),
        # Two multipliers multiply.
        ([coffee()], "2026-03-03 10:00", "SCHIPHOL-1", 60,
         {"airport": "3", "double-tuesday": "2"}),
        ([coffee(), CROISSANT], "2026-03-03 10:00", "AMS-01", 20 + 40,
         {"double-tuesday": "2", "pastry-boost": "4"}),
        ([coffee(), CROISSANT], "2026-03-03 10:00", "SCHIPHOL-1", 60 + 120,
         {"airport": "3", "double-tuesday": "2", "pastry-boost": "4"}),
        # Excluded items are not boosted into points.
        ([coffee(), CIGARS], "2026-03-03 10:00", "AMS-01", 20, {"double-tuesday": "2"}),
    ],
)
def test_points_per_spend_multipliers(lines: list[Line], when: str, store: str, points: int,
                                      boosts: dict[str, str] | None) -> None:
    (evaluation,) = run(program(MULTIPLIED), [buy(*lines, when=when, store=store)])
    (award,) = evaluation.awards
    assert (award.rule_id, award.points) == ("per-euro", points)
    assert award.reason.get("boosts") == boosts


def test_weekday_multiplier_uses_the_local_date_not_utc() -> None:
    compiled = program(MULTIPLIED)
    # 23:30 UTC on Monday 2 March is 00:30 on Tuesday in Amsterdam: double.
    (monday_utc,) = run(compiled, [buy(instant="2026-03-02T23:30:00+00:00")])
    # 23:30 UTC on Tuesday 3 March is already Wednesday in Amsterdam: single.
    (tuesday_utc,) = run(compiled, [buy(instant="2026-03-03T23:30:00+00:00")])
    assert earned(monday_utc) == {"per-euro": 20}
    assert earned(tuesday_utc) == {"per-euro": 10}


def test_fractional_multipliers_multiply_exactly_before_rounding() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      multipliers:
        - id: one-and-a-half
          when: {days: [wednesday]}
          factor: "1.5"
        - id: two-thirds-off-on-pastry
          when: {categories: [pastry]}
          factor: "0.5"
    """
    # 3.33 x 1.5 = 4.995 (floor 4); the pastry 5.00 x 1.5 x 0.5 = 3.75; together 8.745 -> 8.
    (evaluation,) = run(program(rules), [buy(coffee("3.33"), CROISSANT)])
    assert earned(evaluation) == {"per-euro": 8}


DATED = """\
- id: per-euro
  kind: points_per_spend
  points_per_unit: 1
  multipliers:
    - id: spring
      when: {starts: 2026-04-01, ends: 2026-04-30}
      factor: 2
"""


@pytest.mark.parametrize(
    ("moment", "points"),
    [
        (at("2026-03-31 23:59"), 10),
        (at("2026-04-01 00:00"), 20),  # starts is inclusive, in program time
        ("2026-03-31T22:30:00+00:00", 20),  # 00:30 on 1 April in Amsterdam
        (at("2026-04-30 23:59"), 20),  # ends is inclusive
        ("2026-04-30T22:30:00+00:00", 10),  # already 1 May in Amsterdam
        (at("2026-05-01 00:00"), 10),
    ],
)
def test_date_window_multiplier_is_inclusive_in_program_time(moment: str, points: int) -> None:
    (evaluation,) = run(program(DATED), [buy(instant=moment)])
    assert earned(evaluation) == {"per-euro": points}


def test_store_prefix_in_a_condition_is_refused_or_matches() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      multipliers:
        - id: amsterdam
          when: {stores: ["AMS-*"]}
          factor: 2
    """
    compiled = program(rules)  # if refused at load, the loader raises and this passes
    (evaluation,) = run(compiled, [buy(store="AMS-01")])
    assert earned(evaluation) == {"per-euro": 20}


# --- fixed_bonus with a CEL condition --------------------------------------------------------

EARLY_VIP = """\
- id: early-vip
  kind: fixed_bonus
  points: 25
  when: "'vip' in member.attributes && member.attributes.vip == true && local.hour < 10"
"""


@pytest.mark.parametrize(
    ("member", "moment", "points"),
    [
        (MemberView("M-1", {"vip": True}), at("2026-03-04 09:59"), 25),
        (MemberView("M-1", {"vip": True}), at("2026-03-04 10:00"), None),
        (MemberView("M-1", {"vip": True}), at("2026-03-04 00:00"), 25),
        (MemberView("M-1", {"vip": False}), at("2026-03-04 08:00"), None),
        (MemberView("M-1", {}), at("2026-03-04 08:00"), None),
        (MemberView("M-1", {"segment": "student"}), at("2026-03-04 08:00"), None),
        (None, at("2026-03-04 08:00"), None),  # anonymous: no attributes
        # local.hour is program time: 07:30 UTC in summer is 09:30 in Amsterdam ...
        (MemberView("M-1", {"vip": True}), "2026-07-01T07:30:00+00:00", 25),
        # ... and 08:30 UTC is 10:30.
        (MemberView("M-1", {"vip": True}), "2026-07-01T08:30:00+00:00", None),
        # In winter, 08:30 UTC is 09:30.
        (MemberView("M-1", {"vip": True}), "2026-01-15T08:30:00+00:00", 25),
    ],
)
def test_fixed_bonus_with_a_cel_condition(member: MemberView | None, moment: str,
                                          points: int | None) -> None:
    (evaluation,) = run(program(EARLY_VIP), [buy(instant=moment)], member=member)
    assert earned(evaluation).get("early-vip") == points
    assert evaluation.progress == []  # a plain bonus keeps no counters


def test_fixed_bonus_is_awarded_once_per_purchase_whatever_the_basket() -> None:
    rules = """\
    - id: big-basket
      kind: fixed_bonus
      points: 40
      when: "purchase.eligible_spend_minor >= 5000"
    """
    evaluations = run(program(rules), [
        buy(coffee("50.00")),
        buy(coffee("10.00", quantity="5")),
        buy(coffee("49.99")),
        buy(coffee("30.00"), CIGARS),  # cigars are excluded: 30 eligible
    ])
    assert [earned(e) for e in evaluations] == [
        {"big-basket": 40}, {"big-basket": 40}, {}, {}]


def test_tier_condition() -> None:
    rules = """\
    - id: gold-bonus
      kind: fixed_bonus
      points: 15
      when: {tiers: [gold, platinum]}
    """
    compiled = program(rules, LADDER)
    results = [earned(run(compiled, [buy()], member=m)[0]) for m in (
        holding("gold"), holding("silver"), MemberView("M-1"), None)]
    assert results == [{"gold-bonus": 15}, {}, {}, {}]


# --- nth_visit -------------------------------------------------------------------------------

FIFTH_VISIT = """\
- id: fifth-visit
  kind: nth_visit
  visit: 5
  period: month
  points: 100
  when: {min_spend: "5.00"}
"""


@pytest.mark.parametrize(
    ("visits", "expected"),
    [
        # (local time, price) -> points per visit
        ([(f"2026-03-0{d} 10:00", "10.00") for d in range(1, 8)],
         [0, 0, 0, 0, 100, 0, 0]),
        # A new month starts counting again.
        ([(f"2026-03-0{d} 10:00", "10.00") for d in range(1, 6)]
         + [(f"2026-04-0{d} 10:00", "10.00") for d in range(1, 6)],
         [0, 0, 0, 0, 100, 0, 0, 0, 0, 100]),
        # Visits that fail the condition do not count.
        ([("2026-03-01 10:00", "10.00"), ("2026-03-02 10:00", "4.99"),
          ("2026-03-03 10:00", "10.00"), ("2026-03-04 10:00", "10.00"),
          ("2026-03-05 10:00", "2.00"), ("2026-03-06 10:00", "10.00"),
          ("2026-03-07 10:00", "5.00")],
         [0, 0, 0, 0, 0, 0, 100]),
        # Several visits on one day are several visits.
        ([("2026-03-14 09:00", "10.00")] * 5, [0, 0, 0, 0, 100]),
        # The month is the month in program time: 31 March 23:30 local is still March.
        ([("2026-03-28 10:00", "10.00"), ("2026-03-29 10:00", "10.00"),
          ("2026-03-30 10:00", "10.00"), ("2026-03-31 10:00", "10.00"),
          ("2026-03-31 23:30", "10.00"), ("2026-04-01 00:30", "10.00")],
         [0, 0, 0, 0, 100, 0]),
    ],
    ids=["fifth earns once", "new month restarts", "failing visits do not count",
         "same day", "month in program time"],
)
def test_nth_visit(visits: list[tuple[str, str]], expected: list[int]) -> None:
    evaluations = run(program(FIFTH_VISIT), [buy(coffee(price), when=when)
                                             for when, price in visits])
    assert [earned(e).get("fifth-visit", 0) for e in evaluations] == expected


def test_nth_visit_reason_and_counters() -> None:
    progress: Progress = {("fifth-visit:visits", "2026-03"): 4}
    (evaluation,) = run(program(FIFTH_VISIT), [buy(when="2026-03-20 10:00")], progress)
    (award,) = evaluation.awards
    assert award.reason == {"visit": 5, "period": "2026-03"}
    # The award is flagged for the period, so a refunded earlier visit cannot earn it twice.
    assert progress == {("fifth-visit:visits", "2026-03"): 5,
                        ("fifth-visit:awarded", "2026-03"): 1}
    assert [tuple(d) for d in evaluation.progress] == [("fifth-visit:visits", "2026-03", 1),
                                                       ("fifth-visit:awarded", "2026-03", 1)]


# --- spend_threshold -------------------------------------------------------------------------

QUARTERLY = """\
- id: spend-200
  kind: spend_threshold
  threshold: "200.00"
  period: quarter
  points: 500
"""


@pytest.mark.parametrize(
    ("spends", "expected"),
    [
        ([("2026-01-10 10:00", "150.00"), ("2026-02-10 10:00", "60.00"),
          ("2026-03-10 10:00", "300.00")], [0, 500, 0]),
        ([("2026-01-10 10:00", "200.00")], [500]),  # reaching it exactly is enough
        ([("2026-01-10 10:00", "199.99"), ("2026-01-10 11:00", "0.01")], [0, 500]),
        ([("2026-01-10 10:00", "450.00"), ("2026-01-11 10:00", "450.00")], [500, 0]),
        # A new quarter can earn again; the quarter is in program time.
        ([("2026-03-31 10:00", "250.00"), ("2026-03-31 23:59", "250.00"),
          ("2026-04-01 00:01", "250.00"), ("2026-06-30 12:00", "1.00")],
         [500, 0, 500, 0]),
        ([("2026-03-31 10:00", "150.00"), ("2026-04-02 10:00", "150.00")], [0, 0]),
    ],
    ids=["crosses once", "exactly", "by a cent", "not again", "new quarter",
         "spend does not carry over"],
)
def test_spend_threshold(spends: list[tuple[str, str]], expected: list[int]) -> None:
    evaluations = run(program(QUARTERLY), [buy(coffee(price), when=when)
                                           for when, price in spends])
    assert [earned(e).get("spend-200", 0) for e in evaluations] == expected


def test_spend_threshold_counts_eligible_spend_only_and_explains_itself() -> None:
    progress: Progress = {}
    first, second = run(program(QUARTERLY), [
        buy(coffee("150.00"), CIGARS, CIGARS, CIGARS, when="2026-02-01 10:00"),
        buy(coffee("50.00"), when="2026-02-02 10:00"),
    ], progress)
    assert first.awards == []
    (award,) = second.awards
    assert award.points == 500
    assert award.reason == {"period": "2026-Q1", "period_spend_minor": 20000,
                            "threshold_minor": 20000}
    assert progress == {("spend-200:spend", "2026-Q1"): 20000,
                        ("spend-200:awarded", "2026-Q1"): 1}


# --- stamp_card ------------------------------------------------------------------------------

def card_rules(stamp_per: str = "item", size: int = 3, expire: str = "never") -> str:
    return textwrap.dedent(f"""\
        - id: coffee-card
          kind: stamp_card
          when: {{categories: [coffee]}}
          stamp_per: {stamp_per}
          card_size: {size}
          reward: free-coffee
          stamps_expire: {expire}
        """)


def the_card(compiled: CompiledProgram) -> StampCard:
    card = compiled.rule("coffee-card")
    assert isinstance(card, StampCard)
    return card


@pytest.mark.parametrize(
    ("stamp_per", "baskets", "vouchers", "held"),
    [
        # per item: quantities count; a full card issues a voucher, extras carry over.
        ("item", [[coffee(quantity="2")], [coffee(quantity="2")]], [0, 1], 1),
        ("item", [[coffee(quantity="7")]], [2], 1),
        ("item", [[coffee(), coffee(), coffee()]], [1], 0),
        ("item", [[CROISSANT], [CROISSANT]], [0, 0], 0),  # nothing that matches
        ("item", [[coffee(quantity="0.5")]], [0], 0),  # half a coffee is no stamp
        # per visit: one stamp per purchase, however many coffees.
        ("visit", [[coffee(quantity="5")], [coffee()], [coffee(), CROISSANT]], [0, 0, 1], 0),
        ("visit", [[coffee()], [CROISSANT], [coffee()]], [0, 0, 0], 2),
    ],
)
def test_stamp_card(stamp_per: str, baskets: list[list[Line]], vouchers: list[int],
                    held: int) -> None:
    compiled = program(card_rules(stamp_per))
    progress: Progress = {}
    evaluations = run(compiled, [buy(*lines, when=f"2026-03-0{day} 10:00")
                                 for day, lines in enumerate(baskets, start=1)], progress)
    assert [len(e.vouchers) for e in evaluations] == vouchers
    assert all(e.awards == [] for e in evaluations)  # stamps are not points
    assert all(v.reward_id == "free-coffee" for e in evaluations for v in e.vouchers)
    assert the_card(compiled).held(progress, date(2026, 3, 31)) == held


def test_a_full_card_uses_the_oldest_stamps_first() -> None:
    compiled = program(card_rules(size=3))
    progress: Progress = {}
    evaluations = run(compiled, [
        buy(coffee(quantity="2"), when="2026-03-01 10:00"),
        buy(coffee(quantity="2"), when="2026-03-05 10:00"),
    ], progress)
    assert evaluations[1].vouchers == [
        IssueVoucher("coffee-card", "free-coffee", (("2026-03-01", 2), ("2026-03-05", 1)))]
    assert progress == {("coffee-card:stamps", "2026-03-01"): 0,
                        ("coffee-card:stamps", "2026-03-05"): 1}


@pytest.mark.parametrize(
    ("second_visit", "vouchers", "held_after"),
    [
        ("2026-03-30 10:00", 1, 0),  # 29 days later: the first stamps still count
        ("2026-03-30 23:59", 1, 0),
        ("2026-03-31 00:00", 0, 1),  # 30 days later: they have lapsed
        ("2026-04-05 10:00", 0, 1),
    ],
)
def test_expired_stamps_do_not_count(second_visit: str, vouchers: int, held_after: int) -> None:
    compiled = program(card_rules(size=3, expire="{after_days: 30}"))
    progress: Progress = {}
    _, second = run(compiled, [
        buy(coffee(quantity="2"), when="2026-03-01 10:00"),
        buy(coffee(), when=second_visit),
    ], progress)
    assert len(second.vouchers) == vouchers
    local = datetime.fromisoformat(second_visit).date()
    assert the_card(compiled).held(progress, local) == held_after


def test_stamps_are_dated_by_the_local_day() -> None:
    compiled = program(card_rules(size=3, expire="{after_days: 1}"))
    progress: Progress = {}
    # 23:30 UTC on 1 March is 00:30 on 2 March in Amsterdam; the stamp is dated 2 March
    # and so still counts on 2 March.
    run(compiled, [buy(coffee(quantity="2"), instant="2026-03-01T23:30:00+00:00")], progress)
    assert progress == {("coffee-card:stamps", "2026-03-02"): 2}
    assert the_card(compiled).held(progress, date(2026, 3, 2)) == 2
    assert the_card(compiled).held(progress, date(2026, 3, 3)) == 0


@pytest.mark.parametrize(
    ("debt", "coffees", "debt_after", "held_after", "vouchers"),
    [
        (-2, "3", 0, 1, 0),  # two repay the debt, one goes on the card
        (-2, "1", -1, -1, 0),  # all of it repays the debt
        (-2, "2", 0, 0, 0),
        (-1, "4", 0, 0, 1),  # one repays, three fill a card
    ],
)
def test_a_stamp_debt_is_repaid_first(debt: int, coffees: str, debt_after: int,
                                      held_after: int, vouchers: int) -> None:
    compiled = program(card_rules(size=3))
    progress: Progress = {("coffee-card:stamps", "debt"): debt}
    (evaluation,) = run(compiled, [buy(coffee(quantity=coffees), when="2026-03-10 10:00")],
                        progress)
    assert progress[("coffee-card:stamps", "debt")] == debt_after
    assert the_card(compiled).held(progress, date(2026, 3, 10)) == held_after
    assert len(evaluation.vouchers) == vouchers


# --- first_in_category -----------------------------------------------------------------------

FIRST_BAKERY = """\
- id: first-bakery
  kind: first_in_category
  category: bakery
  points: 30
"""
BREAD: Line = ("SOURDOUGH", "bakery", "1", "4.00")


def test_first_in_category_earns_once_ever() -> None:
    progress: Progress = {}
    evaluations = run(program(FIRST_BAKERY), [
        buy(coffee(), when="2026-03-01 10:00"),  # no bread: not the first bakery purchase
        buy(coffee(), BREAD, when="2026-03-02 10:00"),
        buy(BREAD, when="2026-03-03 10:00"),
        buy(BREAD, when="2027-01-05 10:00"),  # not again in a new year either
    ], progress)
    assert [earned(e) for e in evaluations] == [{}, {"first-bakery": 30}, {}, {}]
    assert evaluations[1].awards[0].reason == {"category": "bakery"}
    assert progress == {("first-bakery:seen", "all"): 1}


def test_first_in_category_ignores_an_excluded_sku_in_the_category() -> None:
    deposit: Line = ("DEPOSIT-BOTTLE", "bakery", "1", "0.25")
    evaluations = run(program(FIRST_BAKERY), [buy(coffee(), deposit), buy(BREAD)])
    assert [earned(e) for e in evaluations] == [{}, {"first-bakery": 30}]


# --- periodic_rebate -------------------------------------------------------------------------

REBATE = """\
- id: rebate
  kind: periodic_rebate
  percent: 1
  period: month
  cap: "250.00"
"""


def test_periodic_rebate_accrues_spend_and_awards_nothing_now() -> None:
    progress: Progress = {}
    evaluations = run(program(REBATE), [
        buy(coffee("40.00"), CIGARS, when="2026-03-01 10:00"),
        buy(coffee("60.00"), when="2026-03-31 23:30"),
        buy(coffee("5.00"), when="2026-04-01 00:30"),
        buy(CIGARS, when="2026-04-02 10:00"),  # only excluded spend: nothing accrues
    ], progress)
    assert all(e.awards == [] and e.vouchers == [] for e in evaluations)
    assert progress == {("rebate:spend", "2026-03"): 10000, ("rebate:spend", "2026-04"): 500}
    assert evaluations[3].progress == []


# --- caps ------------------------------------------------------------------------------------

CAPPED_BONUS = """\
- id: visit-bonus
  kind: fixed_bonus
  points: 10
  caps: {per_day: 25}
"""


def test_rule_cap_trims_and_says_so() -> None:
    progress: Progress = {}
    evaluations = run(program(CAPPED_BONUS), [
        buy(when="2026-03-04 09:00"), buy(when="2026-03-04 10:00"),
        buy(when="2026-03-04 11:00"), buy(when="2026-03-04 23:59"),
        buy(when="2026-03-05 00:00"),
    ], progress)
    assert [earned(e).get("visit-bonus", 0) for e in evaluations] == [10, 10, 5, 0, 10]
    assert "capped" not in evaluations[1].awards[0].reason
    assert evaluations[2].awards[0].reason["capped"] == {
        "by": "rule", "per": "day", "limit": 25, "before_cap": 10}
    assert progress == {("visit-bonus:cap", "day:2026-03-04"): 25,
                        ("visit-bonus:cap", "day:2026-03-05"): 10}


def test_weekly_rule_cap_on_points_per_spend_follows_iso_weeks() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      caps: {per_week: 100}
    """
    progress: Progress = {}
    evaluations = run(program(rules), [
        buy(coffee("80.00"), when="2026-03-02 10:00"),  # Monday of week 10
        buy(coffee("50.00"), when="2026-03-08 23:00"),  # Sunday of week 10
        buy(coffee("50.00"), when="2026-03-09 00:10"),  # Monday of week 11
    ], progress)
    assert [earned(e) for e in evaluations] == [
        {"per-euro": 80}, {"per-euro": 20}, {"per-euro": 50}]
    assert evaluations[1].awards[0].reason["capped"] == {
        "by": "rule", "per": "week", "limit": 100, "before_cap": 50}
    assert progress == {("per-euro:cap", "week:2026-W10"): 100,
                        ("per-euro:cap", "week:2026-W11"): 50}


def test_a_weekly_cap_can_award_six_times_in_a_month() -> None:
    # March 2026 touches six ISO weeks: Sunday 1 March is in W09, 30-31 March in W14.
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      caps: {per_week: 10}
    """
    days = ["2026-03-01", "2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23",
            "2026-03-30", "2026-03-31"]
    evaluations = run(program(rules), [buy(coffee("25.00"), when=f"{d} 12:00") for d in days])
    assert [earned(e).get("per-euro", 0) for e in evaluations] == [10, 10, 10, 10, 10, 10, 0]


SHARED_CAP = """\
- id: per-euro
  kind: points_per_spend
  points_per_unit: 1
- id: visit-bonus
  kind: fixed_bonus
  points: 20
  priority: {bonus_priority}
"""


@pytest.mark.parametrize(
    ("bonus_priority", "expected", "capped_rule"),
    [
        (0, {"per-euro": 40, "visit-bonus": 10}, "visit-bonus"),  # file order
        (10, {"visit-bonus": 20, "per-euro": 30}, "per-euro"),  # higher priority first
        (-5, {"per-euro": 40, "visit-bonus": 10}, "visit-bonus"),
    ],
)
def test_program_cap_is_used_first_by_the_rule_that_runs_first(
    bonus_priority: int, expected: dict[str, int], capped_rule: str,
) -> None:
    compiled = program(SHARED_CAP.replace("{bonus_priority}", str(bonus_priority)),
                       "caps: {per_day: 50}\n")
    progress: Progress = {}
    (evaluation,) = run(compiled, [buy(coffee("40.00"))], progress)
    assert [(a.rule_id, a.points) for a in evaluation.awards] == list(expected.items())
    capped = {a.rule_id: a.reason.get("capped") for a in evaluation.awards}
    assert capped.pop(capped_rule) == {"by": "program", "per": "day", "limit": 50,
                                       "before_cap": 40 if capped_rule == "per-euro" else 20}
    assert set(capped.values()) == {None}
    assert progress == {("*:cap", "day:2026-03-04"): 50}
    # The day's cap is used up: a second purchase that day earns nothing ...
    (later,) = run(compiled, [buy(coffee("40.00"), when="2026-03-04 18:00")], progress)
    assert later.awards == []
    # ... and the next day starts afresh.
    (next_day,) = run(compiled, [buy(coffee("10.00"), when="2026-03-05 08:00")], progress)
    assert earned(next_day) == {"per-euro": 10, "visit-bonus": 20}


def test_rule_cap_and_program_cap_together() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      caps: {per_day: 30}
    - id: visit-bonus
      kind: fixed_bonus
      points: 20
    """
    progress: Progress = {}
    (evaluation,) = run(program(rules, "caps: {per_day: 45}\n"), [buy(coffee("40.00"))],
                        progress)
    assert earned(evaluation) == {"per-euro": 30, "visit-bonus": 15}
    assert evaluation.awards[0].reason["capped"]["by"] == "rule"
    assert evaluation.awards[1].reason["capped"]["by"] == "program"
    assert progress == {("per-euro:cap", "day:2026-03-04"): 30,
                        ("*:cap", "day:2026-03-04"): 45}


# --- best-of groups --------------------------------------------------------------------------

def group_rules(a_points: int, b_points: int, b_priority: int = 0) -> str:
    return textwrap.dedent(f"""\
        - id: big-basket
          kind: fixed_bonus
          points: {a_points}
          when: {{min_spend: "20.00"}}
          group: welcome
        - id: any-basket
          kind: fixed_bonus
          points: {b_points}
          group: welcome
          priority: {b_priority}
        - id: per-euro
          kind: points_per_spend
          points_per_unit: 1
        """)


@pytest.mark.parametrize(
    ("rules", "price", "expected"),
    [
        (group_rules(50, 30), "25.00", {"big-basket": 50, "per-euro": 25}),
        (group_rules(50, 30), "10.00", {"any-basket": 30, "per-euro": 10}),  # only one earns
        (group_rules(30, 50), "25.00", {"any-basket": 50, "per-euro": 25}),
        # A tie goes to the earlier rule: by file order ...
        (group_rules(30, 30), "25.00", {"big-basket": 30, "per-euro": 25}),
        # ... unless priority puts the other rule first.
        (group_rules(30, 30, b_priority=1), "25.00", {"any-basket": 30, "per-euro": 25}),
        (group_rules(50, 30, b_priority=1), "25.00", {"big-basket": 50, "per-euro": 25}),
    ],
    ids=["best stands", "only one earns", "second is best", "tie: file order",
         "tie: priority", "priority does not beat more points"],
)
def test_best_of_group(rules: str, price: str, expected: dict[str, int]) -> None:
    (evaluation,) = run(program(rules), [buy(coffee(price))])
    assert earned(evaluation) == expected
    for award in evaluation.awards:
        assert award.reason.get("group") == (None if award.rule_id == "per-euro" else "welcome")


def test_points_per_spend_and_a_bonus_compete_in_a_group() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      group: best
    - id: flat
      kind: fixed_bonus
      points: 30
      group: best
    """
    compiled = program(rules)
    results = [earned(e) for e in run(compiled, [buy(coffee("20.00")), buy(coffee("45.00"))])]
    assert results == [{"flat": 30}, {"per-euro": 45}]


# --- a condition that fails while a purchase is evaluated ------------------------------------

FAILING = """\
- id: fifth-visit
  kind: nth_visit
  visit: 2
  period: month
  points: 100
- id: spend-200
  kind: spend_threshold
  threshold: "20.00"
  period: quarter
  points: 500
- id: coffee-card
  kind: stamp_card
  stamp_per: item
  card_size: 2
  reward: free-coffee
- id: capped
  kind: fixed_bonus
  points: 5
  caps: {per_day: 10}
- id: students
  kind: fixed_bonus
  points: 20
  when: "{expression}"
"""


@pytest.mark.parametrize(
    ("expression", "member", "fragment"),
    [
        ("member.attributes.segment == 'student'", MEMBER, "segment"),
        ("member.attributes.segment == 'student'", None, "segment"),
        ("purchase.total_minor / (purchase.item_count - 1) > 100", MEMBER, "divide by zero"),
        ("purchase.items[3].amount_minor > 100", MEMBER, "index"),
    ],
    ids=["missing attribute", "anonymous", "division by zero", "no such item"],
)
def test_a_failing_condition_names_the_rule_and_leaves_progress_as_it_was(
    expression: str, member: MemberView | None, fragment: str,
) -> None:
    compiled = stored_program(FAILING.replace("{expression}", expression))
    progress: Progress = {
        ("fifth-visit:visits", "2026-03"): 1,
        ("spend-200:spend", "2026-Q1"): 1500,
        ("coffee-card:stamps", "2026-03-01"): 1,
        ("capped:cap", "day:2026-03-04"): 5,
    }
    before = dict(progress)
    with pytest.raises(RuleFailed) as info:
        evaluate(compiled, buy(coffee("10.00")), member, progress)
    assert info.value.rule_id == "students"
    assert str(info.value).startswith("rule 'students' of program 'test-program' failed: CEL")
    assert fragment in str(info.value)
    # Every counter is back to what it was.
    assert progress == before


def test_a_failing_condition_leaves_no_new_counters_behind() -> None:
    compiled = stored_program(FAILING.replace("{expression}",
                                              "member.attributes.segment == 'x'"))
    progress: Progress = {("coffee-card:stamps", "2026-03-01"): 1}
    with pytest.raises(RuleFailed):
        evaluate(compiled, buy(coffee("10.00")), MEMBER, progress)
    assert progress == {("coffee-card:stamps", "2026-03-01"): 1}


def test_a_failing_multiplier_condition_fails_its_rule() -> None:
    rules = """\
    - id: per-euro
      kind: points_per_spend
      points_per_unit: 1
      multipliers:
        - id: students
          when: "member.attributes.segment == 'student'"
          factor: 2
    """
    with pytest.raises(RuleFailed) as info:
        evaluate(stored_program(rules), buy(), MEMBER, {})
    assert info.value.rule_id == "per-euro"


def test_the_segment_attribute_is_read_as_an_attribute_and_is_safe_when_missing() -> None:
    # member.segment is the RFM segment since member insights (issue 17); the attribute
    # of that name is read like any other, guarded.
    rules = """\
    - id: students
      kind: fixed_bonus
      points: 20
      when: "has(member.attributes.segment) && member.attributes.segment == 'student'"
    """
    compiled = program(rules)
    results = [earned(run(compiled, [buy()], member=m)[0]) for m in (
        MemberView("M-1", {"segment": "student"}), MemberView("M-1"), None)]
    assert results == [{"students": 20}, {}, {}]


def test_member_segment_no_longer_reads_the_segment_attribute() -> None:
    rules = """\
    - id: students
      kind: fixed_bonus
      points: 20
      when: "member.segment == 'student'"
    """
    compiled = program(rules)
    results = [earned(run(compiled, [buy()], member=m)[0]) for m in (
        MemberView("M-1", {"segment": "student"}), MemberView("M-1"), None)]
    assert results == [{}, {}, {}]


# --- anonymous purchases ---------------------------------------------------------------------

ANONYMOUS = """\
- id: per-euro
  kind: points_per_spend
  points_per_unit: 1
- id: walk-in
  kind: fixed_bonus
  points: 5
  when: "member.id == '' && member.tier == '' && size(member.clubs) == 0"
- id: gold
  kind: fixed_bonus
  points: 50
  when: {tiers: [gold]}
"""


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (None, {"per-euro": 12, "walk-in": 5}),
        (holding("gold", "M-42"), {"per-euro": 12, "gold": 50}),
        (MemberView("M-42"), {"per-euro": 12}),
    ],
)
def test_anonymous_and_member_evaluation(member: MemberView | None,
                                         expected: dict[str, int]) -> None:
    anonymous = member is None
    (evaluation,) = run(program(ANONYMOUS, LADDER),
                        [buy(coffee("12.00"), member=None if anonymous else "M-42")],
                        member=member)
    assert earned(evaluation) == expected
    # Only the tier ladder's credit is counted (for members): these rules keep no state.
    assert [p for p in evaluation.progress if not p.counter.startswith("*:")] == []
    assert evaluation.vouchers == []



def test_a_visit_bonus_that_lost_its_group_is_not_earned_later_in_the_period() -> None:
    compiled = program("""\
- id: third-visit
  kind: nth_visit
  visit: 3
  period: month
  points: 50
  group: g
- id: big-basket
  kind: fixed_bonus
  points: 100
  group: g
  when: {min_spend: "50.00"}
""")
    small, big = coffee("5.00"), coffee("60.00")
    evaluations = run(compiled, [buy(small, when="2026-03-02 10:00"),
                                 buy(small, when="2026-03-03 10:00"),
                                 buy(big, when="2026-03-04 10:00"),  # visit 3: big wins
                                 buy(small, when="2026-03-05 10:00")])
    assert [earned(e) for e in evaluations] == [{}, {}, {"big-basket": 100}, {}]
