"""`loyalty reports ...`: what a program owes. The liability, breakage, the roll-forward,
earn and burn, the IFRS 15 journal and a one-page program report (docs/reports.md).

Money in major units with the currency, months in the program's zone. Charts through
cli/charts.py (matplotlib, no display): a file's suffix says its format (.png, .svg, or
.html: the SVG inline with the numbers); the program page puts several on one page with
no external reference."""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from loyalty_engine.cli.analytics import CHART, CSV, emit_csv, output_mode
from loyalty_engine.cli.charts import (
    ChartTable,
    inline_svg,
    new_figure,
    page,
    write_chart,
)
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now, program_zone
from loyalty_engine.cli.options import AS_OF, JSON, PROGRAM
from loyalty_engine.cli.output import CommandRefused, console, emit_json, money, when
from loyalty_engine.domain.money import currency_exponent
from loyalty_engine.finance.breakage import shown
from loyalty_engine.finance.rollforward import COLUMNS
from loyalty_engine.services import reports

app = typer.Typer(help="What programs owe: liability, breakage, roll-forward, IFRS 15.",
                  no_args_is_help=True)

PERIOD = typer.Option("month", "--period", help="month, quarter or year.")
FROM = typer.Option(None, "--from", help="From the period holding this instant (ISO 8601; "
                    "a date is its midnight in the program's zone); default the first entry.")
TO = typer.Option(None, "--to", help="To the period holding this instant; default now.")


# -- charts (cli/charts.py draws and writes them) --------------------------------------------

def _figure() -> Any:
    return new_figure(8, 4.2)


def _page(title: str, parts: Sequence[str]) -> str:
    style = ("body{font-family:sans-serif;max-width:60rem;margin:2rem auto;color:#222}"
             "table{border-collapse:collapse}td,th{padding:.2rem .6rem;text-align:right;"
             "border-bottom:1px solid #ddd}th:first-child,td:first-child{text-align:left}"
             "svg{max-width:100%;height:auto}")
    return page(title, "\n".join(parts), style)


def _waterfall(figure: Any, title: str, opening: int,
               steps: Sequence[tuple[str, int]], closing: int) -> None:
    axes = figure.add_subplot()
    labels, bottoms, heights, colours = ["opening"], [0], [opening], ["#4c72b0"]
    level = opening
    for label, delta in steps:
        labels.append(label)
        bottoms.append(level if delta >= 0 else level + delta)
        heights.append(abs(delta))
        colours.append("#55a868" if delta >= 0 else "#c44e52")
        level += delta
    labels.append("closing")
    bottoms.append(0)
    heights.append(closing)
    colours.append("#4c72b0")
    axes.bar(labels, heights, bottom=bottoms, color=colours)
    axes.set_title(title)
    axes.set_ylabel("points")
    axes.tick_params(axis="x", labelrotation=30)


def _waterfall_of(figure: Any, report: reports.RollForward) -> None:
    periods = report.periods
    totals = {c: sum(p.movements[c] for p in periods) for c, _ in COLUMNS}
    steps = [(c, sign * totals[c]) for c, sign in COLUMNS if totals[c]]
    span = periods[0].key if len(periods) == 1 else f"{periods[0].key} to {periods[-1].key}"
    _waterfall(figure, f"{report.program_id}: points roll-forward, {span}",
               periods[0].opening, steps, periods[-1].closing)


def _breakage_curves(figure: Any, report: reports.BreakageReport) -> None:
    axes = figure.add_subplot()
    for cohort in report.cohorts:
        if cohort.issued:
            axes.plot([c.age for c in cohort.cells],
                      [c.redeemed / cohort.issued for c in cohort.cells], marker="o",
                      label=cohort.month)
    axes.set_title(f"{report.program_id}: cumulative share redeemed by age")
    axes.set_xlabel("age (months after the issue month)")
    axes.set_ylabel("share of the month's points")
    if len(report.cohorts) <= 12 and report.cohorts:
        axes.legend(fontsize="small")


# -- output helpers -------------------------------------------------------------------------

