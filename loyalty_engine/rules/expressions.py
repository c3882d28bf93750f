"""CEL expressions in rule conditions: the declared context, compiled and type-checked once.

The context is a fixed set of typed variables (below); an expression that names anything
else, or is not a bool, fails when the program is validated. CEL has no I/O and no access to
Python, so a rule file cannot run code. A member attribute read without a has() guard is
refused (it would fail every purchase of a member without it). Failures that only
evaluation can find (a division by zero, an index past the last line) fail that one
purchase with an error naming the rule. What amounts without a unit in their name mean
depends on the file's language level (AMOUNTS).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]  # ships .pyi without py.typed

from loyalty_engine.domain.events import MAX_ITEMS
from loyalty_engine.rules.expression_cost import (
    ITERATION_BUDGET,
    Node,
    checked_types,
    constant_patterns,
    iterations,
    parse_checked,
)
from loyalty_engine.rules.values import STORED

_T = cel.Type
_ITEM = _T.Map(_T.STRING, _T.DYN)

# name -> (CEL type, what it holds); README and docs list these for rule authors. The
# amounts whose name says no unit (purchase.total, purchase.eligible_spend, an item's amount)
# depend on the file's language level: see AMOUNTS below.
CONTEXT: dict[str, tuple[Any, str]] = {
    "purchase.total_minor": (_T.INT, "the purchase total in minor units (cents)"),
    "purchase.eligible_spend_minor": (_T.INT, "spend on items that are not excluded, minor "
                                              "units"),
    "purchase.currency": (_T.STRING, "ISO 4217 code"),
    "purchase.store": (_T.STRING, "the store id"),
    "purchase.tender": (_T.STRING, "card, app, cash, gift_card or points; '' when not sent"),
    "purchase.channel": (_T.STRING, "store, web or app; '' when not sent"),
    "purchase.item_count": (_T.INT, "number of lines"),
    "purchase.categories": (_T.List(_T.STRING), "the categories of its lines"),
    "purchase.skus": (_T.List(_T.STRING), "the SKUs of its lines"),
    "purchase.items": (_T.List(_ITEM), "lines: sku, category, quantity_milli, amount_minor, "
                                       "amount"),
    "member.id": (_T.STRING, "the member id"),
    "member.attributes": (_T.Map(_T.STRING, _T.DYN), "the member's attributes"),
    "member.tier": (_T.STRING, "current tier id (a manual floor included), '' without one"),
    "member.clubs": (_T.List(_T.STRING), "clubs the member is an active member of"),
    "member.perks": (_T.List(_T.STRING), "perks the member holds (tier and clubs)"),
    "member.groups": (_T.List(_T.STRING), "affinity groups the member belongs to"),
    "member.consents": (_T.List(_T.STRING), "consents given and not withdrawn"),
    "member.segment": (_T.STRING, "the RFM segment of the member's snapshot in force at the "
                                  "purchase (the latest taken at or before it); '' without "
                                  "one. The `segment` attribute is member.attributes.segment"),
    "member.rfm": (_T.Map(_T.STRING, _T.INT), "that snapshot's scores {r, f, m}, 1-5 each; 0 "
                                              "without a snapshot"),
    "member.clv_minor": (_T.INT, "that snapshot's lifetime value in minor units; 0 without "
                                 "a figure"),
    "member.p_alive": (_T.DOUBLE, "that snapshot's P(alive), 0.0-1.0; -1.0 without a figure"),
    "member.tenure_days": (_T.INT, "days from the member's enrolment in the program (local "
                                   "date) to the purchase's local date; 0 when unknown"),
    "member.birthday_month": (_T.INT, "1-12 from the date_of_birth attribute (YYYY-MM-DD); 0 "
                                      "when absent or malformed"),
    "member.birthday": (_T.STRING, "MM-DD from the date_of_birth attribute; '' when absent or "
                                   "malformed"),
    "store.id": (_T.STRING, "the store id"),
    "local.date": (_T.STRING, "the purchase's date in program time, YYYY-MM-DD"),
    "local.weekday": (_T.STRING, "monday ... sunday, program time"),
    "local.weekday_number": (_T.INT, "1 (monday) ... 7 (sunday), program time"),
    "local.hour": (_T.INT, "0-23, program time"),
    "local.day": (_T.INT, "day of the month"),
    "local.month": (_T.INT, "1-12"),
    "local.year": (_T.INT, "the year"),
}

# Language levels: what the unit-less amount names mean. 1: minor units (every program
# stored before levels existed was written so, and keeps meaning it); 2: major units, a
# number in the currency (purchase.total >= 50 is 50 euros). A new file that uses them must
# say which (language: 1 or 2); stored versions without the key are level 1.
LEVELS = (1, 2)
AMOUNTS: dict[str, dict[int, tuple[Any, str]]] = {
    "purchase.total": {1: (_T.INT, "the purchase total in minor units (cents)"),
                       2: (_T.DYN, "the purchase total in the currency (euros, a decimal)")},
    "purchase.eligible_spend": {
        1: (_T.INT, "eligible spend in minor units (cents)"),
        2: (_T.DYN, "eligible spend in the currency (euros, a decimal)")},
    "member.clv": {
        1: (_T.INT, "the snapshot's lifetime value in minor units (cents); 0 without one"),
        2: (_T.DYN, "the snapshot's lifetime value in the currency (euros, a decimal); 0 "
                    "without one")},
}
# What a member's RFM snapshot answers (loaded with a batch only for programs that read it).
SNAPSHOT_NAMES = frozenset({"member.segment", "member.rfm", "member.clv", "member.clv_minor",
                            "member.p_alive"})
TENURE = "member.tenure_days"
ITEM_AMOUNT = "amount"  # an item's amount: minor at level 1, major at level 2


def _dates(text: str) -> date:
    return date.fromisoformat(text)


def _days_between(first: str, second: str) -> int:
    return (_dates(second) - _dates(first)).days


def _month_of(text: str) -> int:
    return _dates(text).month


def _weekday_of(text: str) -> int:
    return _dates(text).isoweekday()


# Functions over YYYY-MM-DD strings (local.date, a date attribute, a constant); a string
# that is not such a date fails that evaluation, as a missing key does.
FUNCTIONS: dict[str, tuple[Any, tuple[Any, ...], Any, str]] = {
    "days_between": (_T.INT, (_T.STRING, _T.STRING), _days_between,
                     "days_between(a, b): days from date a to date b (negative if b is "
                     "earlier)"),
    "month_of": (_T.INT, (_T.STRING,), _month_of, "month_of(d): 1-12"),
    "weekday_of": (_T.INT, (_T.STRING,), _weekday_of, "weekday_of(d): 1 (monday) ... 7"),
}


@lru_cache(maxsize=3)
def _environment(level: int = 1) -> Any:
    variables = {name: kind for name, (kind, _) in CONTEXT.items()}
    variables.update({name: meanings[level][0] for name, meanings in AMOUNTS.items()})
    functions = [
        cel.FunctionDecl(name, [cel.Overload(f"{name}_" + "_".join(
            "string" for _ in params), result, list(params), impl=impl)])
        for name, (result, params, impl, _) in FUNCTIONS.items()]
    return cel.NewEnv(variables=variables, functions=functions)


def birthday(attributes: dict[str, Any]) -> tuple[int, str]:
    """(month, "MM-DD") of the member's date_of_birth attribute; (0, '') when unknown."""
    value = attributes.get("date_of_birth")
    if not isinstance(value, str):
        return 0, ""
    try:
        born = date.fromisoformat(value)
    except ValueError:
        return 0, ""
    return born.month, f"{born.month:02d}-{born.day:02d}"


