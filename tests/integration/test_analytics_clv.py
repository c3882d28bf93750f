"""CLV on both databases: the models' inputs read from a small stored history and checked by
hand (repeat days, recency and age in weeks, the mean spend of the repeat days; refunds
net, excluded categories and other stores left out, purchases after the calibration end
ignored), the simple retention-based CLV worked out for a program with too few repeat
customers, segments from the snapshot in force, the offer's worth, and the models fitted
for a program with enough."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from loyalty_engine.analytics import clv
from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.records.clv_inputs import clv_inputs, member_margins
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.rules.compiled_insights import Economics
from loyalty_engine.services import analytics_clv
from loyalty_engine.services.analytics_clv import clv_report, member_clv
from loyalty_engine.services.analytics_members import NoPurchasesError
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.store import tables
from loyalty_engine.store.database import read_transaction, write_transaction

from .walk import apply_text, buy, refund

# The small shop of the analytics tests (one euro one point; tobacco excluded).
PROGRAM = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "programs"
           / "corner-shop.yaml").read_text(encoding="utf-8")
COFFEE = ("LATTE", "coffee", "1", "4.00")
SNACK = ("COOKIE", "food", "1", "2.00")
TOBACCO = ("CIGS", "tobacco", "1", "6.00")
CALIBRATION_END = datetime(2026, 6, 30, 10, 0, tzinfo=UTC)  # noon in Amsterdam
AS_OF = datetime(2026, 7, 15, tzinfo=UTC)


def _history(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, PROGRAM)
    # M-1: two purchases on 5 January (one day), the tobacco not counted: 4.00 + 2.00
    buy(engine, "A1", "2026-01-05", [COFFEE, TOBACCO])
    buy(engine, "A2", "2026-01-05T18:00:00+01:00", [SNACK])
    buy(engine, "A3", "2026-02-02", [COFFEE, COFFEE])  # 8.00, 3.00 refunded: 5.00
    refund(engine, "RA3", "A3", "2026-02-10", "3.00")
    buy(engine, "A4", "2026-03-02", [COFFEE])
    buy(engine, "A5", "2026-05-11", [COFFEE])
    buy(engine, "A6", "2026-07-10", [COFFEE])  # after the calibration end
    # M-2: one counted day; a purchase refunded in full and one of tobacco only count nowhere
    buy(engine, "B1", "2026-04-06", [COFFEE], member="M-2")
    buy(engine, "B2", "2026-05-04", [COFFEE], member="M-2")
    refund(engine, "RB2", "B2", "2026-05-06", "4.00")
    buy(engine, "B3", "2026-06-01", [TOBACCO], member="M-2")
    # M-3: a purchase in another store, then three counted days; a refund after as_of
    buy(engine, "C0", "2026-03-10", [COFFEE], member="M-3", store="RTM-01")
    buy(engine, "C1", "2026-03-11", [COFFEE], member="M-3")
    buy(engine, "C2", "2026-03-25", [COFFEE], member="M-3")
    buy(engine, "C3", "2026-04-20", [COFFEE], member="M-3")
    refund(engine, "RC2", "C2", "2026-07-20", "2.00")


def test_the_models_inputs_by_hand(engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    with read_transaction(engine) as conn:
        program = load_catalog(conn).versions("corner-shop")[-1].program
        inputs = clv_inputs(conn, program, CALIBRATION_END, AS_OF)
    assert inputs.calibration_day == date(2026, 6, 30)
    assert inputs.member_ids == ["M-1", "M-2", "M-3"]
    # M-1: days 5 Jan (6.00), 2 Feb (5.00), 2 Mar (4.00), 11 May (4.00): x = 3; last day
    # 126 days after the first = 18 weeks; T = 176 days = 25 1/7 weeks; repeat spend 13.00
    # M-2: 6 Apr only: x = 0, T = 85 days; M-3: 11 Mar, 25 Mar, 20 Apr (the refund of 25
    # March comes after as_of): x = 2, t_x = 40 days, T = 111 days, repeat spend 8.00
    assert inputs.x.tolist() == [3, 0, 2]
    assert inputs.t_x.tolist() == pytest.approx([18.0, 0.0, 40 / 7])
    assert inputs.T.tolist() == pytest.approx([176 / 7, 85 / 7, 111 / 7])
    assert inputs.spend_minor.tolist() == [1900, 400, 1200]
    assert inputs.repeat_spend_minor.tolist() == [1300, 0, 800]
    assert inputs.mean_repeat_spend_minor.tolist() == pytest.approx([1300 / 3, 0.0, 400.0])
    assert [d.isoformat() for d in inputs.first_day] == ["2026-01-05", "2026-04-06",
                                                          "2026-03-11"]
    with read_transaction(engine) as conn:
        later = clv_inputs(conn, program, CALIBRATION_END, datetime(2026, 7, 21, tzinfo=UTC))
    # as of 21 July M-3's 25 March purchase is 2.00: repeat spend 6.00
    assert later.repeat_spend_minor.tolist() == [1300, 0, 600]


def _snapshot(engine: Engine, member: str, taken: datetime, segment: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(insert(tables.rfm_snapshots).values(
            member_id=member, program_id="corner-shop", as_of_date=taken.date(),
            taken_at=taken, recency_days=1, frequency=1, monetary_minor=1, r=5, f=5, m=5,
            segment=segment, clv_minor=None, p_alive=None, recorded_at=taken))


def test_too_few_repeat_customers_give_the_simple_clv_worked_by_hand(
        engine: Engine, tmp_path: Path) -> None:
    _history(engine, tmp_path)
    _snapshot(engine, "M-1", datetime(2026, 6, 1, 5, tzinfo=UTC), "loyal")
    _snapshot(engine, "M-1", datetime(2026, 7, 6, 5, tzinfo=UTC), "champions")
    _snapshot(engine, "M-1", datetime(2026, 7, 20, 5, tzinfo=UTC), "lost")  # after as_of
    _snapshot(engine, "M-2", datetime(2026, 7, 6, 5, tzinfo=UTC), "new")
    report = clv_report(engine, "corner-shop", CALIBRATION_END, None, AS_OF,
                        offer_cost_minor=50)
    assert report.method == "retention"
    assert report.reason.startswith("only 2 members bought again; at least 30 are needed")
    assert report.bgnbd is None and report.gamma_gamma is None
    # History 5 Jan - 30 Jun: 176 days, 25 whole weeks, so periods of 12 weeks: the period
    # 8 Apr - 30 Jun, the one before 14 Jan - 7 Apr. Before: M-1, M-2, M-3; of them M-1
    # (11 May) and M-3 (20 Apr) bought again: 2/3 per 12 weeks, (2/3)^(52/12) = 0.172560
    # a year. M-1 and M-3 spent 4.00 in the period: m = 400 x 52/12 x 30 % = 520.00 cents;
    # CLV = 520 x 0.172560 / (1.10 - 0.172560) = 96.75 -> 97 cents; M-2 spent nothing: 0.
    retention = report.retention
    assert retention is not None
    assert (retention.period_weeks, retention.period_start.isoformat(),
            retention.active_before, retention.retained) == (12, "2026-04-08", 3, 2)
    assert retention.retention_rate == pytest.approx(0.172560, abs=1e-6)
    rows = {m.member_id: m for m in report.members}
    assert {k: v.clv_minor for k, v in rows.items()} == {"M-1": 97, "M-2": 0, "M-3": 97}
    assert report.base_value_minor == 194
    assert rows["M-1"].expected_purchases == pytest.approx(52 / 12 * 0.172560, abs=1e-5)
    assert rows["M-1"].p_alive is None
    assert {k: v.segment for k, v in rows.items()} == {"M-1": "champions", "M-2": "new",
                                                       "M-3": ""}
    assert {k: v.worth_offer for k, v in rows.items()} == {"M-1": True, "M-2": False,
                                                           "M-3": True}
    data = report.as_json()
    assert data["model"]["bgnbd"] is None and data["model"]["retention"]["retained"] == 2
    assert data["offer"]["segments"] == [
        {"segment": "champions", "members": 1, "clv_minor": 97, "worth": 1,
         "worth_clv_minor": 97, "offer_cost_minor": 50, "net_minor": 47},
        {"segment": "new", "members": 1, "clv_minor": 0, "worth": 0, "worth_clv_minor": 0,
         "offer_cost_minor": 0, "net_minor": 0},
        {"segment": "", "members": 1, "clv_minor": 97, "worth": 1, "worth_clv_minor": 97,
         "offer_cost_minor": 50, "net_minor": 47}]
    assert (data["offer"]["worth"], data["offer"]["worth_clv_minor"]) == (2, 194)


def test_an_as_of_before_any_purchase_is_a_clear_error(engine: Engine,
                                                       tmp_path: Path) -> None:
    _history(engine, tmp_path)
    early = datetime(2025, 12, 1, tzinfo=UTC)
    with pytest.raises(NoPurchasesError, match="has no counted purchase by 2025-12-01"):
        clv_report(engine, "corner-shop", None, None, early)
    assert member_clv(engine, "corner-shop", early) == {}
    with pytest.raises(LoyaltyError, match="after the as-of instant"):
        clv_report(engine, "corner-shop", AS_OF, None, CALIBRATION_END)


def _visits(members: int, seed: int) -> dict[str, list[tuple[date, int]]]:
    """A history drawn the way the models tell it (seeded): each member starts on a day of
    January to March, returns after gaps of mean 1 / rate weeks (rates vary across
    members), after each visit stops coming with a probability of their own, and buys a
    number of lattes around a level of their own."""
    rng = np.random.default_rng(seed)
    plan: dict[str, list[tuple[date, int]]] = {}
    for k in range(members):
        day = date(2026, 1, 1).toordinal() + int(rng.integers(0, 90))
        rate, stop, level = rng.gamma(2.0, 0.25), rng.beta(1.0, 3.0), rng.gamma(2.0, 1.0)
        visits = [(day, 1 + int(rng.poisson(level)))]
        while rng.random() >= stop:
            day += max(1, round(7 * rng.exponential(1 / rate)))
            if day > date(2026, 6, 30).toordinal():
                break
            visits.append((day, 1 + int(rng.poisson(level))))
        plan[f"M-{k:02d}"] = [(date.fromordinal(d), q) for d, q in visits]
    return plan


def test_enough_repeat_customers_fit_the_models(engine: Engine, tmp_path: Path) -> None:
    apply_text(engine, tmp_path, PROGRAM)
    plan = _visits(48, seed=1717)
    repeaters = sum(1 for visits in plan.values() if len({d for d, _ in visits}) > 1)
    assert repeaters >= 30  # enough to fit (the program's default minimum)
    for member, visits in plan.items():
        for n, (day, lattes) in enumerate(visits):
            buy(engine, f"T-{member}-{n}", day.isoformat(),
                [("LATTE", "coffee", str(lattes), "4.00")], member=member)
    report = clv_report(engine, "corner-shop", CALIBRATION_END, 26, AS_OF)
    assert (report.method, report.reason) == (
        "bgnbd+gamma_gamma",
        f"{repeaters} members bought again (at least 30 are needed to fit the models)")
    assert report.bgnbd is not None and report.gamma_gamma is not None
    with read_transaction(engine) as conn:
        program = load_catalog(conn).versions("corner-shop")[-1].program
        inputs = clv_inputs(conn, program, CALIBRATION_END, AS_OF)
    assert inputs.repeat_members == repeaters
    # the figures are the core's on the stored inputs: 30 % margin, 10 % a year, 26 weeks
    expected = clv.model_clv(report.bgnbd, report.gamma_gamma, inputs.x, inputs.t_x,
                             inputs.T, inputs.mean_repeat_spend_minor, 0.3, 26, 0.1)
    assert [m.clv_minor for m in report.members] == [clv.to_minor(v) for v in expected.clv]
    assert report.base_value_minor == sum(clv.to_minor(v) for v in expected.clv)
    one_day = [m for m in report.members if m.x == 0]
    assert one_day and all(m.p_alive == 1.0 for m in one_day)
    assert all(0.0 <= (m.p_alive or 0.0) <= 1.0 for m in report.members)
    data = report.as_json()
    assert set(data["model"]["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(data["model"]["gamma_gamma"]) == {"p", "q", "gamma"}
    assert np.isfinite(data["model"]["bgnbd"]["log_likelihood"])
    # member_clv: calibrated to as_of, over the program's 52 weeks, keyed by member
    values = member_clv(engine, "corner-shop", AS_OF)
    assert len(values) == 48 and {v.model for v in values.values()} == {"bgnbd+gamma_gamma"}
    assert all(v.clv_minor >= 0 and v.expected_purchases >= 0 for v in values.values())


def _with_margins(program: CompiledProgram) -> CompiledProgram:
    economics = Economics(margin=Fraction(3, 10), category_margins={"food": Fraction(1, 2)})
    return replace(program, insights=replace(program.insights, economics=economics))


def test_margins_by_category_weigh_each_members_spend(engine: Engine, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    _history(engine, tmp_path)
    with read_transaction(engine) as conn:
        program = _with_margins(load_catalog(conn).versions("corner-shop")[-1].program)
        margins = member_margins(conn, program, CALIBRATION_END, AS_OF)
    # M-1's counted lines up to 30 June: coffee 4.00 + 2.50 + 2.50 + 4.00 + 4.00 = 17.00 at
    # 30 %, the 2.00 snack (food) at 50 %: (510 + 100) / 1900 = 61/190; the others only
    # bought coffee (the tobacco is excluded, not weighed at the default)
    assert margins == {"M-1": Fraction(61, 190), "M-2": Fraction(3, 10),
                       "M-3": Fraction(3, 10)}
    # and the CLV uses it: m = 400 x 52/12 x 61/190 = 556.49 cents a year;
    # 556.49 x 0.172559 / (1.1 - 0.172559) = 103.54 -> 104 (M-3 as before: 97)
    monkeypatch.setattr(analytics_clv, "program_as_of", lambda conn, program_id, as_of: program)
    report = clv_report(engine, "corner-shop", CALIBRATION_END, None, AS_OF)
    assert {m.member_id: m.clv_minor for m in report.members} == {"M-1": 104, "M-2": 0,
                                                                  "M-3": 97}
    assert report.members[0].margin == pytest.approx(61 / 190)
