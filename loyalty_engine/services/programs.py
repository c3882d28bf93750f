"""Program versions: applying program files, and the catalogue of versions in force."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, func, select

from loyalty_engine import ledger
from loyalty_engine.domain.errors import NotFoundError, ProgramApplyError
from loyalty_engine.engine.catalog import ProgramCatalog, VersionInForce
from loyalty_engine.rules import CompiledProgram, LoadedProgram, Problem, ProgramFileError
from loyalty_engine.rules.expressions import stored_programs
from loyalty_engine.rules.loader import load_program_text
from loyalty_engine.services.program_files import load_program_file
from loyalty_engine.store import tables
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

# The first version of a program is in force for all history unless told otherwise, so that
# purchases imported from before the program was applied still earn under it.
BEGINNING_OF_TIME = datetime(1970, 1, 1, tzinfo=UTC)

_programs = tables.programs
_versions = tables.program_versions


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What `rules apply` did with one file."""

    path: str
    program_id: str
    version: int
    content_hash: str
    effective_from: datetime
    created: bool


_compiled_cache: dict[str, CompiledProgram] = {}


# Per thread (a catalog keeps caches of its own): the versions it was built from, and it.
_built = threading.local()


def load_catalog(conn: Connection) -> ProgramCatalog:
    """All program versions, compiled (each distinct content is compiled once per process).

    The API loads the catalog for every request: one plain read of the versions' ids,
    hashes and dates, and while those are what this thread's last catalog was built from
    (versions are only ever added), that catalog again."""
    raw: Any = conn.connection.dbapi_connection
    cursor: Any = raw.cursor()
    try:
        cursor.execute("SELECT id, content_hash, effective_from FROM program_versions "
                       "ORDER BY id")
        signature = (str(conn.engine.url), tuple(cursor.fetchall()))
    finally:
        cursor.close()
    last = getattr(_built, "catalog", None)
    if last is not None and last[0] == signature:
        cached: ProgramCatalog = last[1]
        return cached
    catalog = _load_catalog(conn)
    _built.catalog = (signature, catalog)
    return catalog


def _load_catalog(conn: Connection) -> ProgramCatalog:
    rows = conn.execute(
        select(
            _versions.c.id, _versions.c.program_id, _versions.c.version,
            _versions.c.content_hash, _versions.c.effective_from,
        )
    ).all()
    missing = {row.id for row in rows if row.content_hash not in _compiled_cache}
    if missing:
        for source in conn.execute(
            select(_versions.c.content_hash, _versions.c.source_text, _versions.c.source_path)
            .where(_versions.c.id.in_(missing))
        ):
            if source.content_hash not in _compiled_cache:
                with stored_programs():
                    _compiled_cache[source.content_hash] = load_program_text(
                        source.source_text, source.source_path).compiled
    versions = [
        VersionInForce(row.id, row.program_id, row.version, row.content_hash,
                       row.effective_from, _compiled_cache[row.content_hash])
        for row in rows
    ]
    return ProgramCatalog(versions)


def program_files(paths: list[Path]) -> list[Path]:
    """The files named, with each directory replaced by its *.yaml and *.yml files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
            if not found:
                raise ProgramFileError([Problem(str(path), 1, 1, "no *.yaml files in directory")])
            files.extend(found)
        else:
            files.append(path)
    return files


def validate_program_files(paths: list[Path]) -> list[LoadedProgram]:
    """Load every file; raise one ProgramFileError listing every problem in every file."""
    loaded: list[LoadedProgram] = []
    problems: list[Problem] = []
    for path in program_files(paths):
        try:
            loaded.append(load_program_file(path))
        except ProgramFileError as exc:
            problems.extend(exc.problems)
    first_file: dict[str, str] = {}
    for program in loaded:
        pid = program.definition.program
        if pid in first_file:
            problems.append(Problem(program.path, 1, 1,
                                    f"program {pid!r} is also defined in {first_file[pid]}"))
        first_file.setdefault(pid, program.path)
    if problems:
        raise ProgramFileError(problems)
    return loaded


@write_use_case
def apply_program_files(
    conn: Connection, paths: list[Path], now: datetime, effective_from: datetime | None = None
) -> list[ApplyResult]:
    """Store a new version of each program whose content changed; all files or none.

    A program's first version defaults to being in force for all history; later versions
    default to `now`. A new version must take effect after the newest existing one, so
    history that was already evaluated is never re-decided.
    """
    loaded = validate_program_files(paths)
    return [_apply_one(conn, program, now, effective_from) for program in loaded]


def _same_meaning(stored_hash: str, stored_source: str, loaded: LoadedProgram) -> bool:
    """Whether the version in force already says what this file says.

    The stored hash was computed by the release that applied it; when a later release adds a
    setting with a default, the same file hashes differently, so the stored source is read
    again with today's loader before an unchanged file is taken for a new version."""
    if stored_hash == loaded.content_hash:
        return True
    try:
        return load_program_text(stored_source).content_hash == loaded.content_hash
    except ProgramFileError:
        return False  # no longer valid as it stood: the file being applied is a change