def major(minor: int, exponent: int) -> float:
    """Minor units as a number in the currency. Division is correctly rounded, so an amount
    in the currency's precision is the same double as its decimal literal (1010 -> 10.1)."""
    return minor / int(10**exponent)


class ExpressionError(ValueError):
    """An expression failed while a purchase was being evaluated."""


# Set while programs already stored are compiled again: they were accepted by the rules of
# their day, and refusing one now would stop every purchase; the runtime's own limits still
# fail that rule's purchases one by one (a rule failure naming it).
_STORED = STORED  # (rules.values: the slips validation refuses skip stored versions too)


@contextmanager
def stored_programs() -> Iterator[None]:
    """Compile stored programs inside: the checks of new programs' costs are skipped."""
    token = _STORED.set(True)
    try:
        yield
    finally:
        _STORED.reset(token)


# The language level of the file being read (its `language:` key), None when it says none.
_LEVEL: ContextVar[int | None] = ContextVar("language_level", default=None)


@contextmanager
def language_level(level: int | None) -> Iterator[None]:
    """Compile the expressions of a file of this language level inside."""
    token = _LEVEL.set(level)
    try:
        yield
    finally:
        _LEVEL.reset(token)


def compile_expression(source: str) -> Any:
    """The compiled, type-checked expression; ValueError says what is wrong and where."""
    stored = _STORED.get()
    return _compile(source, not stored, _LEVEL.get() or (1 if stored else None))


