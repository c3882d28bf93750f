"""A ledger entry's reason as a sentence people read: what the rule counted, which boosts
and caps applied, which redemption or refund moved the points (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loyalty_engine.domain.money import currency_exponent, format_minor

_ROUNDING = {"floor": "rounded down", "ceiling": "rounded up", "half_up": "rounded half up",
             "half_even": "rounded half to even"}


def describe_reason(kind: str, reason: Mapping[str, Any], currency: str) -> str:
    """One sentence (or a few clauses) saying why an entry moved the points it did."""
    money = _Money(currency)
    if kind == "earn":
        return _earned(reason, money)
    if kind == "redeem":
        what = f"reward {reason['reward']}" if reason.get("reward") else "points"
        return (f"redemption {reason.get('redemption_id', '?')}: {what}, taken from "
                f"{_lots(reason.get('from_lots'))}")
    if kind == "unredeem":
        lapsed = int(reason.get("lapsed") or 0)
        return (f"redemption {reason.get('redemption_id', '?')} reversed: points back to "
                f"{_lots(reason.get('to_lots'))}"
                + (f"; {lapsed} had expired meanwhile and stay expired" if lapsed else ""))
    if kind == "expire":
        return f"what remained of lot {reason.get('lot', '?')} expired"
    if kind == "refund":
        parts = [f"refund {reason.get('refund_id', '?')} at {reason.get('store_id', '?')}"]
        if "refunded_minor" in reason and "total_minor" in reason:
            parts[0] += (f" ({money(reason['refunded_minor'])} of "
                         f"{money(reason['total_minor'])} returned)")
        parts.append(f"the returned share of entry {reason.get('earned_entry', '?')}, taken "
                     f"from {_lots(reason.get('from_lots'))}")
        if reason.get("shortfall"):
            parts.append(f"{reason['shortfall']} point(s) had already been spent and are owed")
        if reason.get("lapsed"):
            parts.append(f"{reason['lapsed']} point(s) had expired")
        return "; ".join(parts)
    if kind == "debt":
        return (f"repays debt {reason.get('debt_id', '?')} (points owed after a refund) "
                f"from entry {reason.get('repaid_from_entry', '?')}")
    if kind == "fee":
        return (f"fee charge {reason.get('charge_id', '?')} of club {reason.get('club', '?')} "
                f"(level {reason.get('level', '?')}) paid in points, taken from "
                f"{_lots(reason.get('from_lots'))}")
    if kind == "adjust":
        what = "goodwill credit" if reason.get("kind") == "goodwill" else "correction"
        text = (f"manual adjustment {reason.get('adjustment_id', '?')} ({what}) by "
                f"{reason.get('by', '?')}: {reason.get('reason', '')}")
        if reason.get("from_lots"):
            text += f"; taken from {_lots(reason['from_lots'])}"
        return text
    if kind == "fee_refund":
        return (f"fee charge {reason.get('charge_id', '?')} refunded: "
                f"{reason.get('restored', 0)} point(s) back to {_lots(reason.get('to_lots'))}")
    return _plain(reason, money)


def _earned(reason: Mapping[str, Any], money: _Money) -> str:
    parts: list[str] = []
    if "eligible_spend_minor" in reason:
        rate = reason.get("points_per_unit", "1")
        parts.append(f"{rate} point(s) per {money.currency} on "
                     f"{money(reason['eligible_spend_minor'])}")
        if reason.get("excluded_items"):
            parts.append(f"{reason['excluded_items']} excluded item(s) not counted")
        for category, m in (reason.get("multipliers") or {}).items():
            parts.append(f"x{m['multiplier']} on {category} ({money(m['spend_minor'])})")
        for name, factor in (reason.get("boosts") or {}).items():
            parts.append(f"x{factor} {name}")
        for name, factor in (reason.get("benefits") or {}).items():
            parts.append(f"x{factor} from {name.replace(':', ' ')}")
        for name, why in (reason.get("set_aside") or {}).items():
            parts.append(f"not {name} ({why})")
        if reason.get("rounding"):
            parts.append(_ROUNDING.get(reason["rounding"], f"rounded {reason['rounding']}"))
    elif "visit" in reason:
        parts.append(f"visit {reason['visit']} in {reason.get('period', '?')}")
    elif "period_spend_minor" in reason:
        parts.append(f"{money(reason['period_spend_minor'])} spent in "
                     f"{reason.get('period', '?')}, reaching "
                     f"{money(reason.get('threshold_minor', 0))}")
    elif reason.get("award") == "at_period_end":
        reached = (f"{reason['visits']} visits" if "visits" in reason else
                   f"{money(reason.get('spend_minor', 0))} spent")
        parts.append(f"{reached} in {reason.get('period', '?')}, awarded at the period's end")
    elif "category" in reason:
        parts.append(f"first purchase in {reason['category']}")
    if reason.get("because"):
        parts.append("because " + _because(reason["because"]))
    if reason.get("group"):
        parts.append(f"best of group {reason['group']}")
    if reason.get("capped"):
        cap = reason["capped"]
        parts.append(f"capped by the {cap.get('by', 'rule')}'s limit of {cap.get('limit')} "
                     f"per {cap.get('per')} (would have been {cap.get('before_cap')})")
    known = {"eligible_spend_minor", "points_per_unit", "excluded_items", "multipliers",
             "boosts", "benefits", "rounding", "visit", "visits", "period",
             "period_spend_minor", "threshold_minor", "spend_minor", "award", "kind",
             "category", "because", "group", "capped", "rule", "points", "set_aside"}
    rest = {k: v for k, v in reason.items() if k not in known}
    if rest:
        parts.append(_plain(rest, money))
    return "; ".join(parts) or "fixed bonus"


def _because(met: Mapping[str, Any]) -> str:
    """What of the member's standing met the condition: `tier gold`, `segment at_risk (RFM
    snapshot of 2026-03-02)`, or `no segment` for a member without a snapshot."""
    parts = []
    for key, value in met.items():
        if key == "segment_as_of":
            continue
        if key == "segment":
            text = f"segment {value}" if value else "no segment (no RFM snapshot yet)"
            if met.get("segment_as_of"):
                text += f" (RFM snapshot of {met['segment_as_of']})"
            parts.append(text)
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def describe_fields(data: Mapping[str, Any], currency: str | None) -> str:
    """Plain data (an event's, say) as `key value` pairs for people: amounts in major units
    of the currency (the data's own `currency` when it has one), never a repr."""
    chosen = data.get("currency") or currency
    if not isinstance(chosen, str):
        return _plain(data, lambda minor: f"{minor} (minor units)")
    rest = {k: v for k, v in data.items() if k != "currency"}
    return _plain(rest, _Money(chosen))


def _lots(lots: Any) -> str:
    if not lots:
        return "no lot"
    count = len(lots)
    if count <= 3:
        return ", ".join(f"lot {k} ({v})" for k, v in lots.items())
    return f"{count} lots, oldest first"


def _plain(reason: Mapping[str, Any], money: Callable[[Any], str]) -> str:
    """Anything else, as `key value` pairs (money fields in major units), never a repr."""
    parts = []
    for key, value in reason.items():
        label = key.replace("_", " ")
        if key.endswith("_minor") and isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{label.removesuffix(' minor')} {money(value)}")
        else:
            parts.append(f"{label} {_value(value)}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    """A value inside a reason, nested ones in brackets, never as a repr."""
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k} {_value(v)}" for k, v in value.items()) + ")"
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    return "-" if value is None else str(value)


class _Money:
    """Minor units of one currency for people."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        self.exponent = currency_exponent(currency)

    def __call__(self, minor: Any) -> str:
        return f"{format_minor(int(minor), self.exponent)} {self.currency}"
