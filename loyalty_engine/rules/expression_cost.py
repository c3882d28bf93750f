"""What a compiled CEL expression can cost: its comprehension turns bounded, its regexes found.

The CEL runtime stops an evaluation after ITERATION_BUDGET comprehension turns in all (an
error, not a slow purchase). So that no program can fail on a large purchase, validation
bounds each expression's turns on the largest purchase the engine accepts: a comprehension
over a range of at most R elements costs R x (1 + its body's turns), nested or not. The
bound is conservative (it assumes no short-circuit and the longest lists); the AST comes
from the checked expression the runtime itself will run, read from its protobuf wire form.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from loyalty_engine.domain.events import MAX_ITEMS

# cel-cpp's default comprehension budget, measured: 9,999 turns run, the 10,000th fails.
ITERATION_BUDGET = 10_000
# A list whose length validation cannot see (an element of a list, a function's result) is
# taken to be as long as the longest list in the context.
UNKNOWN = MAX_ITEMS
# The longest each context list or map can be on an accepted purchase and member.
CONTEXT_SIZES: dict[str, tuple[int, int]] = {  # name -> (length, length of an element)
    "purchase.categories": (MAX_ITEMS, 0),
    "purchase.skus": (MAX_ITEMS, 0),
    "purchase.items": (MAX_ITEMS, 5),  # sku, category, quantity_milli, amount_minor, amount
    "member.attributes": (50, 0),  # scalar values; 50 attributes at most (api/schemas.py)
    "member.consents": (50, 0),
}


@dataclass(frozen=True, slots=True)
class Node:
    """One CEL expression node, reduced to what the bound needs."""

    id: int
    kind: str  # const | ident | select | call | list | struct | comprehension | other
    name: str = ""  # ident name, select field, iteration variable
    string: str | None = None  # a string constant's value
    children: tuple[Node, ...] = ()
    # comprehension parts, by role
    parts: dict[str, Node] = field(default_factory=dict)
    accu: str = ""
    function: str = ""
    test_only: bool = False  # a select inside has(): tests presence, reads nothing


# --- protobuf wire form -------------------------------------------------------------------

def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protobuf message, in order."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(data, pos)
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire == 1:
            yield number, wire, data[pos:pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, data[pos:pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _bytes(value: bytes | int) -> bytes:
    assert isinstance(value, bytes)
    return value


def parse_checked(serialized: bytes) -> tuple[Node, dict[int, int]]:
    """The root node and each node's source offset, from Expression.serialize()."""
    checked = b""
    for number, _, value in _fields(serialized):  # google.protobuf.Any
        if number == 2:
            checked = _bytes(value)
    root: Node | None = None
    positions: dict[int, int] = {}
    for number, _, value in _fields(checked):  # cel.expr.CheckedExpr
        if number == 4:
            root = _expr(_bytes(value))
        elif number == 5:  # SourceInfo: positions map<int64, int32> is field 4
            for n, _, entry in _fields(_bytes(value)):
                if n == 4:
                    pair = {k: v for k, _, v in _fields(_bytes(entry))}
                    key, offset = pair.get(1, 0), pair.get(2, 0)
                    assert isinstance(key, int) and isinstance(offset, int)
                    positions[key] = offset
    if root is None:
        raise ValueError("the compiled expression has no body")
    return root, positions


# cel.expr.Type: which field of its oneof is set, and PrimitiveType's values.
_TYPE_KINDS = {1: "dyn", 2: "null", 4: "wrapper", 5: "well_known", 6: "list", 7: "map",
               8: "function", 9: "message", 10: "type_param", 11: "type", 12: "error",
               14: "abstract"}
_PRIMITIVES = {1: "bool", 2: "int", 3: "uint", 4: "double", 5: "string", 6: "bytes"}


def checked_types(serialized: bytes) -> dict[int, str]:
    """Each node's type as the checker worked it out (int, double, string, dyn, list ...)."""
    checked = b""
    for number, _, value in _fields(serialized):  # google.protobuf.Any
        if number == 2:
            checked = _bytes(value)
    kinds: dict[int, str] = {}
    for number, _, value in _fields(checked):
        if number != 3:  # CheckedExpr.type_map: map<int64, Type>
            continue
        pair = dict((k, v) for k, _, v in _fields(_bytes(value)))
        key, kind = pair.get(1, 0), pair.get(2, b"")
        assert isinstance(key, int)
        name = "dyn"
        for n, _, v in _fields(_bytes(kind)):
            name = _PRIMITIVES.get(v, "dyn") if n == 3 and isinstance(v, int) else (
                _TYPE_KINDS.get(n, "dyn"))
        kinds[key] = name
    return kinds


