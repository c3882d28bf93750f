"""How `loyalty rules simulate` (and `rules apply --dry-run`) show a backtest: lines for
people, and a self-contained HTML report (inline styles, nothing loaded from anywhere)."""

from __future__ import annotations

from datetime import tzinfo
from html import escape
from pathlib import Path

from loyalty_engine.cli.charts import page
from loyalty_engine.cli.output import console, money, when
from loyalty_engine.services.simulation import MemberDelta, SideTotals, Simulation


def _signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


def _signed_money(minor: int, currency: str) -> str:
    return ("+" if minor > 0 else "") + money(minor, currency)


def _vouchers(side: SideTotals, currency: str) -> str:
    if not side.vouchers:
        return "none"
    return ", ".join(f"{source} {count} ({money(amount, currency)})"
                     for source, (count, amount) in sorted(side.vouchers.items()))


def _tiers(side: SideTotals) -> str:
    return ", ".join(f"{tier} {count}" for tier, count in sorted(side.tier_mix.items())) or "none"


def _rows(result: Simulation) -> list[tuple[str, str, str, str]]:
    live, cand, cur = result.live, result.candidate, result.currency
    rows = [(label, f"{a:,}", f"{b:,}", _signed(b - a)) for label, a, b in (
        ("points issued", live.issued, cand.issued),
        ("points refunded", live.refunded, cand.refunded),
        ("points redeemed", live.redeemed, cand.redeemed),
        ("points expired", live.expired, cand.expired),
        ("net points", live.net, cand.net))]
    rows.append(("cost at the point value", money(live.cost_minor, cur),
                 money(cand.cost_minor, cur),
                 _signed_money(cand.cost_minor - live.cost_minor, cur)))
    rows.append(("fee revenue", money(live.fee_revenue_minor, cur),
                 money(cand.fee_revenue_minor, cur),
                 _signed_money(cand.fee_revenue_minor - live.fee_revenue_minor, cur)))
    rows.append(("vouchers and rebates", _vouchers(live, cur), _vouchers(cand, cur), ""))
    rows.append(("tier mix at the end", _tiers(live), _tiers(cand), ""))
    return rows


def _member(m: MemberDelta) -> str:
    tiers = (f", tier {m.live_tier or '-'} -> {m.candidate_tier or '-'}"
             if (m.live_tier or "") != (m.candidate_tier or "") else "")
    return f"{m.member_id}: {m.live:,} -> {m.candidate:,} ({_signed(m.delta)}){tiers}"


def summary_lines(result: Simulation, zone: tzinfo | None) -> list[str]:
    """The backtest for people, one fact a line."""
    who = f", members {', '.join(result.members_filter)}" if result.members_filter else ""
    lines = [f"{result.program_id}: {'as a new program, ' if result.as_new else ''}replayed "
             f"{result.purchases:,} purchases, {result.refunds:,} refunds and "
             f"{result.redemptions:,} redemptions from {when(result.start, zone)} to "
             f"{when(result.end, zone)}{who} (stored versions vs candidate)"]
    width = max(len(r[0]) for r in _rows(result))
    for label, a, b, delta in _rows(result):
        lines.append(f"  {label.ljust(width)}  {a}  ->  {b}" + (f"  ({delta})" if delta else ""))
    deltas = {r: d for r, d in result.rule_deltas.items()}
    if deltas:
        lines.append("  points by rule (earned net of refunds): " + ", ".join(
            f"{rule} {result.live.by_rule.get(rule, 0):,} -> "
            f"{result.candidate.by_rule.get(rule, 0):,} ({_signed(d)})"
            for rule, d in deltas.items()))
    lines.append(f"  members whose points change: {result.members_changed:,}")
    if result.gains:
        lines.append("  largest gains: " + "; ".join(_member(m) for m in result.gains))
    if result.losses:
        lines.append("  largest losses: " + "; ".join(_member(m) for m in result.losses))
    if result.tier_changes:
        lines.append(f"  tier at the end would change for {len(result.tier_changes):,}: "
                     + "; ".join(_member(m) for m in result.tier_changes[:10]))
    for side, totals in (("stored versions", result.live), ("candidate", result.candidate)):
        if totals.rejected:
            lines.append(f"  refused in the replay under the {side}: " + ", ".join(
                f"{n:,} {kind}" for kind, n in sorted(totals.rejected.items())))
        if totals.job_failures:
            lines.append(f"  scheduler job runs that failed under the {side}: "
                         f"{totals.job_failures:,}")
    if result.out_of_order:
        lines.append(f"  {result.out_of_order:,} purchases were recorded after a later "
                     "purchase of the same member; the replay counts them in time order (a "
                     "reason the self-check can differ)")
    if result.not_replayed:
        lines.append("  not replayed (docs/simulate.md): " + ", ".join(
            f"{n:,} {what.replace('_', ' ')}" for what, n in sorted(result.not_replayed.items())))
    return lines


