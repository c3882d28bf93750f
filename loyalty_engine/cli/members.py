"""`loyalty members ...`: list members, show one, explain every point of their ledger, import
their survey answers."""

from __future__ import annotations

import json
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.clubs import print_clubs
from loyalty_engine.cli.context import as_of as as_of_option
from loyalty_engine.cli.context import engine_for, instant, now, program_zone
from loyalty_engine.cli.options import YES
from loyalty_engine.cli.output import (
    confirm,
    console,
    emit_json,
    fail,
    money,
    print_line_errors,
    when,
)
from loyalty_engine.domain.plain_json import json_default
from loyalty_engine.records.audit import operator_name
from loyalty_engine.services.enrolment import enrol_member, set_consent
from loyalty_engine.services.groups import reverifications_due, verify_member
from loyalty_engine.services.members import explain_member, list_members, show_member
from loyalty_engine.services.privacy import erase_member, export_member
from loyalty_engine.services.surveys import import_surveys

app = typer.Typer(help="Look at members, their balances and their ledger.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
AT = typer.Option(None, "--at", help="When it happened (ISO 8601; a date is its midnight in the "
                  "program's time zone); default now.")
AS_OF = typer.Option(None, "--as-of", help="Which stamps and vouchers are still valid at "
                     "this instant (ISO 8601); default now. Balances and lots are always as "
                     "recorded.")


@app.command("list")
def list_(
    ctx: typer.Context,
    search: str | None = typer.Option(None, "--search", help="Only members whose id or "
                                      "attributes contain this text (any case)."),
    program: str | None = typer.Option(None, "--program", help="Only members enrolled in "
                                       "this program (and only its balance shown)."),
    sort: str = typer.Option("member_id", "--sort", help="member_id, created, purchases, "
                             "last_purchase or points (needs --program); add :desc to "
                             "reverse."),
    limit: int = typer.Option(100, min=1, max=10_000, help="At most this many members."),
    offset: int = typer.Option(0, min=0, help="Skip this many members first."),
    json_out: bool = JSON,
) -> None:
    """Members with their points per program, purchase count and last purchase."""
    page = list_members(engine_for(ctx), search=search, program=program, sort=sort,
                        limit=limit, offset=offset, as_of=now())
    if json_out:
        emit_json({"total": page.total, "offset": page.offset, "limit": page.limit,
                   "members": [r.as_json() for r in page.rows]})
        return
    table = Table("member", "points (spendable + pending, per program)", "purchases",
                  "last purchase")
    for r in page.rows:
        points = "; ".join(f"{p} {v[0]}" + (f" + {v[1]} pending" if v[1] else "")
                           for p, v in sorted(r.balances.items())) or "-"
        name = escape(r.member_id) + (" (erased)" if r.erased else "")
        table.add_row(name, points, str(r.purchases), when(r.last_purchase_at))
    console.print(table)
    first = page.offset + 1 if page.rows else page.offset
    console.print(f"showing {first}–{page.offset + len(page.rows)} of {page.total}",
                  markup=False)


@app.command()
def show(ctx: typer.Context, member_id: str, as_of: str | None = AS_OF,
         json_out: bool = JSON) -> None:
    """A member's balances, stamp cards, vouchers, lots and recent purchases."""
    data = show_member(engine_for(ctx), member_id, as_of_option(ctx, as_of))
    if json_out:
        emit_json(data)
        return
    def zone(program_id: str | None) -> tzinfo:
        return program_zone(ctx, program_id)
    # Since the first enrolment, in the zone of the program it was made in.
    first = min(data["enrolments"], key=lambda e: e["enrolled_at"], default=None)
    since = (f"member of {first['program_id']} since "
             f"{when(first['enrolled_at'], zone(first['program_id']))}" if first
             else "not enrolled in any program")
    console.print(f"[bold]{escape(data['member_id'])}[/] ({since})")
    balances = Table("program", "spendable", "pending", "earned in total", title="balances")
    for b in data["balances"]:
        balances.add_row(b["program_id"], str(b["points"]), str(b["pending"]),
                         str(b["lifetime_earned"]))
    console.print(balances)
    if data["stamp_cards"]:
        cards = Table("program", "card", "stamps", "reward", title="stamp cards")
        for c in data["stamp_cards"]:
            cards.add_row(c["program_id"], c["rule_id"], f"{c['stamps']} of {c['card_size']}",
                          c["reward_id"])
        console.print(cards)
    if data["vouchers"]:
        vouchers = Table("voucher", "program", "reward", "from", "valid until", "status",
                         title="vouchers")
        for v in data["vouchers"]:
            status = v["status"] if v["status"] != "issued" or v["valid"] else "expired"
            vouchers.add_row(escape(v["code"]), v["program_id"], v["reward_id"], v["source"],
                             when(v["valid_until"], zone(v["program_id"])), status)
        console.print(vouchers)
    for t in data["tiers"]:
        floor = f" (manual floor {t['manual_tier']})" if t["manual_tier"] else ""
        console.print(f"tier in {t['program_id']}: {t['tier'] or 'none'}{floor}; next review "
                      f"{t['next_review'] or '-'}", markup=False)
    if data["clubs"]["clubs"] or data["clubs"]["charges"] or data["clubs"]["verifications"]:
        print_clubs(data["clubs"], zone)
    for d in data["debts"]:
        if d["outstanding"]:
            console.print(f"owes {d['outstanding']} points in {d['program_id']} "
                          f"(from a refund of points already spent)", markup=False)
    enrolments = Table("program", "enrolled", "how", title="enrolments")
    for e in data["enrolments"]:
        enrolments.add_row(e["program_id"], when(e["enrolled_at"], zone(e["program_id"])),
                           e["source"])
    console.print(enrolments)
    lots = Table("lot", "program", "earned", "points", "remaining", "expires", "pending until",
                 title="point lots (spent first-in-first-out)")
    for lot in data["lots"]:
        here = zone(lot["program_id"])
        pending = (when(lot["pending_until"], here) if lot["pending_until"] and
                   not lot["activated_at"] else "-")
        lots.add_row(str(lot["entry_id"]), lot["program_id"], when(lot["earned_at"], here),
                     str(lot["points"]), str(lot["remaining"]),
                     when(lot["expires_at"], here) if lot["expires_at"] else "never", pending)
    console.print(lots)
    purchases = Table("when", "store", "transaction", "total", "tender", "channel",
                      title="recent purchases")
    for p in data["recent_purchases"]:
        purchases.add_row(when(p["occurred_at"], zone(None)), escape(p["store_id"]),
                          escape(p["transaction_id"]), money(p["total_minor"], p["currency"]),
                          p["tender"] or "-", p["channel"] or "-")
    console.print(purchases)


@app.command()
def explain(ctx: typer.Context, member_id: str, json_out: bool = JSON) -> None:
    """Every ledger entry, program by program: version, rule, purchase and why."""
    data = explain_member(engine_for(ctx), member_id)
    if json_out:
        emit_json(data)
        return
    if not data["programs"]:
        console.print(f"{member_id} has no ledger entries yet", markup=False)
    for program in data["programs"]:
        zone = ZoneInfo(program["timezone"])
        console.print(f"[bold]{escape(program['program_id'])}[/]: {escape(program['name'])} "
                      f"({program['currency']}, times in {program['timezone']})")
        total = 0
        for e in program["entries"]:
            total += e["points"]
            source = (f"purchase {e['transaction_id']} at {e['store_id']} "
                      f"({money(e['total_minor'], e['currency'])}), " if e["transaction_id"]
                      else "")
            rule = f"rule {e['rule_id']} " if e["rule_id"] else ""
            console.print(
                f"  {when(e['occurred_at'], zone)}  {e['kind']:<10} {e['points']:+d}  "
                f"{rule}v{e['version']} ({e['content_hash'][:12]}): {source}{e['why']}"
                f"{_lot_state(e['lot'], zone)}  [sum {total}]",
                markup=False, soft_wrap=True)
        count = len(program["entries"])
        console.print(f"  {program['program_id']}: {program['points']} spendable + "
                      f"{program['pending']} pending = {program['points'] + program['pending']}"
                      f", the sum of its {count} entr{'y' if count == 1 else 'ies'}",
                      markup=False)


def _lot_state(lot: dict[str, Any] | None, zone: ZoneInfo) -> str:
    """When an earning's points were (or will be) spendable, and when they expire."""
    if lot is None:
        return ""
    parts = []
    if lot["pending_until"] is not None:
        parts.append(f"spendable since {when(lot['activated_at'], zone)}" if lot["activated_at"]
                     else f"pending until {when(lot['pending_until'], zone)}")
    if lot["expires_at"] is not None:
        parts.append(f"expires {when(lot['expires_at'], zone)}")
    return f" ({'; '.join(parts)})"


@app.command()
def enrol(
    ctx: typer.Context,
    member_id: str,
    attribute: list[str] = typer.Option([], "--attr", help="An attribute as KEY=VALUE "
                                        "(e.g. date_of_birth=1958-04-02); repeatable."),
    consent: list[str] = typer.Option([], "--consent", help="A consent flag given (e.g. "
                                      "marketing); repeatable."),
    program: str | None = typer.Option(None, "--program", help="Also enrol in this program."),
    at: str | None = AT,
    json_out: bool = JSON,
) -> None:
    """Create a member (or update one) with attributes and consents given."""
    attributes: dict[str, str] = {}
    for pair in attribute:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--attr")
        attributes[key.strip()] = value
    data = enrol_member(engine_for(ctx), member_id, attributes, dict.fromkeys(consent, True),
                        instant(ctx, at, "--at", program) or now(), now(), program)
    _show_member_data(ctx, data, json_out)


@app.command("consent")
def consent_(
    ctx: typer.Context,
    member_id: str,
    flag: str,
    withdraw: bool = typer.Option(False, "--withdraw", help="Record the consent withdrawn "
                                  "(default: given)."),
    at: str | None = AT,
    json_out: bool = JSON,
) -> None:
    """Record a consent flag (marketing, ...) given or withdrawn, with its time."""
    data = set_consent(engine_for(ctx), member_id, flag, not withdraw,
                       instant(ctx, at, "--at") or now())
    _show_member_data(ctx, data, json_out)


def _show_member_data(ctx: typer.Context, data: dict[str, Any], json_out: bool) -> None:
    if json_out:
        emit_json(data)
        return
    shown = ", ".join(f"{k}={v}" for k, v in sorted(data["attributes"].items())) or "none"
    console.print(f"{data['member_id']}: attributes {shown}", markup=False)
    zone = program_zone(ctx, None)
    for c in data["consents"]:
        state = (f"given {when(c['given_at'], zone)}" if c["given"]
                 else f"withdrawn {when(c['withdrawn_at'], zone)}")
        console.print(f"  consent {c['flag']}: {state}", markup=False)


@app.command()
def verify(
    ctx: typer.Context,
    member_id: str,
    group_id: str,
    until: str = typer.Option(..., "--until", help="When the verification expires (ISO 8601; "
                              "a date is its midnight in the program's time zone)."),
    evidence: str = typer.Option(..., "--evidence", help="What was seen: a document "
                                 "reference."),
    program: str | None = typer.Option(None, "--program", help="The program, when several "
                                       "define the group."),
    at: str | None = AT,
    json_out: bool = JSON,
) -> None:
    """Record that the member belongs to an affinity group, until a date."""
    ends = instant(ctx, until, "--until", program)
    assert ends is not None
    data = verify_member(engine_for(ctx), member_id, group_id, ends, evidence,
                         instant(ctx, at, "--at", program) or now(), now(), program)
    if json_out:
        emit_json(data)
        return
    zone = program_zone(ctx, data["program_id"])
    console.print(f"{member_id} verified for {group_id} ({data['program_id']}) until "
                  f"{when(data['verified_until'], zone)}; re-verification due from "
                  f"{when(data['reverify_from'], zone)}", markup=False)


@app.command("reverify-due")
def reverify_due(
    ctx: typer.Context,
    as_of: str | None = typer.Option(None, "--as-of", help="Which re-verifications are due "
                                     "at this instant (ISO 8601); default now."),
    json_out: bool = JSON,
) -> None:
    """Verifications due for re-verification that have not lapsed yet."""
    rows = reverifications_due(engine_for(ctx), as_of_option(ctx, as_of))
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("no re-verification is due")
        return
    table = Table("member", "program", "group", "valid until", "due since", "evidence")
    for r in rows:
        zone = program_zone(ctx, r["program_id"])
        table.add_row(escape(r["member_id"]), r["program_id"], r["group_id"],
                      when(r["verified_until"], zone), when(r["reverify_from"], zone),
                      escape(r["evidence"]))
    console.print(table)


@app.command()
def export(
    ctx: typer.Context,
    member_id: str,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the JSON to this "
                                       "file (default: standard output)."),
    json_out: bool = typer.Option(False, "--json", help="Errors as JSON too (the export "
                                  "is JSON anyway)."),
) -> None:
    """Everything held about a member, as JSON (a GDPR access request)."""
    data = export_member(engine_for(ctx), member_id, now())
    if output is None:
        emit_json(data)
        return
    text = json.dumps(data, default=json_default, indent=2, ensure_ascii=False) + "\n"
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    rows = sum(len(v) for v in data["tables"].values())
    if json_out:
        emit_json({"member_id": member_id, "output": str(output), "rows": rows})
        return
    console.print(f"wrote {rows} row(s) about {member_id} from {len(data['tables'])} tables "
                  f"to {output}", markup=False)


