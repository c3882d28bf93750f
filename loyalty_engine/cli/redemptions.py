"""`loyalty redemptions ...`: spend points, buy a voucher, use a voucher, or reverse one."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from loyalty_engine.cli.context import engine_for, instant, now
from loyalty_engine.cli.options import AT, JSON
from loyalty_engine.cli.output import console, emit_json, fail
from loyalty_engine.domain.errors import RedemptionBackdatedError
from loyalty_engine.domain.events import describe_errors
from loyalty_engine.domain.redemptions import RedemptionRequest
from loyalty_engine.services.redemptions import (
    RedemptionOutcome,
    redeem,
    reverse_redemption,
)

app = typer.Typer(help="Redeem points or vouchers, and reverse redemptions.",
                  no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    redemption_id: str = typer.Option(..., "--id", help="Your id for this redemption; "
                                      "posting it again changes nothing."),
    member_id: str = typer.Option(..., "--member", help="The member who redeems."),
    program_id: str = typer.Option(..., "--program", help="The program."),
    points: int | None = typer.Option(None, "--points", help="Spend this many points."),
    reward: str | None = typer.Option(None, "--reward", help="Buy this reward's voucher with "
                                      "points."),
    voucher: str | None = typer.Option(None, "--voucher", help="Use this voucher (its code)."),
    at: str | None = AT,
    allow_backdate: bool = typer.Option(
        False, "--allow-backdate", help="Accept an --at older than the program's "
        "redemptions.backdate_hours (a redemption entered by hand from a paper slip)."),
    json_out: bool = JSON,
) -> None:
    """Redeem: give exactly one of --points, --reward and --voucher."""
    try:
        request = RedemptionRequest(
            redemption_id=redemption_id, member_id=member_id, program_id=program_id,
            occurred_at=instant(ctx, at, "--at", program_id) or now(), points=points,
            reward=reward,
            voucher=voucher)
    except ValidationError as exc:
        fail("; ".join(describe_errors(exc)))
        return
    try:
        outcome = redeem(engine_for(ctx), request, now(), allow_backdate)
    except RedemptionBackdatedError as exc:
        fail(f"{exc}; to record it by hand all the same, add --allow-backdate"
             .replace("[", r"\["))
        return
    _show(outcome, json_out)


@app.command()
def reverse(ctx: typer.Context, redemption_id: str,
            at: str | None = AT,
            json_out: bool = JSON) -> None:
    """Undo a redemption (points back to their lots, vouchers back as they were)."""
    _show(reverse_redemption(engine_for(ctx), redemption_id, now(), instant(ctx, at, "--at")),
          json_out)


def _show(outcome: RedemptionOutcome, json_out: bool) -> None:
    if json_out:
        emit_json({"redemption_id": outcome.redemption_id, "member_id": outcome.member_id,
                   "program_id": outcome.program_id, "kind": outcome.kind,
                   "points": outcome.points, "voucher": outcome.voucher,
                   "reversed": outcome.reversed, "replayed": outcome.replayed,
                   "points_restored": outcome.restored})
        return
    who = f"redemption {outcome.redemption_id} of {outcome.member_id} in {outcome.program_id}"
    again = " (already recorded; nothing changed)" if outcome.replayed else ""
    if outcome.reversed:
        back = f"{outcome.restored} points are back in the lots they came from"
        if outcome.restored is not None and outcome.restored < outcome.points:
            back += f" ({outcome.points - outcome.restored} had expired meanwhile)"
        what = {"points": back, "reward": f"voucher {outcome.voucher} is void and {back}",
                "voucher": f"voucher {outcome.voucher} can be used again"}[outcome.kind]
        console.print(f"{who} undone: {what}{again}", markup=False)
        return
    what = {"points": f"{outcome.points} points spent",
            "reward": f"voucher {outcome.voucher} bought for {outcome.points} points",
            "voucher": f"voucher {outcome.voucher} used"}[outcome.kind]
    console.print(f"{who}: {what}; done{again}", markup=False)