def verify_lines(result: Simulation) -> list[str]:
    """The self-check's answer: the stored versions replayed against the live ledger."""
    found = result.verified or []
    if not found:
        return [f"self-check passed: the replay under the stored versions reproduces the live "
                f"ledger of {result.program_id} exactly (per member, rule and kind)"]
    lines = [f"self-check FAILED: {len(found):,} (member, rule, kind) differ between the live "
             "ledger and the replay under the stored versions:"]
    if result.out_of_order:
        lines.append(f"  ({result.out_of_order:,} purchases were recorded out of time order: "
                     "the live system counted them as they came, a replay in time order)")
    lines += [f"  {m.member_id} {m.rule_id or '-'} {m.kind}: live {m.live:,}, replayed "
              f"{m.replayed:,}" for m in found[:50]]
    if any(m.kind == "expire" for m in found):
        lines.append("  (expiry is the scheduler's: a live scheduler that has not run up to "
                     "--to has not recorded it yet)")
    if len(found) > 50:
        lines.append(f"  and {len(found) - 50:,} more (--json lists them all)")
    return lines


def print_summary(result: Simulation, zone: tzinfo | None) -> None:
    """The summary on standard output."""
    for line in summary_lines(result, zone):
        console.print(line, markup=False)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:60em;color:#222;padding:0 1em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#b42318}.note{color:#666;font-size:.9em}
.bar{display:inline-block;height:.8em;background:#4c78a8}
.bar.c{background:#f58518}
"""


def _cls(value: int) -> str:
    return "up" if value > 0 else "down" if value < 0 else ""


def report_html(result: Simulation, zone: tzinfo | None) -> str:
    """The backtest as one self-contained HTML page."""
    e = escape
    parts = [
        f"<h1>Simulation of {e(result.program_id)}</h1>",
        f"<p>{e(summary_lines(result, zone)[0])}.</p>",
        "<h2>Totals</h2><table><tr><th></th><th>stored versions</th><th>candidate</th>"
        "<th>difference</th></tr>",
    ]
    for label, a, b, delta in _rows(result):
        parts.append(f"<tr><th>{e(label)}</th><td class=n>{e(a)}</td><td class=n>{e(b)}</td>"
                     f"<td class=n>{e(delta)}</td></tr>")
    parts.append("</table><h2>Points by rule</h2><p class=note>Earned net of refunds; "
                 "blue: stored versions, orange: candidate.</p><table>"
                 "<tr><th>rule</th><th>stored</th><th>candidate</th><th>difference</th>"
                 "<th></th></tr>")
    rules = result.rule_deltas
    top = max([1, *(abs(v) for v in result.live.by_rule.values()),
               *(abs(v) for v in result.candidate.by_rule.values())])
    for rule, change in rules.items():
        old, new = result.live.by_rule.get(rule, 0), result.candidate.by_rule.get(rule, 0)
        bars = (f"<span class=bar style=\"width:{abs(old) * 12 / top:.2f}em\"></span><br>"
                f"<span class=\"bar c\" style=\"width:{abs(new) * 12 / top:.2f}em\"></span>")
        parts.append(f"<tr><td>{e(rule)}</td><td class=n>{old:,}</td><td class=n>{new:,}</td>"
                     f"<td class=\"n {_cls(change)}\">{_signed(change)}</td><td>{bars}</td></tr>")
    parts.append("</table>")
    for title, members in (("Largest gains", result.gains), ("Largest losses", result.losses),
                           ("Tier at the end would change", result.tier_changes)):
        parts.append(f"<h2>{title}</h2>")
        if not members:
            parts.append("<p class=note>none</p>")
            continue
        parts.append("<table><tr><th>member</th><th>stored</th><th>candidate</th>"
                     "<th>difference</th><th>tier</th></tr>")
        for m in members:
            parts.append(f"<tr><td>{e(m.member_id)}</td><td class=n>{m.live:,}</td>"
                         f"<td class=n>{m.candidate:,}</td>"
                         f"<td class=\"n {_cls(m.delta)}\">{_signed(m.delta)}</td>"
                         f"<td>{e(m.live_tier or '-')} &rarr; {e(m.candidate_tier or '-')}"
                         "</td></tr>")
        parts.append("</table>")
    if result.verified is not None:
        parts.append("<h2>Self-check</h2>" + "".join(
            f"<p>{e(line)}</p>" for line in verify_lines(result)))
    extra = summary_lines(result, zone)
    notes = [line.strip() for line in extra if line.strip().startswith(
        ("refused in the replay", "scheduler job runs", "not replayed", "purchases were"))]
    if notes:
        parts.append("<h2>Notes</h2>" + "".join(f"<p class=note>{e(n)}</p>" for n in notes))
    parts.append("<p class=note>Replayed in throw-away databases; nothing live was written. "
                 "See docs/simulate.md for what a replay copies and its limits.</p>")
    return page(f"Simulation of {result.program_id}", "".join(parts), _STYLE)


def write_report(path: Path, result: Simulation, zone: tzinfo | None) -> None:
    """Write the HTML report (raises OSError)."""
    path.write_text(report_html(result, zone), encoding="utf-8")