def _csv(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    emit_csv(list(rows[0]), [list(row.values()) for row in rows])


def _one_program(found: Sequence[Any], chart: Path | None) -> None:
    """A chart draws one program: refused (nothing written) when several would be meant."""
    if chart is not None and len(found) > 1:
        raise CommandRefused(f"there are {len(found)} programs and a chart draws one; give "
                             "--program")


def _instants(ctx: typer.Context, program: str | None, start: str | None,
              end: str | None) -> tuple[datetime | None, datetime | None]:
    return instant(ctx, start, "--from", program), instant(ctx, end, "--to", program)


# -- commands -------------------------------------------------------------------------------

@app.command("liability")
def liability_command(ctx: typer.Context, as_of: str | None = AS_OF,
                      program: str | None = PROGRAM, json_out: bool = JSON,
                      csv_out: bool = CSV) -> None:
    """Points outstanding, their value, and the expected breakage and cost."""
    output_mode(json_out, csv_out)
    at = as_of_option(ctx, as_of, program)
    found = reports.liability(engine_for(ctx), at, program)
    rows = [{"as_of": at, **o.as_json()} for o in found]
    if json_out:
        emit_json(rows)
        return
    if csv_out:
        _csv([{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
              for r in rows])
        return
    table = Table("program", "spendable", "pending", "outstanding", "value",
                  "expected redemption", "expected breakage", "expected cost")
    for o in found:
        table.add_row(o.program_id, str(o.spendable), str(o.pending), str(o.outstanding),
                      money(o.value_minor, o.currency), shown(o.redemption_rate) or "-",
                      f"{o.expected_breakage} ({money(o.breakage_value_minor, o.currency)})",
                      money(o.expected_cost_minor, o.currency))
    console.print(f"as of {when(at, program_zone(ctx, program))}", markup=False)
    console.print(table)


@app.command("breakage")
def breakage_command(ctx: typer.Context, program: str | None = PROGRAM,
                     as_of: str | None = AS_OF, json_out: bool = JSON, csv_out: bool = CSV,
                     chart: Path | None = CHART) -> None:
    """The development triangle by issue month and the projected ultimate redemption."""
    output_mode(json_out, csv_out, chart)
    at = as_of_option(ctx, as_of, program)
    found = reports.breakage_report(engine_for(ctx), at, program)
    _one_program(found, chart)
    if chart is not None:
        figure = _figure()
        tables = []
        for report in found[:1]:
            _breakage_curves(figure, report)
            ages = max((len(c.cells) for c in report.cohorts), default=0)
            tables.append(ChartTable(
                "cumulative share redeemed by age", ["issued", "points",
                                                     *(f"age {k}" for k in range(ages))],
                [[c["cohort"], c["issued"], *(a["redeemed_share"] for a in c["ages"])]
                 for c in report.as_json()["triangle"]]))
        write_chart(figure, chart, f"{found[0].program_id}: breakage" if found else "",
                    tables)
    if json_out:
        emit_json([r.as_json() for r in found])
        return
    if csv_out:
        _csv([{"program_id": r.program_id, "cohort": c["cohort"], "issued": c["issued"],
               **cell} for r in found for c in r.as_json()["triangle"] for cell in c["ages"]])
        return
    for report in found:
        data = report.as_json()
        ages = max((len(c.cells) for c in report.cohorts), default=0)
        table = Table("issued", "points", *(f"age {k}" for k in range(ages)),
                      title=f"{report.program_id}: share redeemed / expired at each age")
        for cohort in data["triangle"]:
            table.add_row(cohort["cohort"], str(cohort["issued"]), *(
                f"{cell['redeemed_share']} / {cell['expired_share']}"
                for cell in cohort["ages"]))
        console.print(table)
        console.print(f"projected ultimate redemption rate "
                      f"{data['ultimate_redemption_rate'] or '-'}, of the outstanding "
                      f"{data['outstanding_redemption_rate'] or '-'} ({data['tail_basis']})",
                      markup=False)


@app.command("roll-forward")
def roll_forward_command(ctx: typer.Context, period: str = PERIOD,
                         start: str | None = FROM, end: str | None = TO,
                         program: str | None = PROGRAM, json_out: bool = JSON,
                         csv_out: bool = CSV, chart: Path | None = CHART) -> None:
    """Points opening, earned, redeemed, expired, adjusted and closing by period.

    Exactly from the ledger; the last closing ties to the balances."""
    output_mode(json_out, csv_out, chart)
    frm, to = _instants(ctx, program, start, end)
    found = reports.roll_forward_report(engine_for(ctx), now(), period, frm, to, program)
    _one_program(found, chart)
    if chart is not None:
        figure = _figure()
        tables = []
        for report in found[:1]:
            _waterfall_of(figure, report)
            tables.append(ChartTable(
                f"points roll-forward by {period}",
                ["period", "opening", *(c for c, _ in COLUMNS), "closing"],
                [[p.key, p.opening, *(p.movements[c] for c, _ in COLUMNS), p.closing]
                 for p in report.periods]))
        write_chart(figure, chart, f"{found[0].program_id}: roll-forward" if found else "",
                    tables)
    if json_out:
        emit_json([r.as_json() for r in found])
        return
    if csv_out:
        _csv([{"program_id": r.program_id, **p.as_json()} for r in found for p in r.periods])
        return
    for report in found:
        table = Table("period", "opening", *(c for c, _ in COLUMNS), "closing",
                      title=f"{report.program_id}: points roll-forward by {period}")
        for p in report.periods:
            table.add_row(p.key, str(p.opening), *(str(p.movements[c]) for c, _ in COLUMNS),
                          str(p.closing))
        console.print(table)
        console.print(f"balances now: {report.balances} points", markup=False)


@app.command("earn-burn")
def earn_burn_command(ctx: typer.Context, period: str = PERIOD,
                      program: str | None = PROGRAM, json_out: bool = JSON,
                      csv_out: bool = CSV, chart: Path | None = CHART) -> None:
    """Points issued, redeemed and expired per period, and the redemption rate."""
    output_mode(json_out, csv_out, chart)
    found = reports.earn_burn(engine_for(ctx), now(), period, None, None, program)
    _one_program(found, chart)
    if chart is not None and found:
        figure = _figure()
        axes = figure.add_subplot()
        rows = found[0]["periods"]
        keys = [r["period"] for r in rows]
        axes.bar(keys, [r["issued"] for r in rows], label="issued", color="#55a868")
        axes.bar(keys, [-r["redeemed"] for r in rows], label="redeemed", color="#4c72b0")
        axes.bar(keys, [-r["expired"] for r in rows],
                 bottom=[-r["redeemed"] for r in rows], label="expired", color="#c44e52")
        axes.set_title(f"{found[0]['program_id']}: earn and burn by {period}")
        axes.set_ylabel("points")
        axes.legend(fontsize="small")
        axes.tick_params(axis="x", labelrotation=30)
        write_chart(figure, chart, f"{found[0]['program_id']}: earn and burn", [ChartTable(
            f"points by {period}", ["period", "issued", "redeemed", "expired",
                                    "redemption rate"],
            [[r["period"], r["issued"], r["redeemed"], r["expired"],
              r["redemption_rate"] or "-"] for r in rows])])
    if json_out:
        emit_json(found)
        return
    if csv_out:
        _csv([{"program_id": f["program_id"], **r} for f in found for r in f["periods"]])
        return
    for f in found:
        table = Table("period", "issued", "redeemed", "expired", "redemption rate",
                      title=f"{f['program_id']}: earn and burn by {period}")
        for r in f["periods"]:
            table.add_row(r["period"], str(r["issued"]), str(r["redeemed"]),
                          str(r["expired"]), r["redemption_rate"] or "-")
        console.print(table)


@app.command("ifrs15")
def ifrs15_command(ctx: typer.Context,
                   program: str = typer.Option(..., "--program", help="The program."),
                   start: str | None = FROM, end: str | None = TO,
                   as_of: str | None = AS_OF,
                   csv_file: Path | None = typer.Option(None, "--csv", help="Write the "
                                                        "journal lines to this CSV file."),
                   json_out: bool = JSON) -> None:
    """The IFRS 15 schedule of points revenue and its journal lines.

    The price allocated to points, revenue as they are redeemed, the catch-up when the
    estimate moves."""
    at = as_of_option(ctx, as_of, program)
    frm, to = _instants(ctx, program, start, end)
    report = reports.ifrs15_report(engine_for(ctx), at, program, frm, to)
    data = report.as_json()
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=["period", "date", "account", "debit",
                                                     "credit", "currency", "memo"])
            writer.writeheader()
            writer.writerows({**line, "currency": report.currency}
                             for line in data["journal"])
    if json_out:
        emit_json(data)
        return
    table = Table("month", "allocated to points", "revenue", "of which catch-up",
                  "contract liability", title=f"{program}: IFRS 15 schedule")
    for r in report.rows:
        table.add_row(r["month"], money(r["allocated_minor"], report.currency),
                      money(r["revenue_minor"], report.currency),
                      money(r["catch_up_minor"], report.currency),
                      money(r["liability_minor"], report.currency))
    console.print(table)
    if csv_file is not None:
        console.print(f"{len(data['journal'])} journal line(s) written to {csv_file}",
                      markup=False)


@app.command("program")
def program_command(ctx: typer.Context, program: str,
                    html_file: Path = typer.Option(..., "--html", help="Write the page to "
                                                   "this file."),
                    as_of: str | None = AS_OF) -> None:
    """One self-contained HTML page: liability, breakage, tiers, segments, retention.

    Liability over time, the roll-forward waterfall, the breakage curves, the tier mix, the
    segment mix of the latest RFM snapshot and the monthly retention trend."""
    if html_file.suffix.lower() not in (".html", ".htm"):
        raise CommandRefused(f"{html_file} is not an .html file")
    at = as_of_option(ctx, as_of, program)
    found = reports.program_report(engine_for(ctx), at, program)
    compiled, owed = found["program"], found["liability"]
    currency = compiled.currency
    zone = program_zone(ctx, program)
    parts = [f"<h1>{html.escape(compiled.name or program)} ({html.escape(program)})</h1>",
             f"<p>As of {html.escape(when(at, zone))}; a point is worth "
             f"{html.escape(str(owed.point_value))} {html.escape(currency)}.</p>",
             "<h2>Liability</h2><table><tr><th>outstanding</th><th>value</th>"
             "<th>expected cost</th><th>expected breakage</th></tr>"
             f"<tr><td>{owed.outstanding} points ({owed.pending} pending)</td>"
             f"<td>{html.escape(money(owed.value_minor, currency))}</td>"
             f"<td>{html.escape(money(owed.expected_cost_minor, currency))}</td>"
             f"<td>{owed.expected_breakage} points "
             f"({html.escape(money(owed.breakage_value_minor, currency))})</td></tr></table>"]
    figure = _figure()
    axes = figure.add_subplot()
    by_month = found["liability_by_month"]
    exponent_scale = 10 ** currency_exponent(currency)
    axes.plot([k for k, _ in by_month], [v / exponent_scale for _, v in by_month],
              marker="o")
    axes.set_title("liability at the point value, end of each month")
    axes.set_ylabel(currency)
    axes.tick_params(axis="x", labelrotation=30)
    parts += ["<h2>Liability over time</h2>", inline_svg(figure)]
    report = reports.RollForward(program, currency, str(owed.point_value), "month",
                                 found["periods"], 0)
    if report.periods:
        figure = _figure()
        _waterfall_of(figure, report)
        parts += ["<h2>Roll-forward</h2>", inline_svg(figure)]
    figure = _figure()
    _breakage_curves(figure, found["breakage"])
    data = found["breakage"].as_json()
    parts += ["<h2>Breakage</h2>",
              f"<p>Projected ultimate redemption rate "
              f"{html.escape(str(data['ultimate_redemption_rate']))}; of the points "
              f"outstanding {html.escape(str(data['outstanding_redemption_rate']))}.</p>",
              inline_svg(figure)]
    tiers = found["tiers"]
    if tiers:
        figure = _figure()
        axes = figure.add_subplot()
        names = sorted(tiers)
        axes.bar([n or "(none)" for n in names], [tiers[n] for n in names],
                 color="#8172b2")
        axes.set_title("members by tier")
        parts += ["<h2>Tier mix</h2>", inline_svg(figure)]
    else:
        parts += ["<h2>Tier mix</h2>", "<p>The program has no tiers.</p>"]
    segments = found["segments"]
    if segments:
        figure = _figure()
        axes = figure.add_subplot()
        names = sorted(segments, key=lambda n: (-segments[n], n))
        axes.barh(names[::-1], [segments[n] for n in names[::-1]], color="#4c72b0")
        axes.set_title("members by RFM segment (latest snapshot)")
        parts += ["<h2>Segment mix</h2>", inline_svg(figure)]
    else:
        parts += ["<h2>Segment mix</h2>", "<p>No RFM snapshot yet: the scheduler's "
                  "rfm_snapshot job takes one every week.</p>"]
    trend = [(key, rate) for key, rate in found["retention"] if rate is not None]
    if trend:
        figure = _figure()
        axes = figure.add_subplot()
        axes.plot([k for k, _ in trend], [100 * r for _, r in trend], marker="o")
        axes.set_ylim(0, 100)
        axes.set_ylabel("%")
        axes.set_title("monthly retention (E - N) / S")
        axes.tick_params(axis="x", labelrotation=30)
        parts += ["<h2>Retention</h2>", inline_svg(figure)]
    else:
        parts += ["<h2>Retention</h2>", "<p>Not enough history for a retention rate.</p>"]
    html_file.write_text(_page(f"{program} report", parts), encoding="utf-8")
    console.print(f"report of {program} written to {html_file}", markup=False)
