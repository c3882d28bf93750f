"""`loyalty scheduler`: run the time-driven jobs (tick once, or run as a process), and read
how far they have run and what failed."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now, parse_instant, program_zone
from loyalty_engine.cli.logs import LOG_FORMAT, LOG_LEVEL, LogFormat, LogLevel, configure
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, JSON, PROGRAM, YES
from loyalty_engine.cli.output import confirm, console, emit_json, err_console, when
from loyalty_engine.cli.serve import ServeError
from loyalty_engine.rules.schedules import JOBS, job_name
from loyalty_engine.services.programs import load_catalog, require_program
from loyalty_engine.services.scheduling import (
    JobRun,
    job_failures,
    rewind_watermarks,
    run_tick,
    scheduler_status,
    watermarks_after,
)

app = typer.Typer(
    help="Run the time-driven jobs, and see how far they have run.",
    epilog="Jobs (default schedule, program time): " + "; ".join(
        f"{s.name} ({s.default_cron}): {s.does}" for s in JOBS.values()) + ".",
    no_args_is_help=True)

log = logging.getLogger("loyalty.scheduler")


def _job(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return job_name(value)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--job") from None


def _outcome(run: JobRun) -> str:
    """ok, partial (some members failed: retried next run) or failed."""
    if run.error is not None:
        return "failed"
    return "partial" if run.member_failures else "ok"


def _log_run(run: JobRun) -> None:
    level = logging.ERROR if run.error is not None else logging.INFO
    log.log(level, "%s of %s at %s: %s (%.2f s)", run.job, run.program_id,
            run.fire.isoformat(), run.summary(), run.seconds,
            extra={"job": run.job, "program": run.program_id,
                   "fire_time": run.fire.isoformat(), "outcome": _outcome(run),
                   "seconds": round(run.seconds, 3), "counts": run.totals(),
                   "member_failures": len(run.member_failures), "error": run.error})


def _log_and_count(run: JobRun) -> None:
    """A job run of `scheduler run`: logged, and counted for its /metrics."""
    from loyalty_engine import metrics  # here: only the long-running process needs it

    _log_run(run)
    metrics.SCHEDULER_RUNS.labels(run.job, run.program_id, _outcome(run)).inc()
    metrics.SCHEDULER_DURATION.labels(run.job).observe(run.seconds)
    for effect, count in run.totals().items():
        if count:
            metrics.SCHEDULER_EFFECTS.labels(run.job, effect).inc(count)


def _serve_metrics(host: str, port: int) -> Callable[[], None]:
    """GET /metrics (any path, in fact) on host:port in a thread; returns its stop."""
    from prometheus_client import start_http_server

    from loyalty_engine import metrics

    try:
        server, thread = start_http_server(port, host, registry=metrics.registry())
    except OSError as exc:
        raise ServeError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
                         "choose another --metrics-port or stop what uses it") from None
    log.info("metrics on http://%s:%d/metrics", host, port,
             extra={"metrics_host": host, "metrics_port": port})

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def _setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@app.command()
def tick(
    ctx: typer.Context,
    as_of: str | None = AS_OF,
    job: str | None = typer.Option(None, "--job", help=f"Only this job ({', '.join(JOBS)})."),
    program: str | None = PROGRAM,
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would happen; write "
                                 "nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="If another scheduler is running "
                                 "jobs, exit instead of waiting for it."),
    allow_future: bool = ALLOW_FUTURE,
    json_out: bool = JSON,
) -> None:
    """Run every job due up to --as-of (default now) once, then exit.

    Missed fire times are caught up, each once (for cron, for tests, for replays). A dry
    run may look ahead without --allow-future: it writes nothing."""
    _setup_logging(quiet=True)  # the table (or JSON) reports every run; failures still log
    engine = engine_for(ctx)
    instant = as_of_option(ctx, as_of, program, writes=not dry_run, allow_future=allow_future)
    # Behind a job's watermark: an error when the instant was asked for, nothing due when
    # it is simply now (after a rehearsal ticked ahead, say).
    report = run_tick(engine, instant, now, job=_job(job), program_id=program,
                      dry_run=dry_run, wait=not no_wait, on_run=_log_run,
                      on_wait=lambda: err_console.print(
                          "another scheduler is running jobs on this database; waiting "
                          "for it to finish"), strict=as_of is not None)
    if json_out:
        emit_json(report.as_json())
    else:
        head = "dry run (nothing written): would run" if dry_run else "ran"
        shown = when(instant, program_zone(ctx, program))
        if not report.runs:
            console.print(f"nothing due up to {shown}", markup=False)
        else:
            busy = [r for r in report.runs if r.summary() != "nothing"]
            table = Table("fire time", "job", "program", "did", title=f"{head} "
                          f"{len(report.runs)} job run(s) up to {shown}; "
                          f"{len(report.runs) - len(busy)} found nothing to do")
            for run in busy:
                table.add_row(when(run.fire, program_zone(ctx, run.program_id)), run.job,
                              run.program_id, escape(run.summary()))
            if busy:
                console.print(table)
            else:
                console.print(f"{head} {len(report.runs)} job run(s) up to {shown}; "
                              "none found anything to do", markup=False)
        if report.ahead:
            console.print(f"{len(report.ahead)} job(s) have already run past now and wait "
                          f"for the clock ({report.ahead[0]}"
                          + (", ..." if len(report.ahead) > 1 else "") + "); `loyalty "
                          "scheduler rewind` moves a watermark set ahead by mistake back",
                          markup=False)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def run(
    ctx: typer.Context,
    clock_start: str | None = typer.Option(
        None, "--clock-start", help="Run on a clock that reads this instant at start and "
        "runs on at real speed (tests, rehearsals); default: the real clock."),
    refresh_seconds: float = typer.Option(60.0, "--refresh-seconds", min=0.1, help="How "
                                          "often to look for program changes."),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", min=1, max=65535, help="Serve this process's Prometheus "
        "metrics (job runs, what they did) at http://HOST:PORT/metrics; default: none."),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="Address for "
                                     "--metrics-port (0.0.0.0 for every interface)."),
    log_format: LogFormat = LOG_FORMAT,
    log_level: LogLevel = LOG_LEVEL,
) -> None:
    """Run the scheduler as a long-lived process until SIGTERM or Ctrl-C.

    It catches up what is due, then fires every program's jobs on their schedules
    (program time), and logs every job run with what it did."""
    # APScheduler's scheduler costs a fifth of a second to import: only this command needs it.
    from loyalty_engine.scheduler.port import Clock, SchedulerPort

    configure(log_format.value, log_level.value)
    engine = engine_for(ctx)
    clock = Clock.starting_at(parse_instant(clock_start, "--clock-start"))
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after the running job", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop_metrics = (_serve_metrics(metrics_host, metrics_port) if metrics_port is not None
                    else None)
    port = SchedulerPort(engine, clock, _log_and_count, refresh_seconds)
    port.start()
    fires = port.next_fires()
    log.info("scheduler running (clock %s): %d job(s); next: %s", clock.now().isoformat(),
             len(fires), ", ".join(f"{job_id} at {at.isoformat()}" for job_id, at in fires[:3])
             or "none")
    while not stop.wait(0.5):
        pass
    port.stop()
    if stop_metrics is not None:
        stop_metrics()
    log.info("scheduler stopped")


@app.command()
def status(ctx: typer.Context, as_of: str | None = AS_OF, json_out: bool = JSON) -> None:
    """Every program's jobs: schedule, ran to, next fire, open failures."""
    rows = scheduler_status(engine_for(ctx), as_of_option(ctx, as_of))
    if json_out:
        emit_json(rows)
        return
    table = Table("program", "job", "cron (program time)", "ran to", "runs", "next fire",
                  "open failures")
    for r in rows:
        zone = program_zone(ctx, r["program_id"])
        table.add_row(r["program_id"], r["job"], f"{r['cron']} {r['timezone']}",
                      when(r["ran_to"], zone), str(r["runs"]), when(r["next_fire"], zone),
                      str(r["open_failures"]))
    console.print(table)


