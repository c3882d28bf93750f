"""`loyalty points ...`: the time-driven point steps, run by hand for an instant."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import engine_for, now, parse_instant
from loyalty_engine.cli.output import console, emit_json
from loyalty_engine.services.expiry import expire_due
from loyalty_engine.services.points import StepResult, activate_pending

app = typer.Typer(help="Activate pending points; expire points, vouchers and stamps.",
                  no_args_is_help=True)
AS_OF = typer.Option(None, "--as-of", help="Run as at this instant (ISO 8601 with an "
                     "offset); default now.")
PROGRAM = typer.Option(None, "--program", help="Only this program.")
JSON = typer.Option(False, "--json", help="Print JSON.")


@app.command()
def activate(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
             json_out: bool = JSON) -> None:
    """Make pending points spendable once their return window has passed."""
    result = activate_pending(engine_for(ctx), parse_instant(as_of, "--as-of") or now(), program)
    _show("activated", result, json_out)


@app.command()
def expire(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
           json_out: bool = JSON) -> None:
    """Expire points, vouchers and stamps whose expiry has come (safe to re-run)."""
    result = expire_due(engine_for(ctx), parse_instant(as_of, "--as-of") or now(), now(),
                        program)
    if json_out:
        emit_json(result.as_json())
        return
    points, rewards = result.points, result.rewards
    console.print(f"{points.points} points expired in {points.lots} lot(s) of "
                  f"{points.members} member(s); {rewards.vouchers} voucher(s) expired; "
                  f"{rewards.stamps} stamp(s) lapsed for {rewards.stamp_members} member(s)",
                  markup=False)


def _show(verb: str, result: StepResult, json_out: bool) -> None:
    if json_out:
        emit_json({"lots": result.lots, "points": result.points, "members": result.members})
        return
    console.print(f"{result.points} points {verb} in {result.lots} lot(s) of "
                  f"{result.members} member(s)", markup=False)
