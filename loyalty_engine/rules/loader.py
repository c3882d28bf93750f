"""Program text: line-aware YAML, pydantic validation, problems as file:line:col (the
files are read by loyalty_engine/services/program_files.py: the core does no I/O)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from loyalty_engine.rules.compiled import CompiledProgram, compile_program
from loyalty_engine.rules.expressions import LEVELS, language_level
from loyalty_engine.rules.insights_schema import segment_warnings
from loyalty_engine.rules.multipliers import program_warnings
from loyalty_engine.rules.schema import LocatedValueError, ProgramDefinition

# Checked before parsing, so that a huge file is refused at once: YAML parsing takes about
# 15-30 us a comment line and more as the file grows (16 MB of comments took 52 s, 1 MiB
# 7 s), and memory many times the size. 256 KiB parses in about a second at worst; the
# largest shipped program is under 10 KiB.
MAX_PROGRAM_BYTES = 256 << 10
# Deeper nesting is no program; the YAML composer recurses once per level.
MAX_NESTING = 64
# The longest number a program may write (a points value or an amount is far shorter);
# Python refuses to read integers of more than 4,300 digits anyway.
MAX_DIGITS = 100


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a program file, at a 1-based line and column."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ProgramFileError(Exception):
    """A program file (or several) that cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class LoadedProgram:
    """A validated program file: its definition, compiled form and semantic content hash."""

    path: str
    source_text: str
    definition: ProgramDefinition
    compiled: CompiledProgram
    content_hash: str
    # What validation warns about without refusing the file, each as a Problem whose
    # message begins "warning: " (printed as file:line:col: warning: ...).
    warnings: tuple[Problem, ...] = ()


def too_large(name: str) -> Problem:
    """The problem of a file over MAX_PROGRAM_BYTES (refused before it is parsed)."""
    return Problem(name, 1, 1, f"the file is larger than {MAX_PROGRAM_BYTES:,} bytes (256 KiB), "
                               "the most a program file may have; nothing was read")


