"""Enrolment, consents, clubs, fee charges, group verifications and tiers through `loyalty`.

The programs are the shipped ones (rules/): Glow Beauty's tier ladder on calendar-year
spend (Blush from 0, Glow from 350.00 EUR, Radiant from 1,000.00 EUR, held through the next
year, Europe/Paris, stores GB-*), Big Box's paid `warehouse` club (Basic 60.00 and
Executive 120.00 a year, 14 days of cooling-off, Europe/Berlin), and Campus Books'
`student-club`, open to verified `students` only (at most 12 months, re-verification 30
days before the end).

Every `loyalty` process costs about a second, so the SQLite tests start from a database
that already has the rules applied (and, for the tier tests, the Glow Beauty purchases
imported), made once per module. The paid-club walk runs on both backends.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import pytest

from tests.e2e.cli import (
    SHIPPED_RULES,
    Cli,
    Result,
    assert_one_sentence_error,
    ok,
    purchase,
    run,
    write_jsonl,
)


def _copy_db(source: Path, target: Path) -> str:
    """A copy of a SQLite database file (with its WAL, should one be left) as a URL."""
    shutil.copyfile(source, target)
    for suffix in ("-wal", "-shm"):
        side = source.with_name(source.name + suffix)
        if side.exists():
            shutil.copyfile(side, target.with_name(target.name + suffix))
    return f"sqlite:///{target}"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _rows(result: Result) -> list[list[str]]:
    """The body rows of the table(s) printed, as lists of cell texts."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in result.out_lines if line.lstrip().startswith("│")]


def _history(result: Result) -> list[tuple[str, ...]]:
    """(when, from, to, reason) of the tier history table of `tiers show`."""
    return [tuple(row) for row in _rows(result) if len(row) == 4]


