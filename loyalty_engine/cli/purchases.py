"""`loyalty purchases import`: bulk import of JSON Lines or CSV purchase files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from loyalty_engine.cli.context import engine_for, now
from loyalty_engine.cli.output import console, emit_json, err_console
from loyalty_engine.services.importing import Format, import_purchases

app = typer.Typer(help="Import purchases and refunds.", no_args_is_help=True)


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A .jsonl file (one purchase per line, or a refund "
                                "with \"type\": \"refund\") or a .csv file of purchases."),
    fmt: str | None = typer.Option(None, "--format", help="jsonl or csv (default: by name)."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid",
        help="Import the good purchases and write the rejects to a file instead of "
             "importing nothing.",
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Where --skip-invalid writes rejects (default FILE.rejects.jsonl)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON report."),
) -> None:
    """Import purchases and refunds from a JSON Lines or CSV file.

    All or nothing unless --skip-invalid; importing again changes nothing."""
    if fmt not in (None, "jsonl", "csv"):
        raise typer.BadParameter("use jsonl or csv", param_hint="--format")
    chosen: Format | None = "jsonl" if fmt == "jsonl" else "csv" if fmt == "csv" else None
    engine = engine_for(ctx)
    show_bar = not json_out and err_console.is_terminal
    with Progress(TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err_console, disable=not show_bar, transient=True) as bar:
        task = bar.add_task("import", total=None)
        report = import_purchases(
            engine, file, now(), fmt=chosen, skip_invalid=skip_invalid, rejects_path=rejects,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if json_out:
        emit_json({"file": report.path, "read": report.read, "recorded": report.recorded,
                   "replayed": report.replayed, "points_by_program": report.points,
                   "refunds": {"read": report.refunds_read, "applied": report.refunds,
                               "replayed": report.refunds_replayed,
                               "points_taken_back_by_program": report.points_refunded},
                   "committed": report.committed, "rejects_file": report.rejects_path,
                   "errors": [{"line": e.line, "reason": e.reason} for e in report.errors]})
        if not report.committed:
            raise SystemExit(1)
        return
    for error in report.errors if not report.committed else []:
        err_console.print(f"{file}:{error.line}: {error.reason}", markup=False, soft_wrap=True)
    if not report.committed:
        err_console.print(f"{len(report.errors)} bad record(s); nothing was imported "
                          "(fix them, or use --skip-invalid)", markup=False)
        raise SystemExit(1)
    if report.read > report.refunds_read or not report.refunds_read:
        console.print(f"{report.read - report.refunds_read} purchase(s) read: "
                      f"{report.recorded} recorded, {report.replayed} already recorded; "
                      f"points awarded: {_per_program(report.points)}", markup=False)
    if report.refunds_read:
        console.print(f"{report.refunds_read} refund(s) read: {report.refunds} applied, "
                      f"{report.refunds_replayed} already applied; points taken back: "
                      f"{_per_program(report.points_refunded)}", markup=False)
    if report.errors:
        console.print(f"{len(report.errors)} rejected; reasons in {report.rejects_path}",
                      markup=False)


def _per_program(points: dict[str, int]) -> str:
    """Points program by program ("bean-there 31, glow-beauty 200"), or "none"."""
    return ", ".join(f"{pid} {n}" for pid, n in sorted(points.items()) if n) or "none"