@app.command()
def failures(ctx: typer.Context,
             all_: bool = typer.Option(False, "--all", help="Include resolved failures."),
             json_out: bool = JSON) -> None:
    """Job failures, retried on every run until they succeed.

    Per member, or '*' for a whole program's run."""
    rows = job_failures(engine_for(ctx), all_)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("no open job failures" if not all_ else "no job failures")
        return
    table = Table("program", "job", "member", "key", "attempts", "last failed", "resolved",
                  "reason")
    for r in rows:
        zone = program_zone(ctx, r["program_id"])
        table.add_row(r["program_id"], r["job"], escape(r["member_id"]),
                      escape(r["failure_key"]), str(r["attempts"]),
                      when(r["last_failed_at"], zone), when(r["resolved_at"], zone),
                      escape(r["reason"]))
    console.print(table)


@app.command()
def rewind(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", help="Move watermarks past this instant back to it "
                           "(ISO 8601; a date is its midnight in the program's time zone)."),
    job: str | None = typer.Option(None, "--job", help=f"Only this job ({', '.join(JOBS)})."),
    program: str | None = PROGRAM,
    yes: bool = YES,
    json_out: bool = JSON,
) -> None:
    """Move watermarks set ahead by mistake back to an instant.

    What the jobs did stays done (effects have natural keys: nothing is done twice); asks
    first, unless --yes."""
    engine = engine_for(ctx)
    target = instant(ctx, to, "--to", program)
    assert target is not None
    chosen = _job(job)
    if program is not None:
        with engine.connect() as conn:
            require_program(load_catalog(conn), program)
    found = watermarks_after(engine, target, chosen, program)
    if not found:
        message = f"no watermark is past {when(target, program_zone(ctx, program))}"
        if json_out:
            emit_json({"to": target, "rewound": []})
        else:
            console.print(f"{message}; nothing to rewind", markup=False)
        return
    if not json_out:  # what the question is about, beside it on standard error
        for mark in found:
            err_console.print(f"{mark.job} of {mark.program_id} has run to "
                          f"{when(mark.ran_to, program_zone(ctx, mark.program_id))}",
                          markup=False)
    confirm(f"This moves {len(found)} watermark(s) back to "
            f"{when(target, program_zone(ctx, program))}, so their jobs run from there again.",
            yes)
    done = rewind_watermarks(engine, target, now(), chosen, program)
    if json_out:
        emit_json({"to": target, "rewound": [
            {"program_id": m.program_id, "job": m.job, "was": m.ran_to} for m in done]})
        return
    console.print(f"{len(done)} watermark(s) moved back; the next tick runs the fire times "
                  "after it again (effects already done stay done, once)", markup=False)
