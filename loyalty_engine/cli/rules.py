"""`loyalty rules ...`: validate program files, apply them as new versions, list versions, diff;
the example programs that ship with the engine."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

from loyalty_engine.cli.context import engine_for, now, parse_instant
from loyalty_engine.cli.output import console, emit_json, err_console, fail, when
from loyalty_engine.domain.errors import NotFoundError
from loyalty_engine.rules import LoadedProgram, Problem, ProgramFileError
from loyalty_engine.rules.diff import CollectionDiff, ProgramDiff, diff_programs
from loyalty_engine.rules.expressions import stored_programs
from loyalty_engine.rules.loader import load_program_text
from loyalty_engine.services.program_files import load_program_file
from loyalty_engine.services.programs import (
    BEGINNING_OF_TIME,
    apply_program_files,
    list_versions,
    stored_version,
    validate_program_files,
)
from loyalty_engine.services.simulation import Simulation, history_span
from loyalty_engine.services.simulation import simulate as run_simulation
from loyalty_engine.shipped import copy_examples, example_programs

app = typer.Typer(help="Validate, compare and apply program definitions (YAML files).",
                  no_args_is_help=True)

PATHS = typer.Argument(..., help="Program files, or directories of *.yaml files.")


def _problems_json(exc: ProgramFileError) -> None:
    emit_json({"valid": False, "problems": [
        {"file": p.path, "line": p.line, "column": p.column, "message": p.message}
        for p in exc.problems]})
    raise SystemExit(1)


def _warn(loaded: list[LoadedProgram]) -> None:
    """Print what validation warns about (the files are valid; the exit status stays 0)."""
    for program in loaded:
        for warning in program.warnings:
            err_console.print(str(warning), markup=False, soft_wrap=True)


def _warnings_json(program: LoadedProgram) -> list[dict[str, object]]:
    return [{"file": w.path, "line": w.line, "column": w.column,
             "message": w.message.removeprefix("warning: ")} for w in program.warnings]


def _report(exc: ProgramFileError) -> None:
    for problem in exc.problems:
        err_console.print(str(problem), markup=False, soft_wrap=True)
    count = len(exc.problems)
    err_console.print(f"{count} problem{'s' if count != 1 else ''} found; nothing was changed",
                      markup=False)
    raise SystemExit(1)


@app.command()
def validate(
    paths: list[Path] = PATHS,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check program files: every problem as file:line:col (exit 1 if any)."""
    try:
        loaded = validate_program_files(paths)
    except ProgramFileError as exc:
        if json_out:
            _problems_json(exc)
        _report(exc)
        return
    if json_out:
        emit_json({"valid": True, "programs": [
            {"file": p.path, "program": p.definition.program, "content_hash": p.content_hash,
             "rules": len(p.definition.rules), "warnings": _warnings_json(p)} for p in loaded]})
        return
    _warn(loaded)
    for program in loaded:
        console.print(f"{program.path}: ok (program {program.definition.program}, "
                      f"{len(program.definition.rules)} rule(s))", markup=False)


@app.command()
def apply(
    ctx: typer.Context,
    paths: list[Path] = PATHS,
    effective_from: str | None = typer.Option(
        None, "--effective-from",
        help="When the new versions take effect (ISO 8601; a date is its midnight in the "
             "programs' time zone). Default: now; a first version is in force from the start.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    dry_run: bool = typer.Option(
        False, "--dry-run",
        help="Store nothing: print what changes in meaning against the stored version and, "
             "for a program with purchases in the last 90 days, what they would have earned "
             "under the new version (a simulation, as `rules simulate`)."),
) -> None:
    """Store a new version of each changed program; unchanged content is a no-op."""
    try:
        # File problems first, before touching the database.
        loaded = validate_program_files(paths)
        start = parse_instant(effective_from, "--effective-from",
                              _one_zone(loaded, effective_from))
        if dry_run:
            _dry_run(ctx, loaded, json_out)
            return
        results = apply_program_files(engine_for(ctx), paths, now(), start)
    except ProgramFileError as exc:
        _report(exc)
        return
    _warn(loaded)
    if json_out:
        emit_json([{"file": r.path, "program": r.program_id, "version": r.version,
                    "content_hash": r.content_hash, "effective_from": r.effective_from,
                    "created": r.created} for r in results])
        return
    zones = {p.definition.program: ZoneInfo(p.definition.timezone) for p in loaded}
    for r in results:
        if r.created:
            console.print(f"{r.program_id}: version {r.version} stored, in force "
                          f"{_from(r.effective_from, zones.get(r.program_id))} "
                          f"({r.content_hash[:12]})", markup=False)
        else:
            console.print(f"{r.program_id}: unchanged (version {r.version}, "
                          f"{r.content_hash[:12]})", markup=False)


