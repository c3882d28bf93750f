"""CEL expressions in rule conditions: the declared context, compiled and type-checked once.

The context is a fixed set of typed variables (below); an expression that names anything
else, or is not a bool, fails when the program is validated. CEL has no I/O and no access to
Python, so a rule file cannot run code. Failures that only evaluation can find (a division
by zero, a missing attribute) fail that one purchase with an error naming the rule.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]  # ships .pyi without py.typed

_T = cel.Type
_ITEM = _T.Map(_T.STRING, _T.DYN)

# name -> (CEL type, what it holds); README and docs list these for rule authors.
CONTEXT: dict[str, tuple[Any, str]] = {
    "purchase.total": (_T.INT, "the purchase total in minor units (cents)"),
    "purchase.eligible_spend": (_T.INT, "spend on items that are not excluded, minor units"),
    "purchase.currency": (_T.STRING, "ISO 4217 code"),
    "purchase.store": (_T.STRING, "the store id"),
    "purchase.item_count": (_T.INT, "number of lines"),
    "purchase.categories": (_T.List(_T.STRING), "the categories of its lines"),
    "purchase.skus": (_T.List(_T.STRING), "the SKUs of its lines"),
    "purchase.items": (_T.List(_ITEM), "lines: sku, category, quantity_milli, amount (minor)"),
    "member.id": (_T.STRING, "the member id"),
    "member.attributes": (_T.Map(_T.STRING, _T.DYN), "the member's attributes"),
    "member.tier": (_T.STRING, "current tier id (a manual floor included), '' without one"),
    "member.clubs": (_T.List(_T.STRING), "clubs the member is an active member of"),
    "member.perks": (_T.List(_T.STRING), "perks the member holds (tier and clubs)"),
    "member.groups": (_T.List(_T.STRING), "affinity groups the member belongs to"),
    "member.consents": (_T.List(_T.STRING), "consents given and not withdrawn"),
    "member.segment": (_T.STRING, "the 'segment' attribute, '' if absent"),
    "store.id": (_T.STRING, "the store id"),
    "local.date": (_T.STRING, "the purchase's date in program time, YYYY-MM-DD"),
    "local.weekday": (_T.STRING, "monday ... sunday, program time"),
    "local.hour": (_T.INT, "0-23, program time"),
    "local.day": (_T.INT, "day of the month"),
    "local.month": (_T.INT, "1-12"),
    "local.year": (_T.INT, "the year"),
}


@lru_cache(maxsize=1)
def _environment() -> Any:
    return cel.NewEnv(variables={name: kind for name, (kind, _) in CONTEXT.items()})


class ExpressionError(ValueError):
    """An expression failed while a purchase was being evaluated."""


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Any:
    """The compiled, type-checked expression; ValueError says what is wrong and where."""
    try:
        compiled = _environment().compile(source)
    except RuntimeError as exc:
        raise ValueError(_cel_message(str(exc))) from None
    if compiled.return_type() != _T.BOOL:
        kind = compiled.return_type().name().lower()
        raise ValueError(f"the expression must be true or false, but it gives a value of "
                         f"type {kind}")
    return compiled


def evaluate(compiled: Any, data: dict[str, Any]) -> bool:
    """Evaluate a compiled expression; raises ExpressionError when evaluation fails."""
    value = compiled.eval(data=data)
    if value.type() == _T.ERROR:
        raise ExpressionError(_cel_message(str(value.value())))
    return bool(value.value())


def _cel_message(text: str) -> str:
    # "INVALID_ARGUMENT: ERROR: <input>:1:9: undeclared reference to 'x' ... | source"
    for prefix in ("INVALID_ARGUMENT: ", "NOT_FOUND: ", "UNKNOWN: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    lines = [line for line in text.splitlines() if not line.startswith(" |")]
    message = " ".join(line.strip() for line in lines).replace("ERROR: <input>:", "at ")
    message = message.replace(" (in container '')", "").replace(" [INVALID_ARGUMENT]", "")
    # ANTLR's list of every token it would have accepted helps nobody writing a rule.
    message = re.sub(r" expecting \{[^}]*\}", "", message)
    message = message.replace("mismatched input '<EOF>'", "the expression ends too early")
    if message.startswith("Key not found in map"):
        message += " (guard an optional key with has(), e.g. has(member.attributes.city))"
    return f"CEL: {message}"
