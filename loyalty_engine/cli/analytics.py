"""`loyalty analytics ...`: the relationship measures of a program as of an instant, each as a
rich table, --json, --csv and, where a picture reads better, --chart FILE (PNG, SVG or a
self-contained HTML page). This module holds the group and the member reports (members,
rfm); other report modules add their commands to `app` through a register(app) function,
and share the output options and helpers below."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.analytics.segments import SCORES
from loyalty_engine.cli.charts import ChartTable, check_chart_path, new_figure, write_chart
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, program_zone
from loyalty_engine.cli.options import AS_OF, JSON
from loyalty_engine.cli.output import CommandRefused, console, emit_json, money, when
from loyalty_engine.services.analytics_members import (
    SORTS,
    MemberSummaries,
    RfmReport,
    member_summaries,
    rfm_grid,
)

app = typer.Typer(help="Know the members: RFM segments and other relationship measures.",
                  no_args_is_help=True)

# The options every report shares.
PROGRAM = typer.Option(..., "--program", help="The program to measure.")
CSV = typer.Option(False, "--csv", help="Print CSV (one header line, then the rows).")
CHART = typer.Option(None, "--chart", metavar="FILE", help="Also draw the report to FILE: "
                     ".png, .svg, or .html (a page with the chart and its numbers).")


def output_mode(json_out: bool, csv_out: bool, chart: Path | None = None) -> str:
    """'json', 'csv' or 'table'; --json with --csv is refused, and so is a chart file of a
    format not written (before any work)."""
    if json_out and csv_out:
        raise CommandRefused("give --json or --csv, not both")
    if chart is not None:
        check_chart_path(chart)
    return "json" if json_out else "csv" if csv_out else "table"


def emit_csv(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a header and rows as CSV to standard output (None as an empty field)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([["" if v is None else v for v in row] for row in rows])


# --- members --------------------------------------------------------------------------------

MEMBER_COLUMNS = ("member_id", "first_purchase_at", "last_purchase_at", "first_purchase_day",
                  "last_purchase_day", "purchases", "days", "spend_minor",
                  "average_spend_minor", "tenure_days", "recency_days", "mean_gap_days",
                  "points_earned", "points_redeemed", "r", "f", "m", "segment")


@app.command()
def members(
    ctx: typer.Context,
    program: str = PROGRAM,
    as_of: str | None = AS_OF,
    sort: str = typer.Option("spend", "--sort", help="first (longest-standing first), last "
                             "(latest purchase first), purchases, days, spend, tenure "
                             "(highest first) or recency (most recent first)."),
    segment: str | None = typer.Option(None, "--segment", help="Only members in this "
                                       "segment as of then."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many."),
    json_out: bool = JSON,
    csv_out: bool = CSV,
) -> None:
    """Members' first and last purchase, tenure, spend, points and RFM segment."""
    mode = output_mode(json_out, csv_out)
    if sort not in SORTS:
        raise typer.BadParameter(f"use one of {', '.join(SORTS)}", param_hint="--sort")
    report = member_summaries(engine_for(ctx), program, as_of_option(ctx, as_of, program),
                              sort=sort, segment=segment, limit=limit)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        emit_csv(MEMBER_COLUMNS, [[row.as_json()[c] for c in MEMBER_COLUMNS]
                                  for row in report.members])
    else:
        _members_table(ctx, report)


def _members_table(ctx: typer.Context, report: MemberSummaries) -> None:
    zone = program_zone(ctx, report.program_id)
    table = Table("member", "first purchase", "last purchase", "purchases", "days", "spend",
                  "average", "tenure (days)", "mean gap (days)", "points earned",
                  "redeemed", "R F M", "segment")
    for row in report.members:
        x = row.figures
        table.add_row(escape(x.member_id), when(x.first_at, zone), when(x.last_at, zone),
                      str(x.purchases), str(x.days), money(x.spend_minor, report.currency),
                      money(x.average_spend_minor, report.currency), str(x.tenure_days),
                      "-" if x.mean_gap_days is None else f"{x.mean_gap_days:.1f}",
                      str(x.points_earned), str(x.points_redeemed),
                      f"{row.r} {row.f} {row.m}", row.segment)
    console.print(table)
    shown = (f"{len(report.members)} of {report.total}" if len(report.members) < report.total
             else str(report.total))
    which = f" in {report.segment}" if report.segment else ""
    console.print(f"{report.program_id}: {shown} member(s){which} as of "
                  f"{when(report.as_of, zone)}", markup=False)


