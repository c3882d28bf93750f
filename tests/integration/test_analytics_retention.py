"""Retention, cohorts, relationship length and lapse read from the database, on both
backends: the hand-worked data set of tests/unit/test_analytics_retention.py posted as
purchases through the normal use case, with a purchase refunded in full (it counts
nowhere), one with only excluded lines and one at a store outside the program (neither
counts), and the splits read from snapshots, tiers and clubs."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from loyalty_engine.cli import app as cli_app
from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.services.analytics_retention import (
    NoPurchasesError,
    cohort_report,
    lapsed_members,
    retention_report,
)
from loyalty_engine.store import tables
from loyalty_engine.store.database import write_transaction

from .walk import apply_text, buy, refund

# The small shop of the analytics tests (one euro one point; tobacco excluded).
PROGRAM = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
           / "corner-shop.yaml").read_text(encoding="utf-8")
COFFEE = ("LATTE", "coffee", "1", "4.00")
TOBACCO = ("CIGS", "tobacco", "1", "6.00")
# The unit test's members, a purchase on each of these days (noon in Amsterdam).
DAYS = {
    "A": ["2026-01-05", "2026-02-10", "2026-03-10", "2026-04-10"],
    "B": ["2026-01-10", "2026-03-15"],
    "C": ["2026-01-20"],
    "D": ["2026-02-03", "2026-03-03"],
    "E": ["2026-02-14"],
    "F": ["2026-03-01", "2026-04-05"],
    "G": ["2026-01-25", "2026-04-25"],
    "H": ["2026-04-20"],
    "I": ["2025-10-15", "2026-03-20"],
    "J": ["2026-01-02", "2026-02-02"],
}
# Midnight at the start of May in Amsterdam (UTC+2): April is complete.
AS_OF = datetime(2026, 4, 30, 22, 0, tzinfo=UTC)


def _post(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, PROGRAM)
    for member, days in DAYS.items():
        for n, day in enumerate(days):
            buy(engine, f"{member}-{n}", day, [COFFEE, COFFEE], member=member)
    # C buys in February and returns everything: C did not buy in February.
    buy(engine, "C-back", "2026-02-20", [COFFEE], member="C")
    refund(engine, "C-back-r", "C-back", "2026-02-21", "4.00")
    # K's only purchase is returned in full: K is in no period, cohort or lapse list.
    buy(engine, "K-0", "2026-01-15", [COFFEE], member="K")
    refund(engine, "K-0-r", "K-0", "2026-01-16", "4.00")
    # B's March purchase is half returned: still a purchase in March.
    refund(engine, "B-1-r", "B-1", "2026-03-16", "4.00")
    # E buys only tobacco in March (excluded), and coffee at a store of no program.
    buy(engine, "E-tobacco", "2026-03-05", [TOBACCO], member="E")
    buy(engine, "E-elsewhere", "2026-03-06", [COFFEE], member="E", store="RTM-01")


def _figures(row: dict[str, Any]) -> tuple[object, ...]:
    return tuple(row[k] for k in ("period", "at_start", "at_end", "new", "first_time",
                                  "returning", "retained", "lost", "retention", "defection"))


def test_retention_cohorts_and_tenure_from_the_database(engine: Engine,
                                                        tmp_path: Path) -> None:
    _post(engine, tmp_path)
    report = retention_report(engine, "corner-shop", AS_OF, "month", 4).as_json()
    # The figures worked out by hand in tests/unit/test_analytics_retention.py.
    assert [_figures(p) for p in report["periods"]] == [
        ("2026-01", 0, 5, 5, 5, 0, 0, 0, None, None),
        ("2026-02", 5, 4, 2, 2, 0, 2, 3, 0.4, 0.6),
        ("2026-03", 4, 5, 3, 1, 2, 2, 2, 0.5, 0.5),
        ("2026-04", 5, 4, 2, 1, 1, 2, 3, 0.4, 0.6),
    ]
    assert not report["periods"][-1]["partial"]
    assert report["members"] == 10  # not K
    # Relationship length as of 1 May (local): one day more than the unit test's as of
    # 30 April, in the same buckets: H; D, E, F; A, B, C, G, J; I.
    assert [(b["label"], b["members"]) for b in report["tenure"][:4]] == [
        ("under 30 days", 1), ("30-89 days", 3), ("90-179 days", 5), ("180-364 days", 1)]
    quarters = retention_report(engine, "corner-shop", AS_OF, "quarter", 2).as_json()
    # Q2 as of 1 May: partial; S = 9, E = {A, F, G, H}, N = {H}, retained 3 of 9.
    assert [_figures(p)[:8] for p in quarters["periods"]] == [
        ("2026-Q1", 1, 9, 8, 8, 0, 1, 0), ("2026-Q2", 9, 4, 1, 1, 0, 3, 6)]
    assert quarters["periods"][-1]["partial"]

    found = cohort_report(engine, "corner-shop", AS_OF, 4).as_json()
    cohorts = found["cohorts"]
    assert not found["last_month_partial"]
    assert [(c["month"], c["size"], c["active"], c["shares"]) for c in cohorts] == [
        ("2026-01", 5, [5, 2, 2, 2], [1.0, 0.4, 0.4, 0.4]),
        ("2026-02", 2, [2, 1, 0], [1.0, 0.5, 0.0]),
        ("2026-03", 1, [1, 1], [1.0, 1.0]),
        ("2026-04", 1, [1], [1.0]),
    ]
    # As of mid-April, the last month is April so far, and later purchases do not count.
    mid_april = datetime(2026, 4, 15, 10, 0, tzinfo=UTC)
    april = retention_report(engine, "corner-shop", mid_april, "month", 1).as_json()
    # S = bought in March = {A, B, D, F, I}; E so far = {A (10th), F (5th)}; N = 0.
    assert _figures(april["periods"][0])[:8] == ("2026-04", 5, 2, 0, 0, 0, 2, 3)
    assert april["periods"][0]["partial"]
    assert cohort_report(engine, "corner-shop", mid_april, 1).as_json()[
        "last_month_partial"]


def test_lapse_by_the_gap_rule_from_the_database(engine: Engine, tmp_path: Path) -> None:
    _post(engine, tmp_path)
    report = lapsed_members(engine, "corner-shop", AS_OF).as_json()
    # As of 1 May, with the default rule (3 x own mean gap, 90 days for one day):
    # C bought on one day (the refunded 20 February counts nowhere): 11 + 28 + 31 + 30 + 1
    # = 101 days > 90: lapsed. J: 2 January and 2 February, mean gap 31, limit 93; 2
    # February -> 1 May is 26 + 31 + 30 + 1 = 88 days: not lapsed. E: one day, 14 February
    # -> 1 May = 14 + 31 + 30 + 1 = 76 days: not lapsed.
    assert report["rule"] == "gap"
    assert report["members"] == 10
    assert [(v["member_id"], v["gap_days"], v["reason"]) for v in report["lapsed"]] == [
        ("C", 101, "101 days since the last purchase is more than the default 90 days "
                   "(one purchase day)")]
    # P(alive) given, but only 7 members bought on two days or more (A, B, D, F, G, I,
    # J), fewer than the default 30 the model needs: the gap rule still decides.
    given = lapsed_members(engine, "corner-shop", AS_OF,
                           p_alive={m: 0.01 for m in DAYS}).as_json()
    assert given["rule"] == "gap"
    assert given["why"].startswith("only 7 member(s) bought on two days or more")
    assert [v["member_id"] for v in given["lapsed"]] == ["C"]


def test_retention_split_by_segment_tier_and_club(engine: Engine, tmp_path: Path) -> None:
    _post(engine, tmp_path)
    taken = datetime(2026, 4, 27, 3, 0, tzinfo=UTC)
    later = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
    earlier = datetime(2026, 4, 20, 3, 0, tzinfo=UTC)
    snapshot = {"program_id": "corner-shop", "recency_days": 1, "frequency": 1,
                "monetary_minor": 1, "r": 1, "f": 1, "m": 1, "recorded_at": taken}
    tier = {"program_id": "corner-shop", "base_tier": "", "enrolled_on": date(2026, 1, 1),
            "updated_at": taken}
    club = {"program_id": "corner-shop", "level": "", "source": "explicit",
            "auto_renew": False, "updated_at": taken}
    with write_transaction(engine) as conn:
        conn.execute(insert(tables.rfm_snapshots), [
            {**snapshot, "member_id": m, "as_of_date": date(2026, 4, 27), "taken_at": taken,
             "segment": "gold" if m in "ABD" else "silver"} for m in "ABDFIJ"] + [
            # A's snapshot after as_of and B's older one do not decide.
            {**snapshot, "member_id": "A", "as_of_date": date(2026, 5, 4), "taken_at": later,
             "segment": "silver"},
            {**snapshot, "member_id": "B", "as_of_date": date(2026, 4, 20),
             "taken_at": earlier, "segment": "silver"}])
        conn.execute(insert(tables.tier_status), [
            {**tier, "member_id": m, "tier": "gold" if m in "ABD" else "silver"}
            for m in "ABDFIJ"] + [{**tier, "member_id": "C", "tier": ""}])
        conn.execute(insert(tables.club_memberships), [
            {**club, "member_id": "I", "club_id": "club", "status": "active",
             "joined_at": earlier, "ended_at": None},
            # Left after as_of: in the club at as_of.
            {**club, "member_id": "F", "club_id": "club", "status": "left",
             "joined_at": earlier, "ended_at": later},
            # Left before as_of, pending, and joined after as_of: not in the club.
            {**club, "member_id": "A", "club_id": "club", "status": "left",
             "joined_at": earlier, "ended_at": taken},
            {**club, "member_id": "B", "club_id": "club", "status": "pending",
             "joined_at": earlier, "ended_at": None},
            {**club, "member_id": "D", "club_id": "club", "status": "active",
             "joined_at": later, "ended_at": None}])
    expected = {
        # gold = {A, B, D}: S = bought in March = 3; E = bought in April = {A}; 1 / 3.
        "gold": (3, 1, 0, 1),
        # silver = {F, I, J}: S = {F, I}; E = {F}; 1 / 2.
        "silver": (2, 1, 0, 1),
        # no group = {C, E, G, H}: S = 0; E = {G, H}, both new.
        "": (0, 2, 2, 0),
    }
    for split in ("segment", "tier"):
        groups = retention_report(engine, "corner-shop", AS_OF, "month", 1,
                                  split=split).as_json()["groups"]  # type: ignore[arg-type]
        assert {name: tuple(rows[0][k] for k in ("at_start", "at_end", "new", "retained"))
                for name, rows in groups.items()} == expected, split
    clubs = retention_report(engine, "corner-shop", AS_OF, "month", 1,
                             split="club").as_json()["groups"]
    # club = {F, I}: S = bought in March = {F, I}; E = {F}; retention 1 / 2; the other
    # eight members are in no club: S = {A, B, D}, E = {A, G, H}, N = {G, H}.
    assert {name: tuple(rows[0][k] for k in ("at_start", "at_end", "new", "retained"))
            for name, rows in clubs.items()} == {"club": (2, 1, 0, 1), "": (3, 3, 2, 1)}
    assert clubs["club"][0]["retention"] == 0.5


def test_unknown_program_and_an_as_of_before_any_purchase(engine: Engine,
                                                          tmp_path: Path) -> None:
    _post(engine, tmp_path)
    with pytest.raises(NotFoundError, match="no program 'nope'"):
        retention_report(engine, "nope", AS_OF)
    before = datetime(2025, 10, 1, tzinfo=UTC)
    for report in (retention_report, cohort_report, lapsed_members):
        with pytest.raises(NoPurchasesError, match="no counted purchase by 2025-10-01"):
            report(engine, "corner-shop", before)


# --- the commands, through the console script's own main() (errors as one sentence) ----

def _loyalty(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             db_url: str, *args: str) -> tuple[int, str, str]:
    """Run `loyalty --database URL analytics ARGS` in-process: the real `loyalty` command,
    its root options and error handling."""
    monkeypatch.setattr(sys, "argv", ["loyalty", "--database", db_url, "analytics", *args])
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/loyalty-test-config")
    monkeypatch.delenv("LOYALTY_CONFIG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli_app.main()
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return int(done.value.code or 0), out, err


def test_the_commands_print_json_csv_tables_and_charts(
        engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _post(engine, tmp_path)
    monkeypatch.chdir(tmp_path)
    as_of = ("--as-of", "2026-05-01")  # a date: its midnight in Amsterdam, as AS_OF
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "retention", "--program",
                            "corner-shop", *as_of, "--periods", "4", "--json")
    assert code == 0
    assert [p["retention"] for p in json.loads(out)["periods"]] == [None, 0.4, 0.5, 0.4]
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "retention", "--program",
                            "corner-shop", *as_of, "--periods", "2", "--csv")
    assert out.splitlines() == [
        "group,period,start,end,partial,at_start,at_end,new,first_time,returning,retained,"
        "lost,retention,defection",
        ",2026-03,2026-03-01,2026-04-01,False,4,5,3,1,2,2,2,0.5,0.5",
        ",2026-04,2026-04-01,2026-05-01,False,5,4,2,1,1,2,3,0.4,0.6"]
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "retention", "--program",
                            "corner-shop", *as_of, "--periods", "4")
    assert code == 0 and "40.0%" in out and "90-179 days" in out
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "cohorts", "--program",
                            "corner-shop", *as_of, "--months", "4", "--csv")
    assert out.splitlines()[:3] == ["cohort,size,k,active,share", "2026-01,5,0,5,1.0",
                                    "2026-01,5,1,2,0.4"]
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "cohorts", "--program",
                            "corner-shop", *as_of, "--months", "4")
    assert code == 0 and "2026-02" in out and "50%" in out
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "lapsed", "--program",
                            "corner-shop", *as_of, "--csv")
    assert out.splitlines()[1:] == [
        "C,gap,101,,90.0,,101 days since the last purchase is more than the default 90 "
        "days (one purchase day)"]
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "lapsed", "--program",
                            "corner-shop", *as_of)
    assert code == 0 and "1 of 10 member(s) lapsed" in " ".join(out.split())
    for name, args in (("curve", ("retention", "--by", "tier")), ("heatmap", ("cohorts",))):
        for suffix in (".png", ".svg", ".html"):
            chart = tmp_path / f"{name}{suffix}"
            code, out, err = _loyalty(monkeypatch, capsys, db_url, *args, "--program",
                                      "corner-shop", *as_of, "--chart", str(chart))
            assert code == 0, err
            assert f"chart written to {chart}" in "".join(out.split("\n"))
            data = chart.read_bytes()
            assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data
            if suffix == ".html":  # offline: nothing loaded from elsewhere; the numbers
                assert not re.search(rb"(src|href)=\"https?:|url\(https?:|<script|<link",
                                     data)
                assert b"<table>" in data
    # Under --json the chart is written and standard output stays JSON.
    code, out, _ = _loyalty(monkeypatch, capsys, db_url, "cohorts", "--program",
                            "corner-shop", *as_of, "--months", "4", "--json", "--chart",
                            str(tmp_path / "again.svg"))
    assert code == 0 and json.loads(out)["cohorts"][0]["size"] == 5
    assert (tmp_path / "again.svg").read_bytes().startswith(b"<?xml")


def test_the_commands_refuse_in_one_sentence(
        engine: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _post(engine, tmp_path)
    code, _, err = _loyalty(monkeypatch, capsys, db_url, "retention", "--program", "nope")
    assert code == 1
    assert err.startswith("error: there is no program 'nope'") and len(err.splitlines()) == 1
    for command in ("retention", "cohorts", "lapsed"):
        code, _, err = _loyalty(monkeypatch, capsys, db_url, command, "--program",
                                "corner-shop", "--as-of", "2025-10-01")
        assert code == 1, command
        assert " ".join(err.split()) == (
            "error: program corner-shop has no counted purchase by 2025-10-01T00:00:00+02:00;"
            " give a later --as-of")
    code, _, err = _loyalty(monkeypatch, capsys, db_url, "cohorts", "--program",
                            "corner-shop", "--json", "--csv")
    assert code == 1 and "give --json or --csv, not both" in err
    code, _, err = _loyalty(monkeypatch, capsys, db_url, "cohorts", "--program",
                            "corner-shop", "--chart", "heat.gif")
    assert code == 1 and "give a file name ending in .png, .svg or .html" in err
