"""`loyalty points ...`: the time-driven point steps, run by hand for an instant."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, now
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, JSON, PROGRAM
from loyalty_engine.cli.output import console, emit_json
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.points import StepResult, activate_pending

app = typer.Typer(help="Activate pending points; expire points, vouchers and stamps.",
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
