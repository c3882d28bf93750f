"""CEL expressions in rule conditions: the declared context, compiled and type-checked once.

The context is a fixed set of typed variables (below); an expression that names anything
else, or is not a bool, fails when the program is validated. CEL has no I/O and no access to
Python, so a rule file cannot run code. Failures that only evaluation can find (a division
by zero, a missing attribute) fail that one purchase with an error naming the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]  # ships .pyi without py.typed

from loyalty_engine.domain.events import MAX_ITEMS
from loyalty_engine.rules.expression_cost import (
    ITERATION_BUDGET,
    constant_patterns,
    iterations,
    parse_checked,
)

_T = cel.Type
_ITEM = _T.Map(_T.STRING, _T.DYN)

# name -> (CEL type, what it holds); README and docs list these for rule authors.
CONTEXT: dict[str, tuple[Any, str]] = {
    "purchase.total": (_T.INT, "the purchase total in minor units (cents)"),
    "purchase.eligible_spend": (_T.INT, "spend on items that are not excluded, minor units"),
    "purchase.currency": (_T.STRING, "ISO 4217 code"),
    "purchase.store": (_T.STRING, "the store id"),
    "purchase.tender": (_T.STRING, "card, app, cash, gift_card or points; '' when not sent"),
    "purchase.channel": (_T.STRING, "store, web or app; '' when not sent"),
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


# Set while programs already stored are compiled again: they were accepted by the rules of
# their day, and refusing one now would stop every purchase; the runtime's own limits still
# fail that rule's purchases one by one (a rule failure naming it).
_STORED: ContextVar[bool] = ContextVar("stored_programs", default=False)


@contextmanager
def stored_programs() -> Iterator[None]:
    """Compile stored programs inside: the checks of new programs' costs are skipped."""
    token = _STORED.set(True)
    try:
        yield
    finally:
        _STORED.reset(token)


def compile_expression(source: str) -> Any:
    """The compiled, type-checked expression; ValueError says what is wrong and where."""
    return _compile(source, check_costs=not _STORED.get())


@lru_cache(maxsize=4096)
def _compile(source: str, check_costs: bool) -> Any:
    try:
        compiled = _environment().compile(source)
    except RuntimeError as exc:
        raise ValueError(_cel_message(str(exc))) from None
    if compiled.return_type() != _T.BOOL:
        kind = compiled.return_type().name().lower()
        raise ValueError(f"the expression must be true or false, but it gives a value of "
                         f"type {kind}")
    if not check_costs:
        return compiled
    root, positions = parse_checked(compiled.serialize())
    for pattern, offset in constant_patterns(root, positions):
        problem = _regex_problem(pattern)
        if problem is not None:
            raise ValueError(f"CEL: at {_place(source, offset)}: {problem}")
    turns = iterations(root)
    if turns >= ITERATION_BUDGET:
        raise ValueError(
            f"CEL: its comprehensions (all, exists, map, filter ...) can take {turns:,} steps "
            f"on a purchase of {MAX_ITEMS:,} lines, more than the {ITERATION_BUDGET - 1:,} "
            "an evaluation may take; avoid nesting comprehensions over purchase lists")
    return compiled


@lru_cache(maxsize=1)
def _regex_checker() -> Any:
    env = cel.NewEnv(variables={"pattern": _T.STRING})
    return env.compile("''.matches(pattern)")


def _regex_problem(pattern: str) -> str | None:
    """Why the runtime's RE2 refuses the pattern (None if it compiles)."""
    try:
        value = _regex_checker().eval(data={"pattern": pattern})
    except RuntimeError as exc:
        return _cel_message(str(exc)).removeprefix("CEL: ")
    if value.type() == _T.ERROR:
        return _cel_message(str(value.value())).removeprefix("CEL: ")
    return None


def _place(source: str, offset: int) -> str:
    """1-based line:column of a character offset, as CEL's own messages give them."""
    before = source[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return f"{line}:{column}"


def evaluate(compiled: Any, data: dict[str, Any]) -> bool:
    """Evaluate a compiled expression; raises ExpressionError when evaluation fails."""
    try:
        value = compiled.eval(data=data)
    except RuntimeError as exc:  # the runtime's iteration budget ("INTERNAL: ...")
        raise ExpressionError(_cel_message(str(exc))) from None
    if value.type() == _T.ERROR:
        raise ExpressionError(_cel_message(str(value.value())))
    return bool(value.value())


def _cel_message(text: str) -> str:
    # "INVALID_ARGUMENT: ERROR: <input>:1:9: undeclared reference to 'x' ... | source"
    for prefix in ("INVALID_ARGUMENT: ", "NOT_FOUND: ", "UNKNOWN: ", "INTERNAL: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    lines = [line for line in text.splitlines() if not line.startswith(" |")]
    message = " ".join(line.strip() for line in lines).replace("ERROR: <input>:", "at ")
    message = message.replace(" (in container '')", "").replace(" [INVALID_ARGUMENT]", "")
    message = message.replace(" [INTERNAL]", "")
    if message == "Iteration budget exceeded":
        message = (f"the expression took more than the {ITERATION_BUDGET - 1:,} comprehension "
                   "steps an evaluation may take")
    # ANTLR's list of every token it would have accepted helps nobody writing a rule.
    message = re.sub(r" expecting \{[^}]*\}", "", message)
    message = message.replace("mismatched input '<EOF>'", "the expression ends too early")
    if message.startswith("Key not found in map"):
        message += " (guard an optional key with has(), e.g. has(member.attributes.city))"
    return f"CEL: {message}"