@pytest.fixture(scope="module")
def applied_db(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """A migrated SQLite database with the shipped rules applied (copied by each test)."""
    path = tmp_path_factory.mktemp("applied") / "applied.db"
    shutil.copyfile(sqlite_template, path)
    applied = ok("rules", "apply", SHIPPED_RULES, database=f"sqlite:///{path}")
    for program in ("big-box", "campus-books", "glow-beauty"):
        assert re.search(rf"^{program}: version 1 stored", applied.stdout, re.M), str(applied)
    return path


@pytest.fixture
def cli(applied_db: Path, tmp_path: Path) -> Cli:
    return Cli(_copy_db(applied_db, tmp_path / "loyalty.db"), tmp_path)


# Glow Beauty purchases. Eligible spend excludes gift cards.
GLOW_PURCHASES = [
    # FAY reaches Glow in 2025 (400.00); it holds through 2026, and she buys nothing in 2026.
    purchase("G0", "FAY", "2025-05-20T11:00:00+02:00",
             [("PERFUME", "fragrance", "4", "100.00")], "400.00", store_id="GB-LYO-2"),
    # DIA: 200.00 in March (Blush), 200.00 in June crosses 350.00 (Glow, earned at Blush:
    # 200 points), 80.00 in July at Glow (x1.25: 100 points). 480.00 in 2026.
    purchase("G1", "DIA", "2026-03-10T15:00:00+01:00",
             [("SERUM", "skincare", "2", "100.00")], "200.00", store_id="GB-PAR-1"),
    purchase("G2", "DIA", "2026-06-10T15:00:00+02:00",
             [("SERUM", "skincare", "2", "100.00")], "200.00", store_id="GB-PAR-1"),
    purchase("G3", "DIA", "2026-07-10T15:00:00+02:00",
             [("LIP", "makeup", "2", "40.00")], "80.00", store_id="GB-PAR-1"),
    # EVE's first purchase: 1,200.00 eligible (the gift card does not count) -> Radiant.
    purchase("G4", "EVE", "2026-11-20T11:00:00+01:00",
             [("CREAM", "skincare", "8", "150.00"), ("GIFT-25", "gift-cards", "1", "25.00")],
             "1225.00", store_id="GB-LYO-2"),
]
# 400 + 200 + 200 + 100 + 1200
GLOW_POINTS = 2100


@pytest.fixture(scope="module")
def glow_db(tmp_path_factory: pytest.TempPathFactory, applied_db: Path) -> Path:
    """The applied database with the Glow Beauty purchases imported."""
    folder = tmp_path_factory.mktemp("glow")
    path = folder / "glow.db"
    _copy_db(applied_db, path)
    write_jsonl(folder / "glow.jsonl", list(GLOW_PURCHASES))
    imported = ok("purchases", "import", "glow.jsonl", database=f"sqlite:///{path}", cwd=folder)
    assert imported.out_lines == [
        "5 purchase(s) read: 5 recorded, 0 already recorded; points awarded: glow-beauty "
        f"{GLOW_POINTS}",
    ], str(imported)
    return path


@pytest.fixture
def glow(glow_db: Path, tmp_path: Path) -> Cli:
    return Cli(_copy_db(glow_db, tmp_path / "loyalty.db"), tmp_path)


# --- 1. enrolment and consents ----------------------------------------------------------


def test_enrol_with_a_consent_then_withdraw_it(
    sqlite_db_url: str, tmp_path: Path
) -> None:
    cli = Cli(sqlite_db_url, tmp_path)
    enrolled = cli.json("members", "enrol", "ANA", "--attr", "date_of_birth=1990-01-01",
                        "--consent", "marketing", "--at", "2026-03-01T10:00:00+01:00")
    assert enrolled["member_id"] == "ANA"
    assert enrolled["attributes"] == {"date_of_birth": "1990-01-01"}
    assert enrolled["consents"] == [{
        "flag": "marketing", "given": True, "given_at": "2026-03-01T09:00:00+00:00",
        "withdrawn_at": None,
    }]

    withdrawn = cli.json("members", "consent", "ANA", "marketing", "--withdraw",
                         "--at", "2026-03-05T10:00:00+01:00")
    assert withdrawn["attributes"] == {"date_of_birth": "1990-01-01"}
    assert withdrawn["consents"] == [{
        "flag": "marketing", "given": False, "given_at": "2026-03-01T09:00:00+00:00",
        "withdrawn_at": "2026-03-05T09:00:00+00:00",
    }]


# --- 2. a paid club: join, pay, upgrade, leave ------------------------------------------

JOINED = "2026-03-02T10:00:00+01:00"
PAID = "2026-03-03T10:00:00+01:00"          # the term starts here: 2026-03-03T09:00Z
UPGRADED = "2026-03-10T10:00:00+01:00"
LEFT = "2026-03-12T10:00:00+01:00"          # 9 days into the term: inside the 14 days
TERM = ("2026-03-03T09:00:00+00:00", "2027-03-03T09:00:00+00:00")


def _prorated(difference_minor: int, at: str, term: tuple[str, str]) -> int:
    """difference x time left / whole term, rounded half up."""
    start, end = (_instant(t) for t in term)
    share = Fraction(difference_minor) * Fraction(
        int((end - _instant(at)).total_seconds()), int((end - start).total_seconds()))
    return int(share + Fraction(1, 2))


def test_a_paid_warehouse_membership_from_joining_to_a_refund(
    db_url: str, tmp_path: Path
) -> None:
    cli = Cli(db_url, tmp_path)
    cli.ok("rules", "apply", SHIPPED_RULES)

    joined = cli.json("clubs", "join", "BOB", "warehouse", "--level", "basic", "--at", JOINED)
    membership, charge = joined["membership"], joined["charge"]
    assert (membership["member_id"], membership["program_id"], membership["club_id"],
            membership["level"], membership["status"], membership["term_start"],
            membership["term_end"]) == (
        "BOB", "big-box", "warehouse", "basic", "pending", None, None)
    assert membership["joined_at"] == "2026-03-02T09:00:00+00:00"
    assert (charge["kind"], charge["level"], charge["amount_minor"], charge["currency"],
            charge["status"], charge["due_at"], charge["paid_at"]) == (
        "join", "basic", 6000, "EUR", "due", "2026-03-02T09:00:00+00:00", None)
    join_id = charge["charge_id"]
    assert f"pending until charge {join_id} is paid" in joined["message"]

    paid = cli.json("fees", "pay", str(join_id), "--reference", "PSP-1", "--at", PAID)
    assert (paid["charge"]["status"], paid["charge"]["paid_at"], paid["charge"]["paid_via"],
            paid["charge"]["paid_ref"]) == ("paid", TERM[0], "service", "PSP-1")
    # The term starts when the fee is paid, not when the member asked to join.
    assert (paid["charge"]["term_start"], paid["charge"]["term_end"]) == TERM
    assert (paid["membership"]["status"], paid["membership"]["level"],
            paid["membership"]["term_start"], paid["membership"]["term_end"]) == (
        "active", "basic", *TERM)

    twice = cli.run("fees", "pay", str(join_id), "--at", "2026-03-04T10:00:00+01:00")
    assert_one_sentence_error(twice, f"charge {join_id} was already paid", "cannot be paid twice")

    same = cli.run("clubs", "upgrade", "BOB", "warehouse", "basic", "--at", UPGRADED)
    assert_one_sentence_error(same, "'BOB'", "already holds level 'basic'")

    upgraded = cli.json("clubs", "upgrade", "BOB", "warehouse", "executive", "--at", UPGRADED)
    difference = _prorated(12000 - 6000, UPGRADED, TERM)
    assert difference == 5885  # 6000 x 358 / 365 days, rounded half up
    upgrade = upgraded["charge"]
    assert (upgrade["kind"], upgrade["level"], upgrade["amount_minor"], upgrade["status"],
            upgrade["term_end"]) == ("upgrade", "executive", difference, "due", TERM[1])
    assert upgrade["detail"]["from_level"] == "basic"
    assert upgrade["detail"]["to_level"] == "executive"
    # The level changes only once the difference is paid.
    assert (upgraded["membership"]["level"], upgraded["membership"]["status"]) == (
        "basic", "active")
    upgrade_id = upgrade["charge_id"]
    assert upgraded["message"].endswith("(58.85 EUR, prorated)"), upgraded["message"]

    charges = cli.json("fees", "list", "--member", "BOB")
    assert [(c["charge_id"], c["kind"], c["level"], c["amount_minor"], c["status"])
            for c in charges] == [
        (upgrade_id, "upgrade", "executive", difference, "due"),
        (join_id, "join", "basic", 6000, "paid"),
    ]

    shown = cli.json("clubs", "show", "BOB", "--as-of", "2026-03-11T10:00:00+01:00")
    [club] = shown["clubs"]
    assert (club["club_id"], club["level"], club["status"], club["term_start"],
            club["term_end"], club["auto_renew"]) == (
        "warehouse", "basic", "active", *TERM, True)
    assert [(c["charge_id"], c["status"]) for c in shown["charges"]] == [
        (upgrade_id, "due"), (join_id, "paid")]
    assert shown["verifications"] == []

    # Nine days into the term: cancelled, the fee paid comes back and the upgrade not yet
    # paid is owed no more.
    left = cli.ok("clubs", "leave", "BOB", "warehouse", "--at", LEFT)
    assert left.out_lines == [
        "BOB in warehouse (big-box): cancelled, level basic, paid through "
        "2026-03-12T10:00:00+01:00",  # in the program's zone (Berlin)
        f"cancelled inside the 14-day cooling-off period; charge(s) {join_id} refunded",
    ], str(left)

    after = cli.ok("fees", "list", "--member", "BOB")
    assert _rows(after) == [
        # Money in major units with its currency; times in the program's zone.
        [str(upgrade_id), "BOB", "warehouse", "executive", "upgrade", "58.85 EUR",
         "2026-03-10T10:00:00+01:00", "waived"],
        [str(join_id), "BOB", "warehouse", "basic", "join", "60.00 EUR",
         "2026-03-02T10:00:00+01:00", "refunded"],
    ], str(after)


# --- 3. a verified group and its affinity club ------------------------------------------

VERIFIED_UNTIL = "2026-09-01T00:00:00+02:00"   # 22:00 UTC on 31 August
ADVANCED = "2026-09-15T00:00:00+02:00"         # two weeks later
ADVANCED_UTC = "2026-09-14T22:00:00+00:00"


def test_a_student_verification_lapses_and_takes_the_club_with_it(cli: Cli) -> None:
    stale = cli.run("members", "verify", "CAT", "students", "--until", "2026-02-01",
                    "--evidence", "student card 5512", "--at", "2026-03-01T10:00:00+01:00")
    assert_one_sentence_error(stale, "--until 2026-02-01", "must expire in the future")

    cli.ok("members", "enrol", "CAT", "--attr", "date_of_birth=2004-09-01",
           "--at", "2026-03-01T09:00:00+01:00")
    verified = cli.json("members", "verify", "CAT", "students", "--until", VERIFIED_UNTIL,
                        "--evidence", "student card 5512", "--at", "2026-03-01T10:00:00+01:00")
    assert verified == {
        "member_id": "CAT", "program_id": "campus-books", "group_id": "students",
        "evidence": "student card 5512", "verified_at": "2026-03-01T09:00:00+00:00",
        "verified_until": "2026-08-31T22:00:00+00:00",
        "reverify_from": "2026-08-01T22:00:00+00:00",  # 30 days before the end
        "status": "active", "lapsed_at": None,
    }

    joined = cli.ok("clubs", "join", "CAT", "student-club", "--at", "2026-03-01T10:05:00+01:00")
    assert joined.out_lines == [
        "CAT in student-club (campus-books): active",
        "joined Campus Books Student Club",
    ], str(joined)

    stepped = cli.json("clubs", "advance", "--allow-future", "--as-of", ADVANCED)
    assert stepped == {
        "renewal_charges": 0, "renewals_waived": 0, "entered_grace": 0, "lapsed": 0,
        "ended": 0, "verifications_lapsed": 1, "memberships_lapsed_by_eligibility": 1,
    }

    shown = cli.json("clubs", "show", "CAT", "--as-of", ADVANCED)
    [club] = shown["clubs"]
    [verification] = shown["verifications"]
    # Both are recorded as lapsed by the run that finds the verification expired (its
    # benefits already stopped at its end, 31 August, whether or not this had run).
    assert (club["club_id"], club["status"], club["ended_at"]) == (
        "student-club", "lapsed", ADVANCED_UTC)
    assert (verification["group_id"], verification["status"], verification["lapsed_at"]) == (
        "students", "lapsed", ADVANCED_UTC)
    assert shown["charges"] == []


# --- 4. tiers ----------------------------------------------------------------------------


def test_tiers_show_at_risk_review_and_a_manual_floor(glow: Cli) -> None:
    dia = glow.ok("tiers", "show", "DIA", "--as-of", "2026-08-01T00:00:00+02:00")
    assert dia.out_lines[:4] == [
        "glow-beauty: glow, held through 2027-12-31",
        "  spend 480.00 EUR from 2026-01-01 to 2026-12-31",
        "  next tier radiant: lacks 520.00 EUR",
        "  next review 2027-01-01 (policy hold_next_period)",
    ], str(dia)
    assert _history(dia) == [
        # In the program's zone (Paris): 15:00 local, not 14:00 UTC.
        ("2026-03-10T15:00:00+01:00", "-", "blush", "enrolment"),
        ("2026-06-10T15:00:00+02:00", "blush", "glow", "upgrade"),
    ], str(dia)

    # On New Year's Eve only FAY is short: DIA and EVE reached their tiers in 2026.
    risky = glow.ok("tiers", "at-risk", "--as-of", "2026-12-31T12:00:00+01:00")
    assert _rows(risky) == [
        ["FAY", "glow-beauty", "glow", "blush", "2027-01-01", "0.00 EUR", "350.00 EUR",
         "350.00 EUR"],
    ], str(risky)

    # The review of 2026 (missed) and of 2027, in order: FAY's 2025 Glow held through 2026,
    # then 2026's nothing drops her to Blush; DIA and EVE qualify for what they hold.
    reviewed = glow.json("tiers", "review", "--allow-future",
                         "--as-of", "2027-01-01T00:00:00+01:00")
    assert reviewed == {
        "reviewed": {"glow-beauty": 4}, "upgraded": {"glow-beauty": 0},
        "downgraded": {"glow-beauty": 1}, "held": {"glow-beauty": 0},
        "manual_floors_ended": {"glow-beauty": 0},
        "review_days": {"glow-beauty": ["2026-01-01", "2027-01-01"]}, "failures": [],
    }
    again = glow.ok("tiers", "review", "--allow-future", "--as-of", "2027-01-01T00:00:00+01:00")
    assert again.out_flat == ("glow-beauty: 0 review(s), 0 up, 0 down, 0 held, "
                              "0 manual floor(s) ended"), str(again)

    fay = glow.ok("tiers", "show", "FAY", "--as-of", "2027-01-02T00:00:00+01:00")
    assert fay.out_lines[0].startswith("glow-beauty: blush"), str(fay)
    assert "  next tier glow: lacks 350.00 EUR" in fay.out_lines, str(fay)
    assert _history(fay) == [
        ("2025-05-20T11:00:00+02:00", "-", "glow", "enrolment"),
        ("2027-01-01T00:00:00+01:00", "glow", "blush", "review"),  # Paris's new year
    ], str(fay)

    floor = glow.json("tiers", "set", "DIA", "radiant", "--until", "2027-06-30T00:00:00+02:00",
                      "--reason", "vip", "--at", "2027-01-02T10:00:00+01:00")
    assert _instant(floor.pop("until")) == _instant("2027-06-30T00:00:00+02:00")
    assert floor == {"member_id": "DIA", "program_id": "glow-beauty", "manual_tier": "radiant",
                     "earned_tier": "glow", "tier": "radiant", "reason": "vip"}
    by_hand = glow.ok("tiers", "set", "FAY", "glow", "--until", "2027-03-01T00:00:00+01:00",
                      "--reason", "apology", "--at", "2027-01-02T10:00:00+01:00")
    assert re.fullmatch(r"FAY has at least glow in glow-beauty until \S+ \(earned: blush\)",
                        by_hand.out_flat), str(by_hand)

    shown = glow.ok("tiers", "show", "DIA", "--as-of", "2027-01-05T00:00:00+01:00")
    assert shown.out_lines[:3] == [
        "glow-beauty: radiant (manual floor radiant until 2027-06-30T00:00:00+02:00), held "
        "through 2027-12-31",
        "  spend 0.00 EUR from 2027-01-01 to 2027-12-31",
        "  next tier radiant: lacks 1000.00 EUR",  # the earned tier is still Glow
    ], str(shown)
    assert _history(shown)[-1] == ("2027-01-02T10:00:00+01:00", "glow", "radiant", "manual")


def test_tiers_show_json(glow: Cli) -> None:
    [tiers] = glow.json("tiers", "show", "DIA", "--as-of", "2026-08-01T00:00:00+02:00")
    assert (tiers["program_id"], tiers["tier"], tiers["earned_tier"],
            tiers["manual_tier"] or None, tiers["manual_until"], tiers["held_until"],
            tiers["measure"], tiers["credit"], tiers["next_tier"], tiers["next_tier_lacks"],
            tiers["next_review"], tiers["policy"]) == (
        "glow-beauty", "glow", "glow", None, None, "2028-01-01", "spend", 48000, "radiant",
        52000, "2027-01-01", "hold_next_period")
    assert tiers["window"] == ["2026-01-01", "2027-01-01"]
    assert [(h["from"] or None, h["to"], h["reason"], h["changed_at"])
            for h in tiers["history"]] == [
        (None, "blush", "enrolment", "2026-03-10T14:00:00+00:00"),
        ("blush", "glow", "upgrade", "2026-06-10T13:00:00+00:00"),
    ]
    assert tiers["history"][1]["detail"]["threshold"] == 35000


def test_tiers_at_risk_json(glow: Cli) -> None:
    [fay] = glow.json("tiers", "at-risk", "--as-of", "2026-12-31T12:00:00+01:00")
    assert (fay["member_id"], fay["program_id"], fay["tier"], fay["would_drop_to"],
            fay["review_day"], fay["measure"], fay["credit"], fay["needed"], fay["lacks"],
            fay["window"], fay["policy"]) == (
        "FAY", "glow-beauty", "glow", "blush", "2027-01-01", "spend", 0, 35000, 35000,
        ["2026-01-01", "2027-01-01"], "hold_next_period")


# --- 5. mistakes -------------------------------------------------------------------------


def test_unknown_club_charge_and_member_are_one_sentence_each(cli: Cli) -> None:
    no_club = cli.run("clubs", "join", "BOB", "costco", "--at", JOINED)
    assert_one_sentence_error(no_club, "no club 'costco'", "warehouse")
    no_charge = cli.run("fees", "pay", "999", "--at", PAID)
    assert_one_sentence_error(no_charge, "there is no fee charge 999")
    no_member = cli.run("tiers", "show", "NOBODY", "--as-of", "2026-08-01T00:00:00+02:00")
    assert_one_sentence_error(no_member, "there is no member 'NOBODY'")


LADDER = """\
program: {program}
name: A broken ladder
currency: EUR
timezone: Europe/Paris
enrolment: open
tiers:
  measure: spend
  window: calendar_year
  downgrade: qualified
  levels:
    - id: bronze
      threshold: 0
    - id: silver
      threshold: "500.00"
    - id: gold
      threshold: "{gold}"
rules:
  - id: per-euro
    kind: points_per_spend
    points_per_unit: 1
"""


def test_validate_refuses_tier_thresholds_that_do_not_increase(tmp_path: Path) -> None:
    folder = tmp_path / "ladders"
    folder.mkdir()
    for name, gold in (("equal", "500.00"), ("falling", "400.00")):
        (folder / f"{name}.yaml").write_text(LADDER.format(program=name, gold=gold),
                                            encoding="utf-8")
    line = LADDER.splitlines().index('      threshold: "{gold}"') + 1
    column = len('      threshold: ') + 1

    checked = run("rules", "validate", "ladders", cwd=tmp_path)
    assert checked.code == 1, str(checked)
    assert checked.stdout == "", str(checked)
    *problems, summary = checked.err_lines
    assert problems == [
        f"ladders/equal.yaml:{line}:{column}: tiers.levels[2].threshold: thresholds must "
        "increase up the ladder: 'gold' needs 500.00, not more than 'silver' (500.00)",
        f"ladders/falling.yaml:{line}:{column}: tiers.levels[2].threshold: thresholds must "
        "increase up the ladder: 'gold' needs 400.00, not more than 'silver' (500.00)",
    ], str(checked)
    assert summary == "2 problems found; nothing was changed", str(checked)
