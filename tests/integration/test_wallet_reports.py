"""The share-of-wallet report and the loyalty matrix on both databases, against tables
worked by hand.

Program corner-shop (EUR, Amsterdam, tobacco excluded). Counted spend (minor units):

| purchase | member | local time | lines | counted |
|---|---|---|---|---|
| T1 | A | 2026-01-15 10:00 | coffee 10.00, tobacco 5.00 | coffee 1000 (tobacco excluded) |
| T2 | A | 2026-03-31 23:30 (+02:00; 21:30 UTC) | coffee 20.00 | coffee 2000 in March |
| T3 | A | 2026-04-01 00:30 (+02:00; 22:30 UTC on 31 March) | coffee 7.00 | coffee 700 in April |
| T4 | A | 2026-02-10 | tea 8.00 | tea 800 |
| T5 | B | 2026-02-01, 10.00 of it refunded on 2026-02-05 | coffee 40.00 | 4000 - 1000 = 3000 |
| T6 | B | 2026-03-01, refunded in full | coffee 5.00 | nothing |

Wallet totals (D is no member of the program; C's tea is in yen):

| member | category | period | wallet | spend | counted | share | growth |
|---|---|---|---|---|---|---|---|
| A | coffee | 2026-Q1 | 10000 | 1000 + 2000 | 3000 | 0.3 | 7000 |
| A | coffee | 2026-04 | 5000 | 700 | 700 | 0.14 | 4300 |
| A | tea | 2026-Q1 | 800 | 800 | 800 | 1 | 0 |
| A | tobacco | 2026-Q1 | 2000 | 0 (excluded) | 0 | 0 | 2000 |
| B | coffee | 2026 | 20000 | 3000 | 3000 | 0.15 | 17000 |
| B | coffee | 2026-Q1 | 2000 | 3000 (over) | 2000 | 1 | 0 |
| C | coffee | 2026-Q1 | 6000 | 0 | 0 | 0 | 6000 |

The program's coffee share in 2026-Q1: (3000 + 2000 + 0) / (10000 + 2000 + 6000) = 5/18;
over every category of 2026-Q1: (5000 + 800 + 0) / (18000 + 800 + 2000) = 5800/20800.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine

from loyalty_engine.rules.compiled_insights import MatrixThresholds
from loyalty_engine.services import wallet as wallet_service
from loyalty_engine.services.enrolment import enrol_member
from loyalty_engine.services.surveys import import_surveys
from loyalty_engine.services.wallet import (
    WalletPeriodError,
    import_wallet,
    loyalty_matrix_report,
    member_loyalty,
    wallet_report,
)

from .walk import apply_text, buy, refund

# The small shop of the analytics tests (one euro one point; tobacco excluded).
PROGRAM = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
           / "corner-shop.yaml").read_text(encoding="utf-8")
AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WALLET = """\
member_id,category,period,amount,currency
A,coffee,2026-Q1,100.00,EUR
A,coffee,2026-04,50.00,EUR
A,tea,2026-Q1,8.00,EUR
A,tobacco,2026-Q1,20.00,EUR
B,coffee,2026,200.00,EUR
B,coffee,2026-Q1,20.00,EUR
C,coffee,2026-Q1,60.00,EUR
C,tea,2026-Q1,1000,JPY
D,coffee,2026-Q1,10.00,EUR
"""


@pytest.fixture
def shop(engine: Engine, tmp_path: Path) -> Engine:
    apply_text(engine, tmp_path, PROGRAM)
    buy(engine, "T1", "2026-01-15T10:00:00+01:00",
        [("LATTE", "coffee", "1", "10.00"), ("CIGS", "tobacco", "1", "5.00")], member="A")
    buy(engine, "T2", "2026-03-31T23:30:00+02:00", [("BEANS", "coffee", "1", "20.00")],
        member="A")
    buy(engine, "T3", "2026-04-01T00:30:00+02:00", [("LATTE", "coffee", "1", "7.00")],
        member="A")
    buy(engine, "T4", "2026-02-10", [("GREEN", "tea", "1", "8.00")], member="A")
    buy(engine, "T5", "2026-02-01", [("BEANS", "coffee", "2", "20.00")], member="B")
    refund(engine, "R5", "T5", "2026-02-05", "10.00")
    buy(engine, "T6", "2026-03-01", [("LATTE", "coffee", "1", "5.00")], member="B")
    refund(engine, "R6", "T6", "2026-03-02", "5.00")
    at = datetime(2026, 1, 2, tzinfo=UTC)
    enrol_member(engine, "C", {}, {}, at, at, "corner-shop")
    enrol_member(engine, "D", {}, {}, at, at)  # a member, but not of the program
    path = tmp_path / "wallet.csv"
    path.write_text(WALLET, encoding="utf-8")
    assert import_wallet(engine, path, AS_OF).committed
    return engine


def _members(report: Any) -> list[tuple[Any, ...]]:
    return [(m["member_id"], m["category"], m["period"], m["spend_minor"], m["wallet_minor"],
             m["share"], m["growth_minor"], m["exceeds_wallet"])
            for m in report.as_json()["members"]]


def test_the_wallet_report_by_hand(shop: Engine) -> None:
    report = wallet_report(shop, "corner-shop", AS_OF)
    assert _members(report) == [
        ("A", "coffee", "2026-04", 700, 5000, 0.14, 4300, False),
        ("A", "coffee", "2026-Q1", 3000, 10000, 0.3, 7000, False),
        ("A", "tea", "2026-Q1", 800, 800, 1.0, 0, False),
        ("A", "tobacco", "2026-Q1", 0, 2000, 0.0, 2000, False),
        ("B", "coffee", "2026", 3000, 20000, 0.15, 17000, False),
        ("B", "coffee", "2026-Q1", 3000, 2000, 1.0, 0, True),
        ("C", "coffee", "2026-Q1", 0, 6000, 0.0, 6000, False),
    ]
    data = report.as_json()
    assert [(p["category"], p["period"], p["members"], p["spend_minor"], p["wallet_minor"],
             p["complete"]) for p in data["by_category"]] == [
        ("coffee", "2026", 1, 3000, 20000, False),
        ("coffee", "2026-Q1", 3, 5000, 18000, True),
        ("tea", "2026-Q1", 1, 800, 800, True),
        ("tobacco", "2026-Q1", 1, 0, 2000, True),
        ("coffee", "2026-04", 1, 700, 5000, True),
    ]
    assert report.by_category[1].share == Fraction(5, 18)
    assert [(p.period, p.spend_minor, p.wallet_minor, p.share) for p in report.by_period] == [
        ("2026", 3000, 20000, Fraction(3, 20)),
        ("2026-Q1", 5800, 20800, Fraction(5800, 20800)),
        ("2026-04", 700, 5000, Fraction(7, 50)),
    ]
    assert [(r["rank"], r["member_id"], r["category"], r["period"], r["growth_minor"])
            for r in data["growth_ranking"]] == [
        (1, "B", "coffee", "2026", 17000),
        (2, "A", "coffee", "2026-Q1", 7000),
        (3, "C", "coffee", "2026-Q1", 6000),
        (4, "A", "coffee", "2026-04", 4300),
        (5, "A", "tobacco", "2026-Q1", 2000),
    ]
    assert (data["currency"], data["other_currency_totals"]) == ("EUR", 1)


def test_the_wallet_report_of_one_period(shop: Engine) -> None:
    report = wallet_report(shop, "corner-shop", AS_OF, period="2026-Q1")
    assert [r[:4] for r in _members(report)] == [
        ("A", "coffee", "2026-Q1", 3000), ("A", "tea", "2026-Q1", 800),
        ("A", "tobacco", "2026-Q1", 0), ("B", "coffee", "2026-Q1", 3000),
        ("C", "coffee", "2026-Q1", 0)]
    assert [(p.period, p.share) for p in report.by_period] == [
        ("2026-Q1", Fraction(5800, 20800))]


def test_the_wallet_report_as_of_an_earlier_instant(shop: Engine) -> None:
    # As of 3 February (local), A had bought T1 only and B's T5 was not yet refunded.
    report = wallet_report(shop, "corner-shop", datetime(2026, 2, 3, tzinfo=UTC),
                           period="2026-Q1")
    assert [(r[0], r[1], r[3]) for r in _members(report)] == [
        ("A", "coffee", 1000), ("A", "tea", 0), ("A", "tobacco", 0), ("B", "coffee", 4000),
        ("C", "coffee", 0)]


def test_a_bad_period_is_refused(shop: Engine) -> None:
    with pytest.raises(WalletPeriodError, match="period 2026-Q7: a quarter is Q1 to Q4"):
        wallet_report(shop, "corner-shop", AS_OF, period="2026-Q7")


# --- the loyalty matrix ------------------------------------------------------------------

SURVEYS = """\
member_id,kind,score,answered_at
A,nps,10,2026-05-01T10:00:00+02:00
B,nps,3,2026-02-01T10:00:00+01:00
B,nps,9,2026-05-20T10:00:00+02:00
B,nps,1,2026-06-15T10:00:00+02:00
E,commitment,2,2026-05-01T10:00:00+02:00
F,nps,5,2026-05-01T10:00:00+02:00
D,nps,10,2026-05-01T10:00:00+02:00
"""
# F scores as RFM would give them (the service takes them as an input): C, E and F have no
# purchases, but E and F are given scores to place them in every cell.
F = {"A": 5, "B": 2, "E": 4, "F": 1}


def _f_scores(conn: Connection, program_id: str, as_of: datetime) -> Mapping[str, int]:
    assert program_id == "corner-shop"
    return F


@pytest.fixture
def surveyed(shop: Engine, tmp_path: Path) -> Engine:
    at = datetime(2026, 1, 2, tzinfo=UTC)
    for member in ("E", "F"):
        enrol_member(shop, member, {}, {}, at, at, "corner-shop")
    path = tmp_path / "surveys.csv"
    path.write_text(SURVEYS, encoding="utf-8")
    assert import_surveys(shop, path, datetime(2026, 7, 1, tzinfo=UTC)).committed
    return shop


def test_the_matrix_by_hand(surveyed: Engine) -> None:
    """| member | F | latest NPS / commitment by 1 June | type |
    |---|---|---|---|
    | A | 5 | nps 10 | true |
    | B | 2 | nps 9 (20 May; 15 June's 1 comes later) | latent |
    | C | 0 | none | unknown, not behaving |
    | E | 4 | commitment 2 | spurious |
    | F | 1 | nps 5 | none |
    D answered, but is no member of the program: not counted."""
    data = loyalty_matrix_report(surveyed, "corner-shop", AS_OF, _f_scores).as_json()
    assert [(m["member_id"], m["f"], m["nps"], m["commitment"], m["type"])
            for m in data["members"]] == [
        ("A", 5, 10, None, "true"), ("B", 2, 9, None, "latent"),
        ("C", 0, None, None, "unknown"), ("E", 4, None, 2, "spurious"),
        ("F", 1, 5, None, "none")]
    # The share of wallet is shown whether or not it counts as behaviour (see below).
    assert {m["member_id"]: m["wallet_share"] for m in data["members"]} == {
        "A": 0.14, "B": 0.15, "C": 0.0, "E": None, "F": None}
    assert data["cells"] == {"true": 1, "latent": 1, "spurious": 1, "none": 1}
    assert data["shares"] == {"true": 0.25, "latent": 0.25, "spurious": 0.25, "none": 0.25}
    assert data["unknown_attitude"] == {"behavioural": 0, "not_behavioural": 1}
    assert data["thresholds"] == {"f_at_least": 4, "wallet_share_at_least": None,
                                  "nps_at_least": 9, "commitment_at_least": 5}


def test_the_matrix_as_of_an_earlier_instant(surveyed: Engine) -> None:
    # As of 1 March: B's latest answer is the 3 of February; nobody else had answered.
    data = loyalty_matrix_report(surveyed, "corner-shop", datetime(2026, 3, 1, tzinfo=UTC),
                                 _f_scores).as_json()
    assert {m["member_id"]: m["type"] for m in data["members"]} == {
        "A": "unknown", "B": "none", "C": "unknown", "E": "unknown", "F": "unknown"}
    assert data["unknown_attitude"] == {"behavioural": 2, "not_behavioural": 2}


def test_share_of_wallet_as_behaviour_when_the_program_sets_it(
        surveyed: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """With wallet_share_at_least 1/10, B's share (the year 2026, the longest of the
    periods begun by 1 June that begin latest: 3000 / 20000 = 0.15) makes B behaviourally
    loyal: latent becomes true. A's latest period is 2026-04 (700 / 5000 = 0.14)."""
    chosen = wallet_service.program_as_of

    def with_wallet_threshold(conn: Connection, program_id: str, as_of: datetime) -> Any:
        program = chosen(conn, program_id, as_of)
        insights = dataclasses.replace(program.insights, matrix=MatrixThresholds(
            wallet_share_at_least=Fraction(1, 10)))
        return dataclasses.replace(program, insights=insights)

    monkeypatch.setattr(wallet_service, "program_as_of", with_wallet_threshold)
    data = loyalty_matrix_report(surveyed, "corner-shop", AS_OF, _f_scores).as_json()
    assert {m["member_id"]: (m["wallet_share"], m["type"]) for m in data["members"]} == {
        "A": (0.14, "true"), "B": (0.15, "true"), "C": (0.0, "unknown"),
        "E": (None, "spurious"), "F": (None, "none")}
    assert data["cells"] == {"true": 2, "latent": 0, "spurious": 1, "none": 1}


def test_one_members_loyalty_is_their_row_of_the_matrix(surveyed: Engine) -> None:
    report = loyalty_matrix_report(surveyed, "corner-shop", AS_OF, _f_scores)
    for row in report.members:
        alone = member_loyalty(surveyed, "corner-shop", row.member_id, AS_OF,
                               F.get(row.member_id, 0))
        assert alone == row
    # D is a member, but not of the program.
    assert member_loyalty(surveyed, "corner-shop", "D", AS_OF, 0) is None