# --- rfm ------------------------------------------------------------------------------------

@app.command()
def rfm(
    ctx: typer.Context,
    program: str = PROGRAM,
    as_of: str | None = AS_OF,
    json_out: bool = JSON,
    csv_out: bool = CSV,
    chart: Path | None = CHART,
) -> None:
    """The R x F grid with its counts and the members' segment mix."""
    mode = output_mode(json_out, csv_out, chart)
    report = rfm_grid(engine_for(ctx), program, as_of_option(ctx, as_of, program))
    if chart is not None:
        _rfm_chart(report, chart)
    if mode == "json":
        emit_json(report.as_json())
    elif mode == "csv":
        emit_csv(("section", "r", "f", "segment", "members", "share"), _rfm_rows(report))
    else:
        _rfm_table(ctx, report, chart)


def _rfm_rows(report: RfmReport) -> list[list[object]]:
    total = report.grid.members
    rows: list[list[object]] = [
        ["cell", r, f, "", report.grid.cells[(r, f)],
         round(report.grid.cells[(r, f)] / total, 4)]
        for r in reversed(SCORES) for f in SCORES]
    rows += [["segment", "", "", name, count, round(count / total, 4)]
             for name, count in report.grid.segments.items()]
    return rows


def _rfm_table(ctx: typer.Context, report: RfmReport, chart: Path | None) -> None:
    zone = program_zone(ctx, report.program_id)
    grid = Table("R \\ F", *(str(f) for f in SCORES),
                 title=f"{report.program_id}: members by recency (R) and frequency (F)")
    for r in reversed(SCORES):
        grid.add_row(str(r), *(str(report.grid.cells[(r, f)]) for f in SCORES))
    console.print(grid)
    mix = Table("segment", "members", "share")
    for name, count in report.grid.segments.items():
        mix.add_row(name, str(count), f"{count / report.grid.members:.1%}")
    console.print(mix)
    scored = ", ".join(f"{m} by {how}" for m, how in report.scoring.items())
    console.print(f"{report.grid.members} member(s) with purchases as of "
                  f"{when(report.as_of, zone)}; {scored}", markup=False)
    if chart is not None:
        console.print(f"chart written to {chart}", markup=False)


def _rfm_chart(report: RfmReport, path: Path) -> None:
    """The R x F heatmap with the count in each cell."""
    figure = new_figure(6.4, 5.2)
    axes = figure.add_subplot()
    counts = [[report.grid.cells[(r, f)] for f in SCORES] for r in SCORES]
    mesh = axes.pcolormesh([f - 0.5 for f in (*SCORES, 6)], [r - 0.5 for r in (*SCORES, 6)],
                           counts, cmap="Blues", vmin=0, edgecolors="white", linewidth=1)
    top = max(max(row) for row in counts) or 1
    for r in SCORES:
        for f in SCORES:
            value = report.grid.cells[(r, f)]
            axes.text(f, r, str(value), ha="center", va="center",
                      color="white" if value > top / 2 else "black")
    axes.set_xticks(list(SCORES))
    axes.set_yticks(list(SCORES))
    axes.set_xlabel("F (frequency score)")
    axes.set_ylabel("R (recency score)")
    title = f"{report.program_id}: R x F as of {report.as_of_day.isoformat()}"
    axes.set_title(title)
    figure.colorbar(mesh, ax=axes, label="members")
    tables = [
        ChartTable("Members by R (rows) and F (columns)", ("R \\ F", *map(str, SCORES)),
                   [[r, *(report.grid.cells[(r, f)] for f in SCORES)]
                    for r in reversed(SCORES)]),
        ChartTable("Segments", ("segment", "members", "share"),
                   [[name, count, f"{count / report.grid.members:.1%}"]
                    for name, count in report.grid.segments.items()]),
    ]
    write_chart(figure, path, title, tables)