@lru_cache(maxsize=4096)
def _compile(source: str, check_costs: bool, level: int | None) -> Any:
    try:
        compiled = _environment(level or 1).compile(source)
    except RuntimeError as exc:
        raise ValueError(_cel_message(str(exc))) from None
    if compiled.return_type() != _T.BOOL:
        kind = compiled.return_type().name().lower()
        raise ValueError(f"the expression must be true or false, but it gives a value of "
                         f"type {kind}")
    if not check_costs:
        return compiled
    root, positions = parse_checked(compiled.serialize())
    problem_at = _amount_problem(root, positions, checked_types(compiled.serialize()), level)
    if problem_at is None:
        problem_at = _unguarded_attribute(root, positions)
    if problem_at is not None:
        raise ValueError(f"CEL: at {_place(source, problem_at[1])}: {problem_at[0]}")
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


_ATTRIBUTES = "member.attributes"
_ARITHMETIC = {"_+_", "_-_", "_*_", "_/_", "_%_"}
_COMPARISONS = {"_<_", "_<=_", "_>_", "_>=_", "_==_", "_!=_"}
_NUMBERS = {"int", "uint", "double", "dyn"}


def _children(node: Node) -> list[Node]:
    return [*node.children, *node.parts.values()]


def _amount_problem(root: Node, positions: dict[int, int], types: dict[int, str],
                    level: int | None) -> tuple[str, int] | None:
    """A unit-less amount in a file that does not say its level; or, at level 2, a major
    amount mixed with what does not compare to it (CEL does no int-double arithmetic)."""
    if level == 2:
        return _mixed_major(root, positions, types)
    stack = [root]
    while stack and level is None:
        node = stack.pop()
        stack.extend(_children(node))
        amount = _amount_name(node)
        if amount is None:
            continue
        fix = ("purchase.items.exists(i, i.amount_minor >= 500)" if amount == ITEM_AMOUNT
               else f"{amount}_minor >= 5000")
        example = ("purchase.total >= 50 is 50" if amount != ITEM_AMOUNT
                   else "i.amount >= 5 is 5")
        return (f"{amount if amount != ITEM_AMOUNT else 'an item amount'} says no unit: "
                f"add `language: 2` at the top of the file to write it in the currency "
                f"({example} euros), or name the minor units ({fix} is in cents); a file written "
                f"before levels existed means cents: `language: 1` keeps that",
                positions.get(node.id, 0))
    return None


def _amount_name(node: Node) -> str | None:
    if node.kind == "ident" and node.name in AMOUNTS:
        return node.name
    if node.kind == "select" and node.name == ITEM_AMOUNT and not node.test_only and not (
            node.children and node.children[0].kind == "ident"
            and node.children[0].name == _ATTRIBUTES):
        return ITEM_AMOUNT
    if (node.kind == "call" and node.function == "_[_]" and len(node.children) == 2
            and node.children[1].string == ITEM_AMOUNT
            and not (node.children[0].kind == "ident" and node.children[0].name == _ATTRIBUTES)):
        return ITEM_AMOUNT
    return None


def _mixed_major(root: Node, positions: dict[int, int],
                 types: dict[int, str]) -> tuple[str, int] | None:
    major_nodes: set[int] = set()

    def visit(node: Node) -> tuple[str, int] | None:
        for child in _children(node):
            found = visit(child)
            if found is not None:
                return found
        if _amount_name(node) is not None:
            major_nodes.add(node.id)
            return None
        if node.kind != "call" or len(node.children) != 2:
            return None
        left, right = node.children
        if left.id not in major_nodes and right.id not in major_nodes:
            return None
        other = right if left.id in major_nodes else left
        kind = types.get(other.id, "dyn")
        where = positions.get(node.id, 0)
        if node.function in _ARITHMETIC:
            major_nodes.add(node.id)
            if other.id not in major_nodes and kind not in ("double", "dyn"):
                return (f"an amount in the currency is a decimal: CEL does not mix it with a "
                        f"whole number ({kind}) in arithmetic; write the number with a decimal "
                        f"point (2.0, not 2)", where)
        elif node.function in _COMPARISONS and kind not in _NUMBERS:
            return (f"an amount in the currency is a number; it cannot be compared with a "
                    f"{kind} (write a number, e.g. purchase.total >= 50)", where)
        return None

    return visit(root)


def _guard_key(node: Node) -> str | None:
    """The attribute a has(member.attributes.k) or "k" in member.attributes tests."""
    if (node.kind == "select" and node.test_only and node.children
            and node.children[0].kind == "ident" and node.children[0].name == _ATTRIBUTES):
        return node.name
    if (node.kind == "call" and node.function == "@in" and len(node.children) == 2
            and node.children[0].string is not None
            and node.children[1].kind == "ident" and node.children[1].name == _ATTRIBUTES):
        return node.children[0].string
    return None


