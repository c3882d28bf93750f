"""`loyalty analytics clv`: customer lifetime value per member, the fitted models (or the
simple retention-based CLV and why), the customer base value, and which members and
segments a retention offer is worth; the CLV distribution as a chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.analytics import CHART, CSV, PROGRAM, emit_csv, output_mode
from loyalty_engine.cli.charts import ChartTable, new_figure, write_chart
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant
from loyalty_engine.cli.options import AS_OF, JSON
from loyalty_engine.cli.output import console, emit_json, money
from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.domain.money import currency_exponent, parse_decimal, to_minor
from loyalty_engine.services.analytics_clv import ClvReport, clv_report
from loyalty_engine.services.programs import program_currencies

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSV_COLUMNS = ("member_id", "segment", "x", "t_x", "T", "first_day", "last_day",
               "spend_minor", "mean_repeat_spend_minor", "margin", "p_alive",
               "expected_purchases", "expected_spend_minor", "clv_minor", "worth_offer")


def register(app: typer.Typer) -> None:
    """Add `clv` to the `loyalty analytics` group."""
    app.command("clv")(clv)


def clv(
    ctx: typer.Context,
    program: str = PROGRAM,
    as_of: str | None = AS_OF,
    calibration_end: str | None = typer.Option(
        None, "--calibration-end", help="Fit on purchases up to this instant (ISO 8601; a "
        "date is its midnight in the program's zone); default the as-of instant."),
    horizon_weeks: int | None = typer.Option(
        None, "--horizon-weeks", min=1, help="Weeks ahead the CLV covers; default the "
        "program's (52)."),
    offer_cost: str | None = typer.Option(
        None, "--offer-cost", help="A retention offer's cost per member (major units, e.g. "
        "5.00): who and which segments it is worth."),
    json_out: bool = JSON,
    csv_out: bool = CSV,
    chart: Path | None = CHART,
    limit: int = typer.Option(20, "--limit", min=0, help="Members in the table, highest "
                              "CLV first (0: all)."),
) -> None:
    """Customer lifetime value: BG/NBD and Gamma-Gamma (or the simple retention CLV)."""
    mode = output_mode(json_out, csv_out, chart)
    at = as_of_option(ctx, as_of, program)
    end = instant(ctx, calibration_end, "--calibration-end", program)
    engine = engine_for(ctx)
    cost = None
    if offer_cost is not None:
        currencies = program_currencies(engine)
        if program not in currencies:
            known = ", ".join(sorted(currencies)) or "none has been applied"
            raise NotFoundError(f"there is no program {program!r} (programs: {known})")
        currency = currencies[program]
        cost = to_minor(parse_decimal(offer_cost, "--offer-cost"),
                        currency_exponent(currency), "--offer-cost", currency)
    report = clv_report(engine, program, end, horizon_weeks, at, offer_cost_minor=cost)
    if chart is not None:
        _chart(report, chart)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        emit_csv(CSV_COLUMNS, [[getattr(m, c) for c in CSV_COLUMNS] for m in report.members])
    else:
        _print(report, limit)


def clv_figure(report: ClvReport) -> tuple[Figure, list[tuple[float, float, int]]]:
    """The CLV distribution: a histogram of the members' CLV in major units, the base value
    and the method in the title; with the bins (from, to, members) it drew."""
    exponent = currency_exponent(report.currency)
    values = [m.clv_minor / 10**exponent for m in report.members]
    figure = new_figure(8, 4.5)
    axes = figure.add_subplot()
    counts, edges, _ = axes.hist(values, bins=min(40, max(5, len(values) // 5)),
                                 color="#3b6ea8")
    axes.set_xlabel(f"CLV over {report.horizon_weeks} weeks ({report.currency})"
                    if report.method != "retention" else f"CLV ({report.currency})")
    axes.set_ylabel("members")
    axes.set_title(_title(report))
    bins = [(float(edges[k]), float(edges[k + 1]), int(counts[k])) for k in range(len(counts))]
    return figure, bins


def _title(report: ClvReport) -> str:
    return (f"{report.program_id}: CLV distribution, base value "
            f"{money(report.base_value_minor, report.currency)} ({report.method})")


def _chart(report: ClvReport, path: Path) -> None:
    figure, bins = clv_figure(report)
    cur = report.currency
    tables = [ChartTable(f"Members by CLV ({cur})", ("from", "to", "members"),
                         [[f"{low:.2f}", f"{high:.2f}", n] for low, high, n in bins])]
    if report.offer_cost_minor is not None:
        tables.append(ChartTable(
            f"An offer of {money(report.offer_cost_minor, cur)} by segment",
            ("segment", "members", "CLV", "worth the offer", "their CLV", "offer cost", "net"),
            [[s.segment or "(none)", s.members, money(s.clv_minor, cur), s.worth,
              money(s.worth_clv_minor, cur), money(s.offer_cost_minor, cur),
              money(s.net_minor, cur)] for s in report.segments]))
    write_chart(figure, path, _title(report), tables)


def _print(report: ClvReport, limit: int) -> None:
    cur = report.currency
    console.print(f"[bold]{report.program_id}[/]: CLV by {report.method} — {report.reason}")
    if report.bgnbd is not None and report.gamma_gamma is not None:
        bg, gg = report.bgnbd, report.gamma_gamma
        console.print(f"  BG/NBD r={bg.r:.4f} alpha={bg.alpha:.4f} a={bg.a:.4f} b={bg.b:.4f} "
                      f"(log-likelihood {bg.log_likelihood:.1f}); Gamma-Gamma p={gg.p:.4f} "
                      f"q={gg.q:.4f} gamma={gg.gamma:.2f}", markup=False)
        console.print(f"  over {report.horizon_weeks} weeks from "
                      f"{report.calibration_end.isoformat()}, discount "
                      f"{report.discount_rate:.1%} a year", markup=False)
    elif report.retention is not None:
        ret = report.retention
        rate = "-" if ret.retention_rate is None else f"{ret.retention_rate:.1%}"
        console.print(f"  m r / (1 + i - r): retention {rate} a year ({ret.retained} of "
                      f"{ret.active_before} members over {ret.period_weeks}-week periods), "
                      f"i {ret.discount_rate:.1%}, mean m "
                      f"{money(round(ret.mean_annual_margin_minor), cur)} a year",
                      markup=False)
    console.print(f"  customer base value {money(report.base_value_minor, cur)} "
                  f"({len(report.members)} members)", markup=False)
    if report.offer_cost_minor is not None:
        table = Table("segment", "members", "CLV", "worth the offer", "their CLV",
                      "offer cost", "net")
        for s in report.segments:
            table.add_row(s.segment or "(none)", str(s.members), money(s.clv_minor, cur),
                          str(s.worth), money(s.worth_clv_minor, cur),
                          money(s.offer_cost_minor, cur), money(s.net_minor, cur))
        console.print(f"an offer of {money(report.offer_cost_minor, cur)} per member is worth "
                      "it for a member whose CLV exceeds it:")
        console.print(table)
    rows = sorted(report.members, key=lambda m: (-m.clv_minor, m.member_id))
    table = Table("member", "segment", "x", "t_x", "T", "P(alive)", "expected purchases",
                  "CLV")
    for m in rows[:limit] if limit else rows:
        table.add_row(escape(m.member_id), m.segment or "-", str(m.x), f"{m.t_x:.1f}", f"{m.T:.1f}",
                      "-" if m.p_alive is None else f"{m.p_alive:.3f}",
                      f"{m.expected_purchases:.2f}", money(m.clv_minor, cur))
    console.print(table)
