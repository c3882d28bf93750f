"""The catalogue of program versions: which version of each program is in force when."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime

from loyalty_engine.engine.versions import version_in_force
from loyalty_engine.rules.compiled import CompiledProgram

_DAWN = datetime.min.replace(tzinfo=UTC)
_NEVER = datetime.max.replace(tzinfo=UTC)


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
        for row in sorted(versions, key=lambda v: (v.program_id, v.effective_from)):
            froms, rows = self._by_program.setdefault(row.program_id, ([], []))
            froms.append(row.effective_from)
            rows.append(row)
        # Every instant at which some program changes version, for the cache below.
        self._changes = sorted({v.effective_from for v in versions})
        self._last: tuple[datetime, datetime, list[VersionInForce]] = (_NEVER, _NEVER, [])
        self._by_id = {v.id: v for v in versions}
        self._stores: dict[str, list[VersionInForce]] = {}  # for the interval in _last

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
        index = bisect_right(self._changes, at)
        start = self._changes[index - 1] if index else _DAWN
        end = self._changes[index] if index < len(self._changes) else _NEVER
        self._last = (start, end, found)
        self._stores = {}
        return found

    def at_store(self, at: datetime, store_id: str) -> list[VersionInForce]:
        """The versions in force at `at` whose programs see this store (remembered per
        store for the interval between two version changes, like all_in_force)."""
        versions = self.all_in_force(at)
        found = self._stores.get(store_id)
        if found is None:
            found = self._stores[store_id] = [v for v in versions
                                              if v.program.covers(store_id)]
        return found

    def version(self, version_id: int) -> VersionInForce:
        """A version by its stored id (KeyError if the catalogue does not hold it)."""
        return self._by_id[version_id]

    def in_force(self, program_id: str, at: datetime) -> VersionInForce | None:
        """The version of one program in force at `at`, if any."""
        entry = self._by_program.get(program_id)
        return None if entry is None else version_in_force(entry[0], entry[1], at)

    @property
    def program_ids(self) -> list[str]:
        """Every program with at least one version."""
        return sorted(self._by_program)

    def versions(self, program_id: str) -> list[VersionInForce]:
        """All versions of a program, oldest first."""
        entry = self._by_program.get(program_id)
        return list(entry[1]) if entry else []
