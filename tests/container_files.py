"""Reading the Dockerfile, .dockerignore and compose.yaml as Docker would, for the tests.

This machine has no Docker engine, so the image is never built here: the tests read the
files instead, the wheel test builds its wheel from exactly the build context the
Dockerfile's first stage copies, and it runs the Dockerfile's own pip commands (their
container paths mapped to folders of the test).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"


@dataclass
class Stage:
    """One FROM ... stage: its base image, its name, its instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]


@dataclass(frozen=True)
class Copy:
    """A COPY instruction: its sources, its destination, and the stage it copies from."""

    sources: list[str]
    dest: str
    from_stage: str | None


@dataclass(frozen=True)
class Mount:
    """A RUN --mount=type=bind: source (in the build context, or in stage from_stage) seen
    at target while the command runs."""

    source: str
    target: str
    from_stage: str | None


@dataclass(frozen=True)
class Run:
    """A RUN instruction in shell form: its bind mounts and its command."""

    mounts: list[Mount]
    command: str


def _logical_lines(text: str) -> list[str]:
    """Instructions with their continuation lines joined, comments and blanks dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return lines


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The stages of a Dockerfile, with ${ARG} defaults declared before the first FROM
    substituted into the FROM lines."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text("utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif keyword == "FROM":
            expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                              lambda m: args[m.group(1) or m.group(2)], rest)
            parts = expanded.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def _flags(words: list[str]) -> tuple[list[str], list[str]]:
    """Leading --flags of an instruction, and the words after them."""
    index = 0
    while index < len(words) and words[index].startswith("--"):
        index += 1
    return words[:index], words[index:]


def copies(stage: Stage) -> list[Copy]:
    """The stage's COPY instructions (shell form; --from=STAGE recognised)."""
    found: list[Copy] = []
    for args in stage.all("COPY"):
        flags, paths = _flags(args.split())
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        found.append(Copy(paths[:-1], paths[-1], from_stage))
    return found


def runs(stage: Stage) -> list[Run]:
    """The stage's RUN instructions in shell form, with their bind mounts."""
    found: list[Run] = []
    for args in stage.all("RUN"):
        flags, rest = [], args
        while match := re.match(r"(--\S+)\s+", rest):
            flags.append(match.group(1))
            rest = rest[match.end():]
        mounts = []
        for flag in flags:
            assert flag.startswith("--mount="), f"RUN {flag} is not read here"
            options = dict(o.split("=", 1) for o in flag.removeprefix("--mount=").split(","))
            assert options.pop("type") == "bind", flag
            mounts.append(Mount(options.pop("source"), options.pop("target"),
                                options.pop("from", None)))
            assert not options, f"RUN {flag}: options not read here"
        found.append(Run(mounts, rest.strip()))
    return found


def exec_form(args: str) -> list[str]:
    """An instruction written in exec form (a JSON array), as its list."""
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def host_argv(command: str, paths: Mapping[str, Path]) -> list[str]:
    """A RUN command's words with its container paths replaced by the host's (paths maps a
    container folder or file to the host's; an absolute path not in it fails), and
    wildcards expanded as the shell would."""
    words = shlex.split(command)
    assert not any(w in ("&&", "||", ";", "|") for w in words), f"one command only: {command}"
    argv: list[str] = []
    for word in words:
        for container, host in sorted(paths.items(), key=lambda p: -len(p[0])):
            if word == container or word.startswith(container.rstrip("/") + "/"):
                word = str(host) + word[len(container.rstrip("/")):]
                break
        else:
            assert not word.startswith("/"), f"{command}: {word} is not mapped to the host"
        if "*" in word:
            matches = sorted(Path(word).parent.glob(Path(word).name))
            assert matches, f"{word} matches nothing"
            argv += [str(m) for m in matches]
        else:
            argv.append(word)
    return argv


# .dockerignore, as Docker reads it (github.com/moby/patternmatcher): each pattern is a path
# relative to the context; `*` and `?` stay within one folder, `**` spans any number of them;
# a pattern also matches everything inside a folder it matches; the last pattern that
# matches decides, and a pattern starting with `!` lets a path back in.


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = PurePosixPath("/" + pattern).as_posix().lstrip("/")  # cleaned, as Docker does
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out, index = out + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            out, index = out + ".*", index + 2
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            assert pattern[index] not in "[\\", f"{pattern}: character classes are not read here"
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


@cache
def dockerignore_rules(path: Path = DOCKERIGNORE) -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """(lets back in, pattern) for each line of .dockerignore, in order."""
    rules = []
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.removeprefix("!").strip())))
    return tuple(rules)


def ignored(relative: str, path: Path = DOCKERIGNORE) -> bool:
    """Whether Docker leaves relative (a path in the build context) out of the context."""
    parts = PurePosixPath(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    left_out = False
    for negated, regex in dockerignore_rules(path):
        if left_out != negated:
            continue  # only a pattern that could change the answer is tried, as Docker does
        if any(regex.fullmatch(candidate) for candidate in candidates):
            left_out = not negated
    return left_out


def build_context(root: Path = ROOT) -> list[str]:
    """The files of the tree under root that the build context holds (relative paths)."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not ignored(relative):
            found.append(relative)
    return found


def copy_build_context(dest: Path) -> list[str]:
    """Copy into dest what the Dockerfile's first stage copies from the build context (each
    source where its COPY puts it under the stage's WORKDIR, less what .dockerignore leaves
    out); returns the sources."""
    first = dockerfile_stages()[0]
    sources: list[str] = []
    for copy in copies(first):
        assert copy.from_stage is None, "the first stage copies from the build context"
        assert not copy.dest.startswith("/"), "COPY destinations are relative to WORKDIR"
        for source in copy.sources:
            sources.append(source)
            origin = ROOT / source
            # Docker fails the build on a source that is missing or left out of the context.
            assert origin.exists(), f"the Dockerfile copies {source}, which does not exist"
            assert not ignored(source), f".dockerignore leaves out {source}"
            target = dest / (Path(copy.dest) / origin.name if copy.dest.endswith("/") and
                             origin.is_file() else Path(copy.dest))
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True, ignore=_ignore)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(origin, target)
    return sources


def _ignore(folder: str, names: list[str]) -> set[str]:
    relative = Path(folder).relative_to(ROOT).as_posix()
    return {n for n in names if ignored(f"{relative}/{n}")}


def compose(path: Path = COMPOSE) -> dict[str, Any]:
    """compose.yaml as data (YAML anchors and merge keys resolved)."""
    loaded: dict[str, Any] = YAML(typ="safe").load(path.read_text("utf-8"))
    return loaded