def load_program_text(text: str, name: str = "<text>") -> LoadedProgram:
    """Validate and compile program YAML given as text; name is used in problem locations."""
    if len(text) > MAX_PROGRAM_BYTES or len(text.encode("utf-8")) > MAX_PROGRAM_BYTES:
        raise ProgramFileError([too_large(name)])
    yaml = YAML(typ="rt")
    yaml.Constructor = _DecimalConstructor
    yaml.Composer = _BoundedComposer
    try:
        data = yaml.load(text)
    except ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        line, column = _line_column(text, exc.position)
        character = exc.character
        what = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        raise ProgramFileError([Problem(name, line, column, f"malformed YAML: the character "
                                                            f"{what} is not allowed")]) from None
    except RecursionError:  # a backstop: the composer refuses deep nesting before this
        raise ProgramFileError([Problem(name, 1, 1, "malformed YAML: nested too deeply (at "
                                                    f"most {MAX_NESTING} levels)")]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        last = max(1, len(text.splitlines()))
        if line > last:  # "unexpected end of file" is marked past the last line
            line, column = last, len(text.splitlines()[-1]) + 1 if text.strip() else 1
        message = " ".join(
            part for part in (exc.context, exc.problem) if part
        ) or "malformed YAML"
        problem = Problem(name, line, column, f"malformed YAML: {message}")
        raise ProgramFileError([problem]) from None
    except YAMLError as exc:
        raise ProgramFileError([Problem(name, 1, 1, f"malformed YAML: {exc}")]) from None
    if data is None:
        raise ProgramFileError(
            [Problem(name, 1, 1, "file is empty; expected a program definition")]
        )
    if not isinstance(data, CommentedMap):
        raise ProgramFileError(
            [Problem(name, 1, 1, "a program file must be a mapping with keys such as "
                                 "'program', 'name', 'currency' and 'rules'")]
        )
    declared = data.get("language")
    # Expressions are compiled at the file's language level (a bad value is refused by the
    # schema; until then the expressions are read as a file that declares none).
    with language_level(declared if declared in LEVELS else None):
        try:
            definition = ProgramDefinition.model_validate(data)
        except ValidationError as exc:
            problems = [_problem_from_error(name, data, error) for error in exc.errors()]
            problems.sort(key=lambda p: (p.line, p.column))
            raise ProgramFileError(problems) from None
        compiled = compile_program(definition)
        warnings = [*program_warnings(definition.rules), *segment_warnings(
            definition.rules, compiled.insights.segments.names, definition.segments is None)]
    return LoadedProgram(
        path=name,
        source_text=text,
        definition=definition,
        compiled=compiled,
        content_hash=content_hash(definition),
        warnings=tuple(
            Problem(name, *_locate(data, loc, "value"), f"warning: {_dotted(loc)}: {message}")
            for loc, message in warnings),
    )


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of a character index."""
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


class _BoundedComposer(Composer):
    """Refuses nesting deeper than MAX_NESTING where it happens (the composer recurses)."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                event = self.parser.peek_event()
                raise ConstructorError(
                    problem=f"nested more than {MAX_NESTING} levels deep",
                    problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _DecimalConstructor(RoundTripConstructor):
    """Reads YAML floats as exact Decimals from their text: `1.00000000000000001` is not 1."""

    def construct_yaml_int(self, node: Any) -> Any:
        _bounded_digits(node)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: Any) -> Any:
        _bounded_digits(node)
        try:
            value = Decimal(str(node.value).replace("_", ""))
        except InvalidOperation:
            return super().construct_yaml_float(node)  # .inf, .nan and friends
        return value if value.is_finite() else super().construct_yaml_float(node)


_DecimalConstructor.add_constructor(
    "tag:yaml.org,2002:float", _DecimalConstructor.construct_yaml_float
)
_DecimalConstructor.add_constructor(
    "tag:yaml.org,2002:int", _DecimalConstructor.construct_yaml_int
)


def _bounded_digits(node: Any) -> None:
    digits = sum(c.isdigit() for c in str(node.value))
    if digits > MAX_DIGITS:
        raise ConstructorError(
            problem=f"a number of {digits:,} digits; numbers have at most {MAX_DIGITS}",
            problem_mark=node.start_mark)


def content_hash(definition: ProgramDefinition) -> str:
    """SHA-256 of the program's meaning: comments, layout and key order do not change it."""
    meaning = definition.model_dump(mode="python")
    canonical = json.dumps(
        meaning, sort_keys=True, default=_canonical,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):  # promotion windows
        return value.isoformat()
    raise TypeError(f"cannot hash {type(value).__name__}")


def _problem_from_error(name: str, root: CommentedMap, error: Any) -> Problem:
    loc: tuple[Any, ...] = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedValueError):
        loc += cause.where
    loc = _without_tags(root, loc)
    message = error["msg"]
    if error["type"] == "union_tag_invalid":  # an unknown rule kind
        ctx = error.get("ctx") or {}
        loc += (ctx.get("discriminator", "'kind'").strip("'"),)
        message = f"unknown kind {ctx.get('tag')!r}; use one of {ctx.get('expected_tags')}"
    line, column = _locate(root, loc, error["type"])
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
        loc = loc[:-1]
    elif error["type"] == "missing":
        message = f"missing required key {loc[-1]!r}"
        loc = loc[:-1]
    path = _dotted(loc)
    return Problem(name, line, column, f"{path}: {message}" if path else message)


PERIOD_TAGS = ("period-name", "period-club")  # rules/schema.py's tags of a rule's period


def _without_tags(root: CommentedMap, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the union tags pydantic adds to locations (rules[0].stamp_card.reward)."""
    node: Any = root
    kept: list[Any] = []
    for key in loc:
        if isinstance(node, CommentedMap) and key not in node and node.get("kind") == key:
            continue
        if key in PERIOD_TAGS and not (isinstance(node, CommentedMap) and key in node):
            continue  # which form of a period (a name, or {membership_year: CLUB})
        if isinstance(key, str) and key.startswith("~"):  # a union's tag of its own shape
            continue
        kept.append(key)
        in_map = isinstance(node, CommentedMap) and key in node
        in_seq = isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node)
        node = node[key] if in_map or in_seq else None
    return tuple(kept)


def _locate(root: CommentedMap, loc: tuple[Any, ...], kind: str) -> tuple[int, int]:
    """1-based line and column of the deepest node of loc that exists in the YAML tree."""
    node: Any = root
    line, column = root.lc.line, root.lc.col
    for key in loc:
        if isinstance(node, CommentedMap) and key in node:
            # Point at the value for a bad value, at the key for an unknown key.
            if kind == "extra_forbidden" or not isinstance(node[key], (CommentedMap, CommentedSeq)):
                line, column = node.lc.key(key) if kind == "extra_forbidden" else node.lc.value(key)
            else:
                line, column = node.lc.key(key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line, column = node.lc.item(key)
            node = node[key]
        else:
            break
    return line + 1, column + 1


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for key in loc:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else str(key)
    return out