def _apply_one(
    conn: Connection, loaded: LoadedProgram, now: datetime, effective_from: datetime | None
) -> ApplyResult:
    pid = loaded.definition.program
    latest = conn.execute(
        select(_versions.c.version, _versions.c.content_hash, _versions.c.effective_from,
               _versions.c.source_text)
        .where(_versions.c.program_id == pid)
        .order_by(_versions.c.effective_from.desc())
        .limit(1)
    ).first()
    if latest is not None and _same_meaning(latest.content_hash, latest.source_text, loaded):
        return ApplyResult(loaded.path, pid, latest.version, latest.content_hash,
                           latest.effective_from, created=False)
    if latest is None:
        start = effective_from or BEGINNING_OF_TIME
        conn.execute(_programs.insert().values(program_id=pid, name=loaded.definition.name,
                                               created_at=now))
        version = 1
    else:
        start = effective_from or now
        if start <= latest.effective_from:
            raise ProgramApplyError(
                f"{loaded.path}: version {latest.version} of program {pid!r} is in force from "
                f"{latest.effective_from.isoformat()}; a new version must take effect later "
                f"than that, not {start.isoformat()}"
            )
        evaluated = conn.execute(
            select(func.max(tables.purchases.c.occurred_at))
            .where(tables.purchases.c.occurred_at >= start)
        ).scalar_one()
        if evaluated is not None:
            raise ProgramApplyError(
                f"{loaded.path}: purchases up to {evaluated.isoformat()} were already "
                f"evaluated under version {latest.version} of {pid!r}; a new version must "
                f"take effect after them, not from {start.isoformat()}"
            )
        version = latest.version + 1
        conn.execute(_programs.update().where(_programs.c.program_id == pid)
                     .values(name=loaded.definition.name))
        if loaded.compiled.inactivity.kind == "never":
            # Inactivity expiry dropped (or never used: then no balance has a deadline).
            # Dropped from a later date, the deadlines that purchases under the version in
            # force write until then would outlive it: such a version takes effect now.
            if start > now and ledger.has_inactivity_deadlines(conn, pid):
                raise ProgramApplyError(
                    f"{loaded.path}: version {version} of {pid!r} drops inactive_months, "
                    f"which ends the members' inactivity deadlines; apply it to take effect "
                    f"now, not from {start.isoformat()}")
            ledger.end_inactivity_deadlines(conn, pid, start)
    conn.execute(
        _versions.insert().values(
            program_id=pid, version=version, content_hash=loaded.content_hash,
            effective_from=start, applied_at=now, source_path=loaded.path,
            source_text=loaded.source_text,
        )
    )
    return ApplyResult(loaded.path, pid, version, loaded.content_hash, start, created=True)


@read_use_case
def list_versions(conn: Connection) -> list[VersionInForce]:
    """Every stored version of every program, by program then age."""
    catalog = load_catalog(conn)
    return [v for pid in catalog.program_ids for v in catalog.versions(pid)]


@read_use_case
def program_zones(conn: Connection) -> dict[str, ZoneInfo]:
    """Each program's time zone (its newest version's), for showing times as people there
    read them."""
    catalog = load_catalog(conn)
    return {pid: catalog.versions(pid)[-1].program.timezone for pid in catalog.program_ids}


@read_use_case
def program_currencies(conn: Connection) -> dict[str, str]:
    """Each program's currency (its newest version's)."""
    catalog = load_catalog(conn)
    return {pid: catalog.versions(pid)[-1].program.currency for pid in catalog.program_ids}


def require_program(catalog: ProgramCatalog, program_id: str | None) -> None:
    """A --program option must name a program that has been applied."""
    if program_id is not None and program_id not in catalog.program_ids:
        known = ", ".join(catalog.program_ids) or "none has been applied"
        raise NotFoundError(f"there is no program {program_id!r} (programs: {known})")


def program_as_of(conn: Connection, program_id: str, as_of: datetime) -> CompiledProgram:
    """The program's version in force at as_of; before its first version, the first (whose
    settings then say how its later purchases would count). An unknown program is a
    NotFoundError naming the programs there are."""
    catalog = load_catalog(conn)
    require_program(catalog, program_id)
    version = catalog.in_force(program_id, as_of) or catalog.versions(program_id)[0]
    return version.program


def versions_in_force(conn: Connection, at: datetime, program_id: str | None = None,
                      versions: list[VersionInForce] | None = None) -> list[VersionInForce]:
    """The versions a step works on: those given (the scheduler's job passes the one its
    planner chose, so nothing is loaded twice), else every version in force at `at` (of
    one program when named; an unknown program is an error)."""
    if versions is not None:
        return versions
    catalog = load_catalog(conn)
    require_program(catalog, program_id)
    return [v for v in catalog.all_in_force(at)
            if program_id is None or v.program_id == program_id]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A stored version with its source text as it was applied."""

    program_id: str
    version: int
    content_hash: str
    effective_from: datetime
    applied_at: datetime
    source_path: str
    source_text: str


@read_use_case
def stored_version(conn: Connection, program_id: str, version: int | None = None
                   ) -> StoredVersion:
    """A program's stored version (the newest when none is named), source included."""
    query = select(_versions).where(_versions.c.program_id == program_id)
    found = conn.execute(query.where(_versions.c.version == version) if version is not None
                         else query.order_by(_versions.c.version.desc()).limit(1)).first()
    if found is None:
        if conn.execute(select(_programs.c.program_id)
                        .where(_programs.c.program_id == program_id)).first() is None:
            known = ", ".join(load_catalog(conn).program_ids) or "none has been applied"
            raise NotFoundError(f"there is no program {program_id!r} (programs: {known})")
        newest = conn.execute(select(func.max(_versions.c.version))
                              .where(_versions.c.program_id == program_id)).scalar_one()
        raise NotFoundError(f"program {program_id!r} has no version {version} (versions 1 to "
                            f"{newest})")
    return StoredVersion(found.program_id, found.version, found.content_hash,
                         found.effective_from, found.applied_at, found.source_path,
                         found.source_text)
