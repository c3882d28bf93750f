"""`loyalty tiers ...`: a member's tier, who is at risk at the next review, the review
itself for an instant, and an operator's manual tier."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer
from rich.table import Table

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now, program_zone
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, AT, JSON, PROGRAM
from loyalty_engine.cli.output import console, emit_json, err_console, money, when
from loyalty_engine.services.tiers import at_risk, review_tiers, set_manual_tier, show_tiers

app = typer.Typer(help="Tiers: show, at risk, review, set by hand.", no_args_is_help=True)


@app.command()
def show(ctx: typer.Context, member_id: str, program: str | None = PROGRAM,
         as_of: str | None = AS_OF, json_out: bool = JSON) -> None:
    """A member's tier, credit, next tier and review, and history."""
    data = show_tiers(engine_for(ctx), member_id, as_of_option(ctx, as_of, program), program)
    if json_out:
        emit_json(data)
        return
    if not data:
        console.print("no program in force has tiers")
    for t in data:
        zone = program_zone(ctx, t["program_id"])
        floor = (f" (manual floor {t['manual_tier']} until {when(t['manual_until'], zone)})"
                 if t["manual_tier"] else "")
        held = (f", held through {t['held_until'] - timedelta(days=1)}" if t["held_until"]
                else "")
        console.print(f"[bold]{t['program_id']}[/]: {t['tier'] or 'no tier'}{floor}{held}")
        last_day = t["window"][1] - timedelta(days=1)
        console.print(f"  {t['measure']} {_amount(t, t['credit'])} from {t['window'][0]} to "
                      f"{last_day}", markup=False)
        if t["next_tier"] and t.get("credits"):  # several measures: each one's figure
            console.print(f"  next tier {t['next_tier']}: "
                          f"{t['next_tier_short'] or 'reached'}", markup=False)
        elif t["next_tier"]:
            console.print(f"  next tier {t['next_tier']}: lacks "
                          f"{_amount(t, t['next_tier_lacks'])}", markup=False)
        if t["next_review"]:
            console.print(f"  next review {t['next_review']} (policy {t['policy']})",
                          markup=False)
        if t["history"]:
            table = Table("when", "from", "to", "reason")
            for h in t["history"]:
                table.add_row(when(h["changed_at"], zone), h["from"] or "-", h["to"] or "-",
                              h["reason"])
            console.print(table)


@app.command("at-risk")
def at_risk_(ctx: typer.Context, program: str | None = PROGRAM, as_of: str | None = AS_OF,
             json_out: bool = JSON) -> None:
    """Members who would drop at their next review, and how much credit they lack."""
    rows = at_risk(engine_for(ctx), as_of_option(ctx, as_of, program), program)
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("nobody would drop at the next review")
        return
    table = Table("member", "program", "tier", "would drop to", "review", "credit", "needed",
                  "lacks")
    for r in rows:
        if r.get("credits"):  # several measures: what is short, measure by measure
            table.add_row(r["member_id"], r["program_id"], r["tier"], r["would_drop_to"] or "-",
                          str(r["review_day"]), r["credit_shown"], r["needed_shown"],
                          r["short"])
            continue
        table.add_row(r["member_id"], r["program_id"], r["tier"], r["would_drop_to"] or "-",
                      str(r["review_day"]), _amount(r, r["credit"]), _amount(r, r["needed"]),
                      _amount(r, r["lacks"]))
    console.print(table)


def _amount(row: dict[str, Any], value: int) -> str:
    """Credit for people: money for a spend ladder, a plain count otherwise."""
    if row["measure"] == "quantity":
        return f"{value / 1000:g} {row.get('unit') or 'quantity'}"
    if row["measure"] != "spend":
        return f"{value} {row['measure']}"
    return money(value, row["currency"])


@app.command()
def review(ctx: typer.Context, program: str | None = PROGRAM, as_of: str | None = AS_OF,
           allow_future: bool = ALLOW_FUTURE, json_out: bool = JSON) -> None:
    """Apply every tier review due by an instant, in order (safe to re-run)."""
    result = review_tiers(engine_for(ctx), as_of_option(
        ctx, as_of, program, writes=True, allow_future=allow_future), now(), program)
    if json_out:
        emit_json(result.as_json())
    else:
        if not result.reviewed:
            console.print("no program in force has tiers")
        for pid, count in result.reviewed.items():
            console.print(f"{pid}: {count} review(s), {result.upgraded[pid]} up, "
                          f"{result.downgraded[pid]} down, {result.held[pid]} held, "
                          f"{result.floors_ended[pid]} manual floor(s) ended", markup=False)
        for pid, member_id, day, reason in result.failures:
            err_console.print(f"{pid}: the review of {member_id} on {day} failed ({reason}); "
                              "it stays due and is retried by the next review", markup=False)
    if result.failures:
        raise typer.Exit(1)


@app.command("set")
def set_(ctx: typer.Context, member_id: str, tier: str,
         until: str = typer.Option(..., "--until", help="When the manual tier ends "
                                   "(ISO 8601; a date is its midnight in the program's "
                                   "time zone)."),
         reason: str = typer.Option(..., "--reason", help="Why (kept in the history)."),
         program: str | None = PROGRAM, at: str | None = AT, json_out: bool = JSON) -> None:
    """Give a member a tier by hand until a date (a floor).

    They keep at least this tier until then; earning more still upgrades them."""
    ends = instant(ctx, until, "--until", program)
    assert ends is not None
    data = set_manual_tier(engine_for(ctx), member_id, tier, ends, reason,
                           instant(ctx, at, "--at", program) or now(), now(), program)
    if json_out:
        emit_json(data)
        return
    console.print(f"{member_id} has at least {tier} in {data['program_id']} until "
                  f"{when(ends, program_zone(ctx, data['program_id']))} (earned: "
                  f"{data['earned_tier'] or 'none'})", markup=False)