def _expr(data: bytes) -> Node:
    node_id = 0
    for number, _, value in _fields(data):
        if number == 2:
            assert isinstance(value, int)
            node_id = value
        elif number == 3:
            string = None
            for n, _, v in _fields(_bytes(value)):
                if n == 6:
                    string = _bytes(v).decode("utf-8")
            return Node(node_id, "const", string=string)
        elif number == 4:
            name = next((_bytes(v).decode() for n, _, v in _fields(_bytes(value)) if n == 1), "")
            return Node(node_id, "ident", name=name)
        elif number == 5:
            operand: list[Node] = []
            name = ""
            test_only = False
            for n, _, v in _fields(_bytes(value)):
                if n == 1:
                    operand.append(_expr(_bytes(v)))
                elif n == 2:
                    name = _bytes(v).decode()
                elif n == 3:
                    test_only = bool(v)
            return Node(node_id, "select", name=name, children=tuple(operand),
                        test_only=test_only)
        elif number == 6:
            target: list[Node] = []
            args: list[Node] = []
            function = ""
            for n, _, v in _fields(_bytes(value)):
                if n == 1:
                    target.append(_expr(_bytes(v)))
                elif n == 2:
                    function = _bytes(v).decode()
                elif n == 3:
                    args.append(_expr(_bytes(v)))
            return Node(node_id, "call", function=function, children=tuple(target + args))
        elif number == 7:
            elements = [_expr(_bytes(v)) for n, _, v in _fields(_bytes(value)) if n == 1]
            return Node(node_id, "list", children=tuple(elements))
        elif number == 8:
            values: list[Node] = []
            for n, _, entry in _fields(_bytes(value)):
                if n == 2:
                    values.extend(_expr(_bytes(v)) for k, _, v in _fields(_bytes(entry))
                                  if k in (3, 4))
            return Node(node_id, "struct", children=tuple(values))
        elif number == 9:
            roles = {2: "range", 4: "init", 5: "condition", 6: "step", 7: "result"}
            parts: dict[str, Node] = {}
            names: dict[int, str] = {}
            for n, _, v in _fields(_bytes(value)):
                if n in roles:
                    parts[roles[n]] = _expr(_bytes(v))
                elif n in (1, 3, 8):
                    names[n] = _bytes(v).decode()
            return Node(node_id, "comprehension", name=names.get(1, ""), parts=parts,
                        accu=names.get(3, ""))
    return Node(node_id, "other")


# --- the bound ----------------------------------------------------------------------------

Size = tuple[int, int]  # (most elements, most elements of one element)


def iterations(root: Node) -> int:
    """The most comprehension turns the expression can take on an accepted purchase."""
    return _cost(root, {})[0]


def _cost(node: Node, scope: dict[str, Size]) -> tuple[int, Size]:
    if node.kind == "ident":
        size = scope.get(node.name) or CONTEXT_SIZES.get(node.name) or (UNKNOWN, UNKNOWN)
        return 0, size
    if node.kind == "const":
        return 0, (0, 0)
    if node.kind == "comprehension":
        range_cost, (length, element) = _cost(node.parts["range"], scope) if (
            "range" in node.parts) else (0, (UNKNOWN, UNKNOWN))
        inner = dict(scope)
        inner[node.name] = (element, UNKNOWN)
        inner[node.accu] = (length, UNKNOWN)  # map/filter build a list of at most `length`
        init = _cost(node.parts["init"], scope)[0] if "init" in node.parts else 0
        body = sum(_cost(node.parts[p], inner)[0] for p in ("condition", "step")
                   if p in node.parts)
        result = _cost(node.parts["result"], inner)[0] if "result" in node.parts else 0
        return range_cost + init + length * (1 + body) + result, (length, UNKNOWN)
    costs = [_cost(child, scope) for child in node.children]
    total = sum(c for c, _ in costs)
    if node.kind == "list":
        return total, (len(costs), max((s[0] for _, s in costs), default=0))
    if node.kind == "struct":
        return total, (len(costs), UNKNOWN)
    if node.kind == "call" and node.function == "_+_" and len(costs) == 2:
        (a, ae), (b, be) = costs[0][1], costs[1][1]
        return total, (a + b, max(ae, be))  # list concatenation
    if node.kind == "call" and node.function == "dyn" and costs:
        return total, costs[0][1]
    return total, (UNKNOWN, UNKNOWN)


def constant_patterns(root: Node, positions: dict[int, int]) -> list[tuple[str, int]]:
    """Every regular expression given as a string constant to matches(), with its offset."""
    found: list[tuple[str, int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.kind == "call" and node.function == "matches" and node.children:
            pattern = node.children[-1]
            if pattern.kind == "const" and pattern.string is not None:
                found.append((pattern.string, positions.get(pattern.id, 0)))
        stack.extend(node.children)
        stack.extend(node.parts.values())
    return sorted(found, key=lambda p: p[1])