DRY_RUN_DAYS = 90


def _dry_run(ctx: typer.Context, loaded: list[LoadedProgram], json_out: bool) -> None:
    """`apply --dry-run`: per file, the semantic diff against the stored version and the
    simulation of the last 90 days; nothing is stored."""
    from loyalty_engine.cli.simulation import summary_lines

    engine = engine_for(ctx)
    current = now()
    answers: list[dict[str, object]] = []
    for program in loaded:
        pid = program.definition.program
        zone = ZoneInfo(program.definition.timezone)
        try:
            stored = stored_version(engine, pid)
        except NotFoundError:
            answers.append({"file": program.path, "program": pid, "new": True, "diff": None,
                            "simulation": None})
            if not json_out:
                console.print(f"{pid}: a new program; applying it would store version 1 "
                              f"({program.content_hash[:12]}); nothing was stored", markup=False)
            continue
        with stored_programs():
            before = load_program_text(stored.source_text, stored.source_path).definition
        result = diff_programs(before, program.definition)
        simulation: Simulation | None = None
        note = None
        if not result.identical:
            span = history_span(engine, program)
            since = current - timedelta(days=DRY_RUN_DAYS)
            if span is not None and span[1] >= since:
                simulation = run_simulation(engine, program, since, current)
            else:
                note = f"no purchases in the last {DRY_RUN_DAYS} days to simulate"
        answers.append({"file": program.path, "program": pid, "new": False,
                        "stored_version": stored.version, "diff": result.to_plain(),
                        "simulation": None if simulation is None else simulation.as_json(),
                        **({"note": note} if note else {})})
        if json_out:
            continue
        for line in _diff_lines(result):
            console.print(line, markup=False)
        if simulation is not None:
            console.print(f"the last {DRY_RUN_DAYS} days under this version, had it been in "
                          "force:", markup=False)
            for line in summary_lines(simulation, zone):
                console.print(line, markup=False)
        elif note:
            console.print(f"{pid}: {note}", markup=False)
        console.print(f"{pid}: dry run, nothing was stored (stored: version {stored.version})",
                      markup=False)
    if json_out:
        emit_json({"dry_run": True, "programs": answers})


def _members(given: list[str] | None) -> list[str] | None:
    found = [m.strip() for value in given or [] for m in value.split(",") if m.strip()]
    return found or None


