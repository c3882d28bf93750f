"""`loyalty rebates issue`: turn ended periods' accrued rebates into vouchers."""

from __future__ import annotations

import typer

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, now
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, JSON, PROGRAM
from loyalty_engine.cli.output import console, emit_json, money
from loyalty_engine.services.rebates import issue_rebates

app = typer.Typer(help="Periodic rebates (a share of a period's spend back as a voucher).",
                  no_args_is_help=True)


@app.command()
def issue(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
          allow_future: bool = ALLOW_FUTURE, json_out: bool = JSON) -> None:
    """Issue the rebate vouchers of periods that have ended (safe to re-run).

    Each member's rebate of a period is issued once."""
    result = issue_rebates(engine_for(ctx), as_of_option(ctx, as_of, program, writes=True,
                                                         allow_future=allow_future),
                           now(), program)
    if json_out:
        emit_json(result.as_json())
        return
    if not result.vouchers:
        console.print("no rebate voucher was due", markup=False)
    for pid, issued in result.by_program.items():
        console.print(f"{pid}: {issued.vouchers} rebate voucher(s) issued, "
                      f"{money(issued.amount_minor, issued.currency)} in all", markup=False)
