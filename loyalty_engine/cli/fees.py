"""`loyalty fees ...`: pay a club fee charge (in money or points), mark one failed, list."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import engine_for, instant, now, program_zone
from loyalty_engine.cli.options import AT, JSON
from loyalty_engine.cli.output import console, emit_json, membership_line, money, when
from loyalty_engine.services.fees import FeeOutcome, charges_of, fail_charge, pay_charge

STATUSES = ("due", "paid", "failed", "refunded", "waived")
CHARGE = typer.Argument(..., help="The charge id (fees list shows it).")
app = typer.Typer(help="Club fee charges: the engine records them, it moves no money.",
                  no_args_is_help=True)


@app.command()
def pay(ctx: typer.Context, charge_id: int = CHARGE,
        points: bool = typer.Option(False, "--points", help="Pay with the level's points "
                                    "price from the member's spendable points."),
        reference: str | None = typer.Option(None, "--reference", help="The payment's "
                                             "reference (a PSP id, a receipt)."),
        at: str | None = AT, json_out: bool = JSON) -> None:
    """Mark a due or failed charge paid; a joining charge starts the membership."""
    paid_at = instant(ctx, at, "--at") or now()
    _show(ctx, pay_charge(engine_for(ctx), charge_id, paid_at, now(), points, reference),
          json_out)


@app.command()
def fail(ctx: typer.Context, charge_id: int = CHARGE,
         reason: str | None = typer.Option(None, "--reason", help="Why collection failed."),
         json_out: bool = JSON) -> None:
    """Record that collecting a due charge failed (it stays payable)."""
    _show(ctx, fail_charge(engine_for(ctx), charge_id, now(), reason), json_out)


@app.command("list")
def list_(ctx: typer.Context,
          member: str | None = typer.Option(None, "--member", help="Only this member."),
          status: str | None = typer.Option(None, "--status", help="Only charges in this "
                                            "state: due, paid, failed, refunded, waived."),
          json_out: bool = JSON) -> None:
    """Fee charges, newest first."""
    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"{status!r} is not one of {', '.join(STATUSES)}",
                                 param_hint="--status")
    rows = charges_of(engine_for(ctx), member, status)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("no fee charges" + (f" of {member}" if member else "")
                      + (f" {status}" if status else ""), markup=False)
        return
    table = Table("charge", "member", "club", "level", "kind", "amount", "due", "status")
    for r in rows:
        table.add_row(str(r["charge_id"]), escape(r["member_id"]), r["club_id"], r["level"],
                      r["kind"], money(r["amount_minor"], r["currency"]),
                      when(r["due_at"], program_zone(ctx, r["program_id"])), r["status"])
    console.print(table)


def _show(ctx: typer.Context, outcome: FeeOutcome, json_out: bool) -> None:
    if json_out:
        emit_json(outcome.as_json())
        return
    console.print(outcome.message, markup=False)
    if outcome.membership is not None:
        m = outcome.membership
        console.print(membership_line(m, program_zone(ctx, m["program_id"])), markup=False)
