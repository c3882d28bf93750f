"""`loyalty rebates issue`: turn ended periods' accrued rebates into vouchers."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import engine_for, now, parse_instant
from loyalty_engine.cli.options import AS_OF, JSON, PROGRAM
from loyalty_engine.cli.output import console, emit_json
from loyalty_engine.services.rebates import issue_rebates

app = typer.Typer(help="Periodic rebates (a share of a period's spend back as a voucher).",
                  no_args_is_help=True)


@app.command()
def issue(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
          json_out: bool = JSON) -> None:
    """Issue a voucher for every member's rebate of each period that ended by an instant
    (safe to run again: each member's rebate of a period is issued once)."""
    result = issue_rebates(engine_for(ctx), parse_instant(as_of, "--as-of") or now(), now(),
                           program)
    if json_out:
        emit_json(result.as_json())
        return
    console.print(f"{result.vouchers} rebate voucher(s) issued, {result.amount_minor} in "
                  "minor units of the programs' currencies"
                  + (f" ({', '.join(f'{p}: {n}' for p, n in result.by_program.items())})"
                     if result.by_program else ""), markup=False)