@app.command()
def erase(
    ctx: typer.Context,
    member_id: str,
    reason: str = typer.Option("erasure requested by the member", "--reason",
                               help="Why (kept in the audit trail)."),
    by: str | None = typer.Option(None, "--by", help="Who erases (default: the OS user)."),
    yes: bool = YES,
    json_out: bool = JSON,
) -> None:
    """Erase a member's personal data (GDPR); their points and purchases stay."""
    confirm(f"This erases the attributes, consents and verification evidence of {member_id} "
            "for good (the points and purchases stay, under the id) and cannot be undone.",
            yes)
    data = erase_member(engine_for(ctx), member_id, operator_name(by), reason, now())
    if json_out:
        emit_json(data)
        return
    if data["already_erased"]:
        console.print(f"{member_id} was already erased on {when(data['erased_at'])}; nothing "
                      "changed", markup=False)
        return
    removed = data["removed"]
    console.print(f"erased {member_id}: {len(removed['attributes'])} attribute(s), "
                  f"{removed['consents']} consent(s), {removed['verification_evidence']} "
                  "verification evidence; the ledger and purchases are kept", markup=False)


@app.command("survey-import")
def survey_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A CSV file: member_id,kind,score,answered_at "
                                "(kind nps 0-10 or commitment 1-7; answered_at with an "
                                "offset)."),
    json_out: bool = JSON,
) -> None:
    """Import members' NPS and commitment answers, all or nothing."""
    report = import_surveys(engine_for(ctx), file, now())
    if json_out:
        emit_json(report.as_json())
        if not report.committed:
            raise SystemExit(1)
        return
    if not report.committed:
        print_line_errors(file, report.errors, "answer")
        raise SystemExit(1)
    console.print(f"{report.read} answer(s) read: {report.recorded} recorded, "
                  f"{report.already} already recorded", markup=False)