def _terms(node: Node, function: str) -> list[Node]:
    """The operands of a chain of one operator (a && b && c -> [a, b, c])."""
    if node.kind == "call" and node.function == function:
        return [t for child in node.children for t in _terms(child, function)]
    return [node]


def _guards(node: Node) -> set[str]:
    """Keys known present wherever node is true."""
    return {key for term in _terms(node, "_&&_") if (key := _guard_key(term)) is not None}


def _absent(node: Node) -> set[str]:
    """Keys known present wherever node is false (it is !has(...) || ...)."""
    found = set()
    for term in _terms(node, "_||_"):
        if term.kind == "call" and term.function == "!_" and term.children:
            key = _guard_key(term.children[0])
            if key is not None:
                found.add(key)
    return found


def _unguarded_attribute(root: Node, positions: dict[int, int]) -> tuple[str, int] | None:
    """The first member attribute read where nothing guarantees the member has it: such a
    read fails every purchase of a member without that attribute."""

    def walk(node: Node, present: frozenset[str]) -> tuple[str, int] | None:
        parts: list[tuple[Node, frozenset[str]]] = []
        if node.kind == "call" and node.function == "_&&_":
            inner = present | _guards(node)
            parts = [(term, inner) for term in _terms(node, "_&&_")]
        elif node.kind == "call" and node.function == "_||_":
            inner = present | _absent(node)
            parts = [(term, inner) for term in _terms(node, "_||_")]
        elif node.kind == "call" and node.function == "_?_:_" and len(node.children) == 3:
            test, then, otherwise = node.children
            parts = [(test, present), (then, present | _guards(test)),
                     (otherwise, present | _absent(test))]
        else:
            parts = [(child, present) for child in _children(node)]
            problem = _attribute_read(node, present, positions)
            if problem is not None:
                return problem
        for part, known in parts:
            found = walk(part, known)
            if found is not None:
                return found
        return None

    return walk(root, frozenset())


def _attribute_read(node: Node, present: frozenset[str],
                    positions: dict[int, int]) -> tuple[str, int] | None:
    where = positions.get(node.id, 0)
    if (node.kind == "select" and not node.test_only and node.children
            and node.children[0].kind == "ident" and node.children[0].name == _ATTRIBUTES):
        if node.name in present:
            return None
        read = f"member.attributes.{node.name}"
        return (f"{read} fails for every member without that attribute (and with it the "
                f"purchase, and an import file); write has({read}) && {read} ... (or "
                f"has({read}) ? ... : false)", where)
    if (node.kind == "call" and node.function == "_[_]" and len(node.children) == 2
            and node.children[0].kind == "ident" and node.children[0].name == _ATTRIBUTES):
        key = node.children[1].string
        if key is not None and key in present:
            return None
        shown = f'"{key}"' if key is not None else "key"
        read = f"member.attributes[{shown}]"
        return (f"{read} fails for every member without that attribute (and with it the "
                f"purchase, and an import file); write {shown} in member.attributes && "
                f"{read} ...", where)
    return None


def _nodes(root: Node) -> Iterator[Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(_children(node))


def reads(compiled: Any) -> frozenset[str]:
    """The context names a compiled expression reads (member.segment, purchase.total ...)."""
    root, _ = parse_checked(compiled.serialize())
    return frozenset(node.name for node in _nodes(root) if node.kind == "ident"
                     and (node.name in CONTEXT or node.name in AMOUNTS))


_SEGMENT = "member.segment"


def segment_constants(compiled: Any) -> list[tuple[str, int]]:
    """The strings an expression compares member.segment with (==, !=, in a list), with
    their source offsets: a name that is no segment of the map can never match."""
    root, positions = parse_checked(compiled.serialize())
    found: list[tuple[str, int]] = []

    def segment(node: Node) -> bool:
        return node.kind == "ident" and node.name == _SEGMENT

    for node in _nodes(root):
        if node.kind != "call" or len(node.children) != 2:
            continue
        left, right = node.children
        others: tuple[Node, ...] = ()
        if node.function in ("_==_", "_!=_"):
            others = (right,) if segment(left) else (left,) if segment(right) else ()
        elif node.function == "@in" and segment(left) and right.kind == "list":
            others = right.children
        found.extend((other.string, positions.get(other.id, 0)) for other in others
                     if other.kind == "const" and other.string is not None)
    return sorted(found, key=lambda pair: pair[1])


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
    if "applied to '(double, int)'" in message or "applied to '(int, double)'" in message:
        message += (" (CEL does not mix decimals and whole numbers here: write the whole "
                    "number with a decimal point, e.g. 50.0)")
    if message.startswith("Key not found in map"):
        message += " (guard an optional key with has(), e.g. has(member.attributes.city))"
    return f"CEL: {message}"
