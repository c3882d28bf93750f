"""`loyalty events list`: the member events outbox, for a CRM or an e-mail system."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, now, program_zone
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, JSON
from loyalty_engine.cli.output import console, emit_json, when
from loyalty_engine.domain.ledger_reasons import describe_fields
from loyalty_engine.services.notices import send_notices
from loyalty_engine.services.outbox import KINDS, list_events
from loyalty_engine.services.programs import program_currencies

app = typer.Typer(help="The member events outbox, for a CRM or an e-mail system.",
                  epilog="Kinds: " + "; ".join(f"{k}: {v}" for k, v in KINDS.items()) + ".",
                  no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    since: int = typer.Option(0, "--since", min=0, help="Only events after this id (the "
                              "last one you processed)."),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="At most this many."),
    member: str | None = typer.Option(None, "--member", help="Only this member's events."),
    json_out: bool = JSON,
) -> None:
    """Events in the order recorded, each with an id to resume from."""
    rows = list_events(engine_for(ctx), since, limit, member)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print(f"no events after {since}")
        return
    currencies = program_currencies(engine_for(ctx))
    table = Table("id", "kind", "member", "program", "when", "data")
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], escape(r["member_id"]), r["program_id"],
                      when(r["occurred_at"], program_zone(ctx, r["program_id"])),
                      escape(describe_fields(r["data"], currencies.get(r["program_id"]))))
    console.print(table)


@app.command()
def notify(
    ctx: typer.Context,
    as_of: str | None = AS_OF,
    days: int = typer.Option(30, "--days", min=1, max=365, help="How far ahead to warn."),
    allow_future: bool = ALLOW_FUTURE,
    json_out: bool = JSON,
) -> None:
    """Record advance notices as events (each once, however often run).

    Points expiring, tiers that will drop at a review, verifications about to lapse,
    within --days."""
    result = send_notices(engine_for(ctx), as_of_option(
        ctx, as_of, writes=True, allow_future=allow_future), now(), days)
    if json_out:
        emit_json(result.as_json())
        return
    done = ", ".join(f"{n} {kind}" for kind, n in result.recorded.items()) or "nothing new"
    console.print(f"notices recorded: {done}", markup=False)
