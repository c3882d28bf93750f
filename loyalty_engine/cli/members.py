"""`loyalty members ...`: list members, show one, explain every point of their ledger."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from loyalty_engine.cli.clubs import print_clubs
from loyalty_engine.cli.context import engine_for, now, parse_instant
from loyalty_engine.cli.output import console, emit_json, when
from loyalty_engine.services.enrolment import enrol_member, set_consent
from loyalty_engine.services.groups import reverifications_due, verify_member
from loyalty_engine.services.members import explain_member, list_members, show_member

app = typer.Typer(help="Look at members, their balances and their ledger.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")
AT = typer.Option(None, "--at", help="When it happened (ISO 8601 with an offset); default now.")
AS_OF = typer.Option(None, "--as-of", help="Which stamps and vouchers are still valid at "
                     "this instant (ISO 8601 with an offset); default now. Balances and lots "
                     "are always as recorded.")


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: int = typer.Option(100, min=1, help="At most this many members."),
    offset: int = typer.Option(0, min=0, help="Skip this many members first."),
    json_out: bool = JSON,
) -> None:
    """Members by id with their points, purchase count and last purchase."""
    rows = list_members(engine_for(ctx), limit=limit, offset=offset)
    if json_out:
        emit_json([{"member_id": r.member_id, "created_at": r.created_at, "points": r.points,
                    "pending": r.pending, "purchases": r.purchases,
                    "last_purchase_at": r.last_purchase_at}
                   for r in rows])
        return
    table = Table("member", "points", "pending", "purchases", "last purchase")
    for r in rows:
        table.add_row(escape(r.member_id), str(r.points), str(r.pending), str(r.purchases),
                      when(r.last_purchase_at))
    console.print(table)


@app.command()
def show(ctx: typer.Context, member_id: str, as_of: str | None = AS_OF,
         json_out: bool = JSON) -> None:
    """A member's balances (spendable and pending), stamp cards, vouchers, point lots,
    progress counters and recent purchases."""
    data = show_member(engine_for(ctx), member_id, parse_instant(as_of, "--as-of") or now())
    if json_out:
        emit_json(data)
        return
    console.print(f"[bold]{escape(data['member_id'])}[/] "
                  f"(member since {when(data['created_at'])})")
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
                             when(v["valid_until"]), status)
        console.print(vouchers)
    for t in data["tiers"]:
        floor = f" (manual floor {t['manual_tier']})" if t["manual_tier"] else ""
        console.print(f"tier in {t['program_id']}: {t['tier'] or 'none'}{floor}; next review "
                      f"{t['next_review'] or '-'}", markup=False)
    if data["clubs"]["clubs"] or data["clubs"]["charges"] or data["clubs"]["verifications"]:
        print_clubs(data["clubs"])
    for d in data["debts"]:
        if d["outstanding"]:
            console.print(f"owes {d['outstanding']} points in {d['program_id']} "
                          f"(from a refund of points already spent)")
    enrolments = Table("program", "enrolled", "how", title="enrolments")
    for e in data["enrolments"]:
        enrolments.add_row(e["program_id"], when(e["enrolled_at"]), e["source"])
    console.print(enrolments)
    lots = Table("lot", "program", "earned", "points", "remaining", "expires", "pending until",
                 title="point lots (spent first-in-first-out)")
    for lot in data["lots"]:
        pending = (when(lot["pending_until"]) if lot["pending_until"] and
                   not lot["activated_at"] else "-")
        lots.add_row(str(lot["entry_id"]), lot["program_id"], when(lot["earned_at"]),
                     str(lot["points"]), str(lot["remaining"]),
                     when(lot["expires_at"]) if lot["expires_at"] else "never", pending)
    console.print(lots)
    purchases = Table("when", "store", "transaction", "total", title="recent purchases")
    for p in data["recent_purchases"]:
        purchases.add_row(when(p["occurred_at"]), escape(p["store_id"]),
                          escape(p["transaction_id"]),
                          _money(p["total_minor"], p["currency"]))
    console.print(purchases)


@app.command()
def explain(ctx: typer.Context, member_id: str, json_out: bool = JSON) -> None:
    """Every ledger entry with the program version, rule and purchase behind it."""
    entries = explain_member(engine_for(ctx), member_id)
    if json_out:
        emit_json(entries)
        return
    total = 0
    for e in entries:
        total += e["points"]
        source = (f"purchase {e['transaction_id']} at {e['store_id']} "
                  f"({_money(e['total_minor'], e['currency'])})" if e["transaction_id"] else "-")
        console.print(
            f"{when(e['occurred_at'])}  {e['kind']:<8} {e['points']:+d} points  {e['program_id']} "
            f"v{e['version']} ({e['content_hash'][:12]}) rule {e['rule_id'] or '-'}: {source}; "
            f"{_why(e['reason'])}  -> balance {total}",
            markup=False, soft_wrap=True,
        )
    console.print(f"{len(entries)} ledger entries, {total} points", markup=False)


def _money(minor: int, currency: str) -> str:
    from loyalty_engine.domain.money import currency_exponent, format_minor

    return f"{format_minor(minor, currency_exponent(currency))} {currency}"


def _why(reason: dict[str, object]) -> str:
    parts = [f"{k}={v}" for k, v in reason.items() if k != "multipliers"]
    multipliers = reason.get("multipliers")
    if isinstance(multipliers, dict):
        parts.extend(f"x{m['multiplier']} on {cat}" for cat, m in multipliers.items())
    return ", ".join(parts)


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
                        parse_instant(at, "--at") or now(), now(), program)
    _show_member_data(data, json_out)


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
                       parse_instant(at, "--at") or now())
    _show_member_data(data, json_out)


def _show_member_data(data: dict[str, object], json_out: bool) -> None:
    if json_out:
        emit_json(data)
        return
    console.print(f"{data['member_id']}: attributes {data['attributes']}", markup=False)
    for c in data["consents"]:  # type: ignore[attr-defined]
        state = (f"given {when(c['given_at'])}" if c["given"]
                 else f"withdrawn {when(c['withdrawn_at'])}")
        console.print(f"  consent {c['flag']}: {state}", markup=False)


@app.command()
def verify(
    ctx: typer.Context,
    member_id: str,
    group_id: str,
    until: str = typer.Option(..., "--until", help="When the verification expires (ISO 8601; "
                              "a date means its midnight UTC)."),
    evidence: str = typer.Option(..., "--evidence", help="What was seen: a document "
                                 "reference."),
    program: str | None = typer.Option(None, "--program", help="The program, when several "
                                       "define the group."),
    at: str | None = AT,
    json_out: bool = JSON,
) -> None:
    """Record that the member belongs to an affinity group, until a date."""
    ends = parse_instant(until, "--until")
    assert ends is not None
    data = verify_member(engine_for(ctx), member_id, group_id, ends, evidence,
                         parse_instant(at, "--at") or now(), now(), program)
    if json_out:
        emit_json(data)
        return
    console.print(f"{member_id} verified for {group_id} ({data['program_id']}) until "
                  f"{when(data['verified_until'])}; re-verification due from "
                  f"{when(data['reverify_from'])}", markup=False)


@app.command("reverify-due")
def reverify_due(
    ctx: typer.Context,
    as_of: str | None = AS_OF,
    json_out: bool = JSON,
) -> None:
    """Group verifications whose re-verification has fallen due and that have not lapsed."""
    rows = reverifications_due(engine_for(ctx), parse_instant(as_of, "--as-of") or now())
    if json_out:
        emit_json(rows)
        return
    if not rows:
        console.print("no re-verification is due")
        return
    table = Table("member", "program", "group", "valid until", "due since", "evidence")
    for r in rows:
        table.add_row(escape(r["member_id"]), r["program_id"], r["group_id"],
                      when(r["verified_until"]), when(r["reverify_from"]),
                      escape(r["evidence"]))
    console.print(table)
