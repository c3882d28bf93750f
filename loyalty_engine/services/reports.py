"""What a program owes, as of an instant: the liability, the breakage triangle and its
projection, the roll-forward, earn and burn, and the IFRS 15 schedule (docs/reports.md).

Each reads the program's version in force at the instant (its zone, currency and point
value; the first when none is yet, as services/programs.program_as_of gives it), groups
the ledger and the lots with a few set-based statements (records/ledger_reports.py) and
computes in the pure core (finance/)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.domain.errors import NoPurchasesError
from loyalty_engine.domain.money import currency_exponent, format_minor
from loyalty_engine.domain.periods import (
    month_index,
    months_between,
    period_end,
    period_key,
    period_start,
)
from loyalty_engine.engine.earning import local_day
from loyalty_engine.finance import breakage, revenue
from loyalty_engine.finance.liability import Liability
from loyalty_engine.finance.rollforward import Period, roll_forward
from loyalty_engine.finance.values import (
    ReportError,
    check_point_value,
    minor_per_point,
    share,
    value_minor,
)
from loyalty_engine.records import ledger_reports as reads
from loyalty_engine.records.member_figures import segment_mix
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.services.analytics_retention import retention_report
from loyalty_engine.services.programs import load_catalog, program_as_of
from loyalty_engine.store.unit_of_work import read_use_case

PERIODS = ("month", "quarter", "year")


def _programs(conn: Connection, as_of: datetime, program_id: str | None
              ) -> list[CompiledProgram]:
    """The programs reported on (every one, or the one named: an unknown one is a
    NotFoundError), each as services/programs.program_as_of gives it."""
    ids = load_catalog(conn).program_ids if program_id is None else [program_id]
    found = []
    for pid in ids:
        program = program_as_of(conn, pid, as_of)
        check_point_value(program.insights.economics.point_value, pid)
        found.append(program)
    return found


def _months(conn: Connection, program: CompiledProgram, as_of: datetime) -> reads.Months:
    return reads.Months(conn, program.timezone, as_of)


def local_month(program: CompiledProgram, at: datetime) -> str:
    return period_key("month", local_day(program, at))


def _rate(projection: breakage.Projection) -> tuple[Fraction, str]:
    if projection.outstanding_rate is None:
        return Fraction(1), "nothing outstanding in lots: every point assumed redeemed"
    return min(Fraction(1), max(Fraction(0), projection.outstanding_rate)), \
        projection.tail_basis


# -- liability ------------------------------------------------------------------------------

def _lots(conn: Connection, program: CompiledProgram, as_of: datetime) -> reads.LotFlows:
    return reads.lot_flows(conn, program.program_id, _months(conn, program, as_of), as_of)


def _owed(conn: Connection, program: CompiledProgram, as_of: datetime,
          lots: reads.LotFlows, projection: breakage.Projection) -> Liability:
    """The liability from the lots as of the instant and the projection of their
    triangle."""
    rate, basis = _rate(projection)
    total = reads.ledger_total(conn, program.program_id, as_of) - lots.unrecorded_expiry
    return Liability(program.program_id, program.currency,
                     program.insights.economics.point_value, total - lots.pending,
                     lots.pending, rate, basis, lots.unrecorded_expiry)


@read_use_case
def liability(conn: Connection, as_of: datetime, program_id: str | None = None
              ) -> list[Liability]:
    """Per program: the points outstanding as of the instant (the ledger dated by then,
    less lots expired by then that the expire step has not recorded yet), pending apart,
    valued at the point value, with the breakage and cost the history projects."""
    found = []
    for program in _programs(conn, as_of, program_id):
        lots = _lots(conn, program, as_of)
        projection = breakage.project(breakage.triangle(lots.flows,
                                                        local_month(program, as_of)))
        found.append(_owed(conn, program, as_of, lots, projection))
    return found


# -- breakage -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BreakageReport:
    program_id: str
    as_of: datetime
    cohorts: list[breakage.Cohort]
    projection: breakage.Projection
    moves: list[breakage.Estimate]

    def as_json(self) -> dict[str, Any]:
        p = self.projection
        return {
            "program_id": self.program_id, "as_of": self.as_of,
            "triangle": breakage.triangle_json(self.cohorts),
            "development": [{"age": k, "redeemed": breakage.shown(g),
                             "expired": breakage.shown(e), "cancelled": breakage.shown(c)}
                            for k, (g, e, c) in enumerate(p.ratios)],
            "tail_redeemed_share": breakage.shown(p.tail), "tail_basis": p.tail_basis,
            "ultimate": [{"cohort": month, "redeemed": breakage.shown(r),
                          "cancelled": breakage.shown(c)}
                         for month, (r, c) in sorted(p.ultimate.items())],
            "ultimate_redemption_rate": breakage.shown(p.ultimate_rate),
            "ultimate_breakage_rate": breakage.shown(
                None if p.ultimate_rate is None else 1 - p.ultimate_rate),
            "outstanding_redemption_rate": breakage.shown(p.outstanding_rate),
            "estimate_by_month": [{"month": e.month,
                                   "ultimate_redemption_rate": breakage.shown(e.ultimate_rate),
                                   "outstanding_redemption_rate":
                                       breakage.shown(e.outstanding_rate),
                                   "outstanding": e.outstanding} for e in self.moves],
        }


def _breakage(program: CompiledProgram, as_of: datetime, flows: breakage.Flows
              ) -> BreakageReport:
    """The triangle as of the instant, its projection, and the projection at the end of
    each month from the first issue month on."""
    last = local_month(program, as_of)
    cohorts = breakage.triangle(flows, last)
    months = months_between(min(flows.issued), last) if flows.issued else []
    return BreakageReport(program.program_id, as_of, cohorts, breakage.project(cohorts),
                          breakage.history(flows, months))


@read_use_case
def breakage_report(conn: Connection, as_of: datetime, program_id: str | None = None
                    ) -> list[BreakageReport]:
    """Per program: the development triangle by issue month as of the instant, the
    projection and how the estimate moved month by month."""
    return [_breakage(program, as_of, _lots(conn, program, as_of).flows)
            for program in _programs(conn, as_of, program_id)]


# -- roll-forward, earn and burn ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class RollForward:
    program_id: str
    currency: str
    point_value: str
    period: str
    periods: list[Period]
    balances: int  # what the balances show now (sum of points + pending)

    def as_json(self) -> dict[str, Any]:
        return {"program_id": self.program_id, "period": self.period,
                "periods": [p.as_json() for p in self.periods],
                "balances_now": self.balances}


def _window(program: CompiledProgram, conn: Connection, period: str, start: datetime | None,
            end: datetime | None, as_of: datetime) -> list[str]:
    """The period keys from the one holding start (default: the first entry's) to the one
    holding end (default: as_of)."""
    if period not in PERIODS:
        raise ReportError(f"a period is month, quarter or year, not {period!r}")
    for name, value in (("--from", start), ("--to", end)):
        if value is not None and value > as_of:
            raise ReportError(f"{name} {value.isoformat()} is in the future; a roll-forward "
                              "reports what the ledger holds up to now")
    if start is not None and end is not None and start > end:
        raise ReportError(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    first = start or reads.first_entry(conn, program.program_id) or as_of
    keys: list[str] = []
    for month in months_between(local_month(program, min(first, end or as_of)),
                                local_month(program, end or as_of)):
        key = period_key(period, period_start("month", month))
        if not keys or keys[-1] != key:
            keys.append(key)
    return keys


def _periods(conn: Connection, program: CompiledProgram, period: str,
             start: datetime | None, end: datetime | None, as_of: datetime) -> list[Period]:
    keys = _window(program, conn, period, start, end, as_of)
    # A period's movements are all its entries, those dated later today included (a
    # purchase posted ahead of the clock): the current period's closing is the balances.
    sums = reads.kind_sums(conn, program.program_id, _months(conn, program, as_of))
    first_key, last_key = keys[0], keys[-1]
    opening = 0
    within: dict[tuple[str, str], int] = {}
    for (month, kind), points in sums.items():
        key = period_key(period, period_start("month", month))
        if key < first_key:
            opening += points
        elif key <= last_key:
            within[(key, kind)] = within.get((key, kind), 0) + points
    return roll_forward(opening, keys, within)


@read_use_case
def roll_forward_report(conn: Connection, as_of: datetime, period: str = "month",
                        start: datetime | None = None, end: datetime | None = None,
                        program_id: str | None = None) -> list[RollForward]:
    """Per program and period: opening, the movements by kind, closing, exactly from the
    ledger (a period's movements are the entries dated in it); with what the balances
    show, to tie the last closing to. Periods after the one holding as_of are refused."""
    totals = reads.balance_totals(conn)
    return [RollForward(p.program_id, p.currency, str(p.insights.economics.point_value),
                        period, _periods(conn, p, period, start, end, as_of),
                        totals.get(p.program_id, 0))
            for p in _programs(conn, as_of, program_id)]


@read_use_case
def earn_burn(conn: Connection, as_of: datetime, period: str = "month",
              start: datetime | None = None, end: datetime | None = None,
              program_id: str | None = None) -> list[dict[str, Any]]:
    """Per program and period: points issued (earned), redeemed (net of reversals),
    expired, and the redemption rate (redeemed / issued in the period)."""
    found = []
    for p in _programs(conn, as_of, program_id):
        rows = []
        for r in _periods(conn, p, period, start, end, as_of):
            m = r.movements
            redeemed = m["redeemed"] - m["reversed"]
            rate = share(redeemed, m["earned"])
            rows.append({"period": r.key, "issued": m["earned"], "redeemed": redeemed,
                         "expired": m["expired"],
                         "redemption_rate": breakage.shown(rate)})
        found.append({"program_id": p.program_id, "period": period, "periods": rows})
    return found


# -- IFRS 15 --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Ifrs15Report:
    program_id: str
    currency: str
    rows: list[dict[str, Any]]  # per month, all cohorts together
    lines: list[revenue.JournalLine]

    def as_json(self) -> dict[str, Any]:
        exponent = currency_exponent(self.currency)
        return {"program_id": self.program_id, "currency": self.currency,
                "months": self.rows,
                "journal": [{"period": line.period, "date": line.date,
                             "account": line.account,
                             "debit": format_minor(line.debit_minor, exponent),
                             "credit": format_minor(line.credit_minor, exponent),
                             "memo": line.memo} for line in self.lines]}


def _last_day(month: str) -> str:
    return (date.fromordinal(period_end("month", month).toordinal() - 1)).isoformat()


@read_use_case
def ifrs15_report(conn: Connection, as_of: datetime, program_id: str,
                  start: datetime | None = None, end: datetime | None = None
                  ) -> Ifrs15Report:
    """The IFRS 15 schedule by local month: each month's sales (purchases that earned
    points) allocated between goods and points at the expected redemption estimated at the
    end of that month, the points' share recognised as that month's points are redeemed
    against the redemptions expected, with the catch-up when the estimate moves."""
    [program] = _programs(conn, as_of, program_id)
    _window(program, conn, "month", start, end, as_of)
    months_reader = _months(conn, program, as_of)
    flows = reads.lot_flows(conn, program.program_id, months_reader, as_of).flows
    report = _breakage(program, as_of, flows)
    sold = reads.sales(conn, program.program_id, months_reader, as_of)
    last = local_month(program, as_of)
    # The estimate at the end of each month from the first issue month on: the history's.
    projections = {e.month: e.projection for e in report.moves}
    months = list(projections)
    cells = {(c.month, cell.age): cell for c in report.cohorts for cell in c.cells}
    per_point = minor_per_point(program.insights.economics.point_value, program.currency)
    totals: dict[str, dict[str, int]] = {m: {"allocated_minor": 0, "revenue_minor": 0,
                                            "catch_up_minor": 0, "liability_minor": 0}
                                         for m in months}
    lines: dict[tuple[str, str], list[int]] = {}
    memos: dict[tuple[str, str], str] = {}
    for cohort in months:
        price, points = sold.get(cohort, (0, 0))
        if not price or not points:
            continue
        rate = projections[cohort].ultimate_rate
        ssp = revenue.points_ssp(points, per_point, Fraction(1) if rate is None else rate)
        allocated = revenue.allocate(price, price, ssp).points_minor
        steps = []
        for m in months[months.index(cohort):]:
            age = month_index(m) - month_index(cohort)
            expected = projections[m].ultimate.get(cohort, (Fraction(0), Fraction(0)))[0]
            steps.append(revenue.Step(m, allocated if m == cohort else 0,
                                     flows.moved.get((cohort, m, "redeemed"), 0), expected,
                                     cells[(cohort, age)].outstanding <= 0))
        schedule = revenue.recognise(steps)
        for r in schedule:
            t = totals[r.period]
            t["allocated_minor"] += r.allocated_minor
            t["revenue_minor"] += r.revenue_minor
            t["catch_up_minor"] += r.catch_up_minor
            t["liability_minor"] += r.liability_minor
        for line in revenue.journal(schedule, {m: _last_day(m) for m in months}):
            key = (line.period, line.account)
            memos.setdefault(key, line.memo.split(" (points issued")[0])
            total = lines.setdefault(key, [0, 0])
            total[0] += line.debit_minor
            total[1] += line.credit_minor
    first = local_month(program, start) if start else ""
    upto = local_month(program, end) if end else last
    keep = [m for m in months if first <= m <= upto]
    journal = []
    for (period, account), (debit, credit) in sorted(lines.items()):
        if first <= period <= upto and debit != credit:
            net_debit, net_credit = max(debit - credit, 0), max(credit - debit, 0)
            journal.append(revenue.JournalLine(period, _last_day(period), account,
                                              net_debit, net_credit,
                                              memos[(period, account)]))
    rows = [{"month": m, **totals[m]} for m in keep]
    return Ifrs15Report(program.program_id, program.currency, rows, journal)


# -- the program report ---------------------------------------------------------------------

@read_use_case
def program_report(conn: Connection, as_of: datetime, program_id: str) -> dict[str, Any]:
    """What the one-page program report shows: the liability now and month by month (the
    roll-forward's closings at the point value), the roll-forward, the breakage curves and
    the tier mix."""
    [program] = _programs(conn, as_of, program_id)
    lots = _lots(conn, program, as_of)  # read once: the liability and the breakage
    report = _breakage(program, as_of, lots.flows)
    owed = _owed(conn, program, as_of, lots, report.projection)
    periods = _periods(conn, program, "month", None, None, as_of)
    per_point = minor_per_point(program.insights.economics.point_value, program.currency)
    return {"program": program, "liability": owed, "periods": periods,
            "liability_by_month": [(p.key, value_minor(p.closing, per_point))
                                   for p in periods],
            "breakage": report, "tiers": reads.tier_mix(conn, program_id),
            "segments": segment_mix(conn, program_id, as_of),
            "retention": _retention_trend(conn, program_id, as_of)}


def _retention_trend(conn: Connection, program_id: str, as_of: datetime
                     ) -> list[tuple[str, float | None]]:
    """The monthly retention rate of the twelve months up to as_of (none before a purchase)."""
    try:
        found = retention_report(conn, program_id, as_of, period="month", periods=12)
    except NoPurchasesError:
        return []
    return [(p.period, p.retention) for p in found.periods]