@app.command()
def simulate(
    ctx: typer.Context,
    candidate: Path = typer.Argument(..., metavar="CANDIDATE.yaml",
                                     help="The program file to backtest."),
    from_: str | None = typer.Option(
        None, "--from", help="Start of the window (ISO 8601; a date is its midnight in the "
                             "program's zone). Default: the program's first stored purchase."),
    to: str | None = typer.Option(None, "--to", help="End of the window. Default: now."),
    members: list[str] | None = typer.Option(
        None, "--members", help="Only these members (repeat, or separate with commas)."),
    as_new: bool = typer.Option(False, "--as-new",
                                help="Simulate a program that was never applied as new."),
    verify: bool = typer.Option(
        False, "--verify", help="Also check that replaying the stored versions reproduces "
                                "the live ledger exactly; exit 1 if it does not."),
    report: Path | None = typer.Option(None, "--report", metavar="FILE.html",
                                       help="Write a self-contained HTML report."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Backtest a candidate version on stored history, compared with the stored ones.

    Replays the stored purchases, refunds, redemptions and the scheduler's jobs of the
    window under both, in throw-away databases: nothing live is written."""
    from loyalty_engine.cli.simulation import print_summary, verify_lines, write_report

    try:
        loaded = load_program_file(candidate)
    except ProgramFileError as exc:
        if json_out:
            _problems_json(exc)
        _report(exc)
        return
    zone = ZoneInfo(loaded.definition.timezone)
    start = parse_instant(from_, "--from", zone)
    end = parse_instant(to, "--to", zone) or now()
    if report is not None and not report.parent.is_dir():
        fail(f"cannot write the report to {report}: the folder {report.parent} does not exist")
    result = run_simulation(engine_for(ctx), loaded, start, end, _members(members),
                            as_new=as_new, verify=verify)
    if report is not None:
        try:
            write_report(report, result, zone)
        except OSError as exc:
            fail(f"cannot write the report to {report}: {exc.strerror or exc}")
    if json_out:
        emit_json(result.as_json())
    else:
        _warn([loaded])
        print_summary(result, zone)
        if report is not None:
            console.print(f"report written to {report}", markup=False)
        if verify:
            for line in verify_lines(result):
                console.print(line, markup=False)
    if verify and result.verified:
        raise SystemExit(1)


@app.command()
def show(
    ctx: typer.Context,
    program: str = typer.Argument(..., metavar="PROGRAM", help="The program's id."),
    version: int | None = typer.Option(None, "--version", min=1,
                                       help="Which version (default: the newest)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print a stored version's source as it was applied."""
    found = stored_version(engine_for(ctx), program, version)
    if json_out:
        emit_json({"program": found.program_id, "version": found.version,
                   "content_hash": found.content_hash, "effective_from": found.effective_from,
                   "from_the_start": found.effective_from == BEGINNING_OF_TIME,
                   "applied_at": found.applied_at, "source_path": found.source_path,
                   "source": found.source_text})
        return
    import sys

    sys.stdout.write(found.source_text if found.source_text.endswith("\n")
                     else found.source_text + "\n")


@app.command()
def versions(
    ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """List every stored version of every program."""
    rows = list_versions(engine_for(ctx))
    if json_out:
        emit_json([{"program": v.program_id, "version": v.version,
                    "effective_from": v.effective_from,
                    "from_the_start": v.effective_from == BEGINNING_OF_TIME,
                    "content_hash": v.content_hash,
                    "name": v.program.name, "currency": v.program.currency} for v in rows])
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("program", "version", "in force", "content hash", "name")
    for v in rows:
        table.add_row(v.program_id, str(v.version), _from(v.effective_from, v.program.timezone),
                      v.content_hash[:12], escape(v.program.name))
    console.print(table)


def _from(start: datetime, zone: tzinfo | None) -> str:
    """When a version took effect, for people: a first version applied without a date is
    in force for all history, which is stored as the epoch but means "from the start"."""
    return "from the start" if start == BEGINNING_OF_TIME else f"from {when(start, zone)}"


def _one_zone(loaded: list[LoadedProgram], value: str | None) -> tzinfo | None:
    """The zone a bare --effective-from date is read in: the programs' one time zone."""
    zones = sorted({p.definition.timezone for p in loaded})
    if value is None or len(value) != 10 or len(zones) <= 1:
        return ZoneInfo(zones[0]) if zones else None
    raise typer.BadParameter(
        f"{value} is a date, and these programs are in different time zones "
        f"({', '.join(zones)}); give a time with an offset, e.g. {value}T00:00:00+01:00",
        param_hint="--effective-from")


@app.command()
def diff(
    old: Path = typer.Argument(..., metavar="OLD", help="The program file as it was."),
    new: Path = typer.Argument(..., metavar="NEW", help="The program file as it is to be."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What changed in meaning between two versions of a program file.

    Not a text diff: comments and layout do not count."""
    problems: list[Problem] = []
    loaded: list[LoadedProgram] = []
    for path in (old, new):
        try:
            loaded.append(load_program_file(path))
        except ProgramFileError as exc:
            problems += exc.problems
    if problems:
        if json_out:
            _problems_json(ProgramFileError(problems))
        _report(ProgramFileError(problems))
        return
    before, after = loaded
    if before.definition.program != after.definition.program:
        fail(f"{old} defines program {before.definition.program!r} but {new} defines "
             f"{after.definition.program!r}; diff compares two versions of one program")
    result = diff_programs(before.definition, after.definition)
    if json_out:
        emit_json(result.to_plain())
        return
    for line in _diff_lines(result):
        console.print(line, markup=False)


def _diff_lines(result: ProgramDiff) -> list[str]:
    if result.identical:
        return [f"{result.program}: no changes in meaning"]
    rules = result.rules
    header = (f"{result.program}: {len(rules.changed)} rule{'s' if len(rules.changed) != 1 else ''}"
              f" changed, {len(rules.added)} added, {len(rules.removed)} removed")
    if result.settings:
        count = len(result.settings)
        header += f"; {count} setting{'s' if count != 1 else ''} changed"
    if not result.rewards.empty:
        rewards = result.rewards
        header += (f"; rewards: {len(rewards.changed)} changed, {len(rewards.added)} added, "
                   f"{len(rewards.removed)} removed")
    lines = [header]
    lines += [f"~ setting {c.path}: {c.describe()}" for c in result.settings]
    lines += _collection_lines("rule", rules)
    lines += _collection_lines("reward", result.rewards)
    return lines


def _collection_lines(what: str, found: CollectionDiff) -> list[str]:
    lines = [f"+ {what} {e.id} ({e.kind})" for e in found.added]
    lines += [f"- {what} {e.id} ({e.kind})" for e in found.removed]
    for entry in found.changed:
        lines += [f"~ {what} {entry.id}: {c.path} {c.describe()}" for c in entry.changes]
    return lines


@app.command()
def examples(
    folder: Path | None = typer.Argument(
        None, metavar="DIR", show_default=False,
        help="Write the example programs into this folder (created if missing) to start from.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite files of the same names in DIR."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the example programs that ship with the engine, or write them into DIR."""
    shipped = example_programs()
    if folder is None:
        _list_examples(shipped, json_out)
        return
    from rich.markup import escape

    if folder.exists() and not folder.is_dir():
        fail(f"{escape(str(folder))} is a file; name a folder to write the example programs into")
    blocked = [p.name for p in shipped if (folder / p.name).is_dir()]
    if blocked:
        fail(f"{escape(str(folder))} has folders named {', '.join(blocked)}; move them away "
             "or choose another folder")
    clashes = [p.name for p in shipped if (folder / p.name).exists()]
    if clashes and not force:
        fail(f"{escape(str(folder))} already has {', '.join(clashes)}; pass --force to "
             "overwrite them, or choose another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = copy_examples(folder)
    except OSError as exc:
        fail(f"cannot write the example programs into {escape(str(folder))}: "
             f"{escape(exc.strerror or str(exc))}; nothing was written")
        return
    if json_out:
        emit_json({"folder": str(folder), "written": [p.name for p in written],
                   "overwritten": clashes})
        return
    replaced = f" ({len(clashes)} overwritten)" if clashes else ""
    console.print(f"wrote {len(written)} example programs into {folder}{replaced}: "
                  f"{', '.join(p.name for p in written)}; check them with "
                  f"`loyalty rules validate {folder}`", markup=False)


def _list_examples(shipped: list[Path], json_out: bool) -> None:
    loaded = validate_program_files(shipped)
    if json_out:
        emit_json({"folder": str(shipped[0].parent), "programs": [
            {"file": Path(p.path).name, "path": p.path, "program": p.definition.program,
             "name": p.definition.name, "rules": len(p.definition.rules)} for p in loaded]})
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("file", "program", "name", "rules", title="example programs")
    for p in loaded:
        table.add_row(Path(p.path).name, p.definition.program, escape(p.definition.name),
                      str(len(p.definition.rules)))
    console.print(table)
    console.print(f"in {shipped[0].parent}; `loyalty rules examples DIR` writes them into a "
                  "folder to start from", markup=False)
