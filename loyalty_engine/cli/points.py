"""`loyalty points ...`: the time-driven point steps, run by hand for an instant."""

from __future__ import annotations

import uuid

import typer

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, AT, JSON, PROGRAM, YES
from loyalty_engine.cli.output import confirm, console, emit_json
from loyalty_engine.records.audit import operator_name
from loyalty_engine.services.adjustments import Adjustment, adjust_points, check_adjustment
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.points import StepResult, activate_pending

app = typer.Typer(help="Activate, expire and adjust points (and expire rewards).",
                  no_args_is_help=True)


@app.command()
def activate(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
             allow_future: bool = ALLOW_FUTURE, json_out: bool = JSON) -> None:
    """Make pending points spendable once their return window has passed."""
    result = activate_pending(engine_for(ctx), as_of_option(
        ctx, as_of, program, writes=True, allow_future=allow_future), program)
    _show("activated", result, json_out)


@app.command()
def expire(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
           allow_future: bool = ALLOW_FUTURE, json_out: bool = JSON) -> None:
    """Expire points, vouchers and stamps whose expiry has come (safe to re-run)."""
    result = expire_due(engine_for(ctx), as_of_option(
        ctx, as_of, program, writes=True, allow_future=allow_future), now(), program)
    if json_out:
        emit_json(result.as_json())
        return
    _show("expired", result.points, json_out)
    rewards = result.rewards
    console.print(f"{rewards.vouchers} voucher(s) expired; {rewards.stamps} stamp(s) lapsed "
                  f"for {rewards.stamp_members} member(s)", markup=False)


def _show(verb: str, result: StepResult, json_out: bool) -> None:
    if json_out:
        emit_json({"lots": result.lots, "members": result.members,
                   "points_by_program": result.by_program})
        return
    if not result.by_program:
        console.print(f"no points {verb}", markup=False)
    for program_id, points in result.by_program.items():
        console.print(f"{program_id}: {points} points {verb}", markup=False)
    if result.lots:
        console.print(f"{result.lots} lot(s) of {result.members} member(s)", markup=False)


@app.command()
def adjust(
    ctx: typer.Context,
    member_id: str,
    program: str = typer.Option(..., "--program", help="The program whose points change."),
    points: int = typer.Option(..., "--points", help="Points to add (e.g. 50 or +50) or take "
                               "away (-50)."),
    reason: str = typer.Option(..., "--reason", help="Why (mandatory; shown in `members "
                               "explain` and kept in the audit trail)."),
    kind: str = typer.Option("goodwill", "--kind", help="goodwill or correction."),
    by: str | None = typer.Option(None, "--by", help="Who makes it (default: the OS user)."),
    adjustment_id: str | None = typer.Option(None, "--id", help="The adjustment's id, to make "
                                             "a re-run safe (default: a new one)."),
    at: str | None = AT,
    yes: bool = YES,
    json_out: bool = JSON,
) -> None:
    """Credit or debit a member's points by hand, with a reason, through the ledger."""
    request = Adjustment(adjustment_id or f"adj-{uuid.uuid4().hex[:16]}", member_id, program,
                         points, reason.strip(), kind, operator_name(by),
                         instant(ctx, at, "--at", program) or now())
    check_adjustment(request)
    confirm(f"This {'adds' if points > 0 else 'takes'} {abs(points)} point(s) "
            f"{'to' if points > 0 else 'from'} {member_id} in {program} ({kind}: "
            f"{request.reason}).", yes)
    outcome = adjust_points(engine_for(ctx), request, now())
    if json_out:
        emit_json(outcome.as_json())
        return
    again = " (already made: nothing changed)" if outcome.replayed else ""
    console.print(f"adjustment {outcome.adjustment_id}: {outcome.points:+d} points for "
                  f"{member_id} in {program} by {outcome.actor}{again}; spendable now "
                  f"{outcome.balance}", markup=False)
