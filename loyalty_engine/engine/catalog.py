"""The catalogue of program versions: which version of each program is in force when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from loyalty_engine.engine.versions import version_in_force
from loyalty_engine.rules.compiled import CompiledProgram


@dataclass(frozen=True, slots=True)
class VersionInForce:
    """A stored program version with its compiled program."""

    id: int
    program_id: str
    version: int
    content_hash: str
    effective_from: datetime
    program: CompiledProgram


class ProgramCatalog:
    """Every applied version of every program, to find the one in force at an instant."""

    def __init__(self, versions: list[VersionInForce]) -> None:
        self._by_program: dict[str, tuple[list[datetime], list[VersionInForce]]] = {}
        never = datetime.max.replace(tzinfo=UTC)
        self._last: tuple[datetime, datetime, list[VersionInForce]] = (never, never, [])
        for row in sorted(versions, key=lambda v: (v.program_id, v.effective_from)):
            froms, rows = self._by_program.setdefault(row.program_id, ([], []))
            froms.append(row.effective_from)
            rows.append(row)

    def in_force(self, program_id: str, at: datetime) -> VersionInForce | None:
        """The version of program_id in force at `at`, or None."""
        entry = self._by_program.get(program_id)
        return version_in_force(entry[0], entry[1], at) if entry else None

    def all_in_force(self, at: datetime) -> list[VersionInForce]:
        """The version in force at `at` of every program that has one."""
        # Imports ask this for every purchase, and almost all fall between the same two
        # version changes: remember the last answer and the interval it holds for.
        start, end, cached = self._last
        if start <= at < end:
            return cached
        found = []
        for froms, rows in self._by_program.values():
            row = version_in_force(froms, rows, at)
            if row is not None:
                found.append(row)
        self._last = (self._interval_start(at), self._interval_end(at), found)
        return found

    def _interval_start(self, at: datetime) -> datetime:
        """The latest version change at or before `at` (or the beginning of time)."""
        changes = [f for froms, _ in self._by_program.values() for f in froms if f <= at]
        return max(changes, default=datetime.min.replace(tzinfo=UTC))

    def _interval_end(self, at: datetime) -> datetime:
        """The earliest version change after `at` (or the end of time)."""
        changes = [f for froms, _ in self._by_program.values() for f in froms if f > at]
        return min(changes, default=datetime.max.replace(tzinfo=UTC))

    @property
    def program_ids(self) -> list[str]:
        """Every program with at least one version."""
        return sorted(self._by_program)

    def versions(self, program_id: str) -> list[VersionInForce]:
        """All versions of a program, oldest first."""
        entry = self._by_program.get(program_id)
        return list(entry[1]) if entry else []
