"""`loyalty clubs ...`: join, leave and upgrade clubs; show a member's clubs; run the
membership clock (renewals, grace, lapse, eligibility) for an instant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now, program_zone
from loyalty_engine.cli.options import ALLOW_FUTURE, AS_OF, AT, JSON, PROGRAM
from loyalty_engine.cli.output import console, emit_json, membership_line, money, when
from loyalty_engine.services.clubs import (
    ClubOutcome,
    add_household_member,
    advance_clubs,
    join_club,
    leave_club,
    remove_household_member,
    upgrade_club,
)
from loyalty_engine.services.enrolment import member_clubs

app = typer.Typer(help="Club memberships: open, affinity and paid clubs.", no_args_is_help=True)


@app.command()
def join(ctx: typer.Context, member_id: str, club_id: str,
         level: str | None = typer.Option(None, "--level", help="Fee clubs: the level "
                                          "(default the first)."),
         program: str | None = PROGRAM, at: str | None = AT, json_out: bool = JSON) -> None:
    """Join a club (a fee club waits for its charge to be paid).

    Pay it with `loyalty fees pay`."""
    at_ = instant(ctx, at, "--at", program) or now()
    _show(ctx, join_club(engine_for(ctx), member_id, club_id, at_, now(), program, level),
          json_out)


@app.command()
def leave(ctx: typer.Context, member_id: str, club_id: str, program: str | None = PROGRAM,
          at: str | None = AT, json_out: bool = JSON) -> None:
    """Leave a club (a fee club: refunded while cooling off).

    After the cooling-off period a fee club runs to the end of the paid term and does
    not renew."""
    at_ = instant(ctx, at, "--at", program) or now()
    _show(ctx, leave_club(engine_for(ctx), member_id, club_id, at_, now(), program), json_out)


@app.command()
def upgrade(ctx: typer.Context, member_id: str, club_id: str, level: str,
            program: str | None = PROGRAM, at: str | None = AT, json_out: bool = JSON) -> None:
    """Move a paid membership up a level for the difference of the fees.

    Prorated to the time left of the term, or the whole difference where the club's
    upgrade_price says full_difference."""
    at_ = instant(ctx, at, "--at", program) or now()
    _show(ctx, upgrade_club(engine_for(ctx), member_id, club_id, level, at_, now(), program),
          json_out)


@app.command("add-member")
def add_member(ctx: typer.Context, primary: str, club_id: str, secondary: str,
               program: str | None = PROGRAM, at: str | None = AT,
               json_out: bool = JSON) -> None:
    """Add a household member to a primary's active fee-club membership.

    One fee: the secondary (their own member id and card) has the membership's benefits
    while it is active or in grace, up to the level's household max_members."""
    at_ = instant(ctx, at, "--at", program) or now()
    _show(ctx, add_household_member(engine_for(ctx), primary, club_id, secondary, at_, now(),
                                    program), json_out)


@app.command("remove-member")
def remove_member(ctx: typer.Context, primary: str, club_id: str, secondary: str,
                  program: str | None = PROGRAM, at: str | None = AT,
                  json_out: bool = JSON) -> None:
    """Remove a household member: their benefits end at that instant."""
    at_ = instant(ctx, at, "--at", program) or now()
    _show(ctx, remove_household_member(engine_for(ctx), primary, club_id, secondary, at_,
                                       now(), program), json_out)


@app.command()
def show(ctx: typer.Context, member_id: str, as_of: str | None = AS_OF,
         program: str | None = PROGRAM, json_out: bool = JSON) -> None:
    """A member's clubs, fee charges and group verifications."""
    data = member_clubs(engine_for(ctx), member_id, as_of_option(ctx, as_of, program))
    if json_out:
        emit_json(data)
        return
    print_clubs(data, lambda program_id: program_zone(ctx, program_id))


def print_clubs(data: dict[str, Any], zone: Callable[[str | None], tzinfo]) -> None:
    """Tables of memberships, charges and verifications, times in each program's zone."""
    if not (data["clubs"] or data["charges"] or data["verifications"]
            or data.get("households")):
        console.print("no clubs, fee charges or verifications")
        return
    if data["clubs"]:
        table = Table("program", "club", "level", "status", "paid through", "renews",
                      title="clubs")
        for c in data["clubs"]:
            table.add_row(c["program_id"], c["club_id"], c["level"] or "-", c["status"],
                          when(c["term_end"], zone(c["program_id"])),
                          "yes" if c["auto_renew"] else "no")
        console.print(table)
    if data["charges"]:
        table = Table("charge", "club", "level", "kind", "amount", "due", "status", "paid",
                      title="fee charges")
        for f in data["charges"]:
            here = zone(f["program_id"])
            table.add_row(str(f["charge_id"]), f["club_id"], f["level"], f["kind"],
                          money(f["amount_minor"], f["currency"]), when(f["due_at"], here),
                          f["status"], f"{when(f['paid_at'], here)} {f['paid_via'] or ''}"
                          .strip())
        console.print(table)
    if data.get("households"):
        table = Table("program", "club", "primary", "household member", "from", "until",
                      title="households")
        for h in data["households"]:
            here = zone(h["program_id"])
            table.add_row(h["program_id"], h["club_id"], escape(h["primary_member_id"]),
                          escape(h["member_id"]), when(h["added_at"], here),
                          when(h["removed_at"], here))
        console.print(table)
    if data["verifications"]:
        table = Table("program", "group", "evidence", "valid until", "re-verify from",
                      "status", title="group verifications")
        for v in data["verifications"]:
            here = zone(v["program_id"])
            table.add_row(v["program_id"], v["group_id"], escape(v["evidence"]),
                          when(v["verified_until"], here), when(v["reverify_from"], here),
                          v["status"])
        console.print(table)


@app.command()
def advance(ctx: typer.Context, as_of: str | None = AS_OF, program: str | None = PROGRAM,
            allow_future: bool = ALLOW_FUTURE, json_out: bool = JSON) -> None:
    """Run the membership clock: renewals, grace, lapse (safe to re-run).

    Also ends cancelled memberships and lapses group eligibility that ran out."""
    result = advance_clubs(engine_for(ctx), as_of_option(ctx, as_of, program, writes=True,
                                                         allow_future=allow_future),
                           now(), program)
    if json_out:
        emit_json(result.as_json())
        return
    console.print(
        f"{result.renewals} renewal charge(s) ({result.waived} waived), {result.grace} "
        f"entered grace, {result.lapsed} lapsed, {result.ended} ended, "
        f"{result.eligibility_lapsed} verification(s) lapsed, "
        f"{result.memberships_lapsed_by_eligibility} membership(s) lapsed with them"
        + (f", {result.households_ended} household member(s) ended with their primary"
           if result.households_ended else ""),
        markup=False)


def _show(ctx: typer.Context, outcome: ClubOutcome, json_out: bool) -> None:
    if json_out:
        emit_json(outcome.as_json())
        return
    m = outcome.membership
    console.print(membership_line(m, program_zone(ctx, m["program_id"])), markup=False)
    if outcome.charge is not None:
        c = outcome.charge
        console.print(f"charge {c['charge_id']}: {c['kind']} "
                      f"{money(c['amount_minor'], c['currency'])}, {c['status']}", markup=False)
    if outcome.message:
        console.print(outcome.message, markup=False)
