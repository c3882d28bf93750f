"""Knowing the members: their figures per program as of an instant, their RFM scores and
segments, the R x F grid, and the snapshot the rfm_snapshot job stores once per run date
(with a segment_changed event for each member whose segment moved since their previous
snapshot; a member's first snapshot is not a move)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection

from loyalty_engine.analytics.figures import MemberFigures
from loyalty_engine.analytics.rfm import RfmGrid, RfmRow, grid_of, score_members
from loyalty_engine.domain.errors import NoPurchasesError, NotFoundError
from loyalty_engine.domain.periods import add_months, start_of_day
from loyalty_engine.engine.catalog import VersionInForce
from loyalty_engine.engine.earning import local_day
from loyalty_engine.records.events import Event, record_events
from loyalty_engine.records.member_figures import (
    member_figures,
    segment_moves,
    snapshot_size,
    store_clv,
    write_snapshot,
)
from loyalty_engine.rules.compiled import CompiledProgram
from loyalty_engine.services.analytics_clv import member_clv
from loyalty_engine.services.programs import program_as_of
from loyalty_engine.store.unit_of_work import read_use_case, write_use_case

__all__ = ["SORTS", "MemberSummaries", "NoPurchasesError", "RfmReport", "RfmRow",
           "SnapshotCounts", "member_summaries", "rfm_grid", "rfm_scores", "take_snapshot"]


# The sort keys of member_summaries: each a key function and whether it runs highest first.
SORTS: dict[str, tuple[Callable[[MemberFigures], Any], bool]] = {
    "first": (lambda x: x.first_at, False),       # longest-standing first
    "last": (lambda x: x.last_at, True),          # most recent purchase first
    "purchases": (lambda x: x.purchases, True),
    "days": (lambda x: x.days, True),
    "spend": (lambda x: x.spend_minor, True),
    "tenure": (lambda x: x.tenure_days, True),
    "recency": (lambda x: x.recency_days, False),  # fewest days since the last first
}


@dataclass(frozen=True, slots=True)
class MemberSummaries:
    """The members of a program as of an instant (sorted, filtered, limited) and how many
    matched before the limit."""

    program_id: str
    currency: str
    as_of: datetime
    as_of_day: date
    sort: str
    segment: str | None
    total: int
    members: list[RfmRow]

    def as_json(self) -> dict[str, Any]:
        """The report as `loyalty analytics members --json` prints it."""
        return {"program": self.program_id, "currency": self.currency,
                "as_of": self.as_of.astimezone(UTC),
                "as_of_day": self.as_of_day.isoformat(), "sort": self.sort,
                "segment": self.segment, "total": self.total,
                "members": [row.as_json() for row in self.members]}


@dataclass(frozen=True, slots=True)
class RfmReport:
    """The R x F grid and segment mix of a program as of an instant, and how it scored."""

    program_id: str
    as_of: datetime
    as_of_day: date
    scoring: dict[str, str]  # measure -> "quintiles" | "fixed"
    grid: RfmGrid

    def as_json(self) -> dict[str, Any]:
        """The report as `loyalty analytics rfm --json` prints it."""
        return {"program": self.program_id, "as_of": self.as_of.astimezone(UTC),
                "as_of_day": self.as_of_day.isoformat(), "scoring": self.scoring,
                **self.grid.as_json()}


@dataclass(frozen=True, slots=True)
class SnapshotCounts:
    """What a snapshot did: the members in the date's snapshot, the rows written now (0
    when the date was already taken), and the segment_changed events recorded."""

    program_id: str
    run_date: date
    members: int
    written: int
    moved: int

    def as_json(self) -> dict[str, Any]:
        return {"run_date": self.run_date.isoformat(), "members": self.members,
                "written": self.written, "moved": self.moved}


def _program(conn: Connection, program_id: str, as_of: datetime,
             versions: list[VersionInForce] | None = None) -> CompiledProgram:
    """The program's version in force at as_of (the one given, if any); before its first
    version, the first (whose settings then say how its later purchases would count)."""
    if versions:
        return versions[0].program
    return program_as_of(conn, program_id, as_of)


def _since(program: CompiledProgram, as_of: datetime) -> datetime | None:
    """The start of the RFM window (window_months back from the as-of day), if any."""
    months = program.insights.rfm.window_months
    if months is None:
        return None
    return start_of_day(add_months(local_day(program, as_of), -months),
                        program.timezone)


def _scores(conn: Connection, program: CompiledProgram, as_of: datetime,
            points: bool) -> dict[str, RfmRow]:
    figures = member_figures(conn, program, as_of, _since(program, as_of), points=points)
    return score_members(figures, program.insights.rfm, program.insights.segments)


def _require_purchases(scores: dict[str, RfmRow], program: CompiledProgram,
                       as_of: datetime) -> None:
    if not scores:
        shown = as_of.astimezone(program.timezone).isoformat()
        raise NoPurchasesError(f"program {program.program_id!r} has no purchases by {shown}; "
                               "ask as of a later instant")


@read_use_case
def rfm_scores(conn: Connection, program_id: str, as_of: datetime, *,
               points: bool = True) -> dict[str, RfmRow]:
    """Every purchasing member's figures, R, F and M scores and segment as of an instant,
    by member id (empty before the first purchase). points=False leaves the ledger unread
    (the figures' points are then 0): for a caller that needs only the scores."""
    return _scores(conn, _program(conn, program_id, as_of), as_of, points=points)


@read_use_case
def member_summaries(conn: Connection, program_id: str, as_of: datetime, sort: str = "spend",
                     segment: str | None = None, limit: int | None = None
                     ) -> MemberSummaries:
    """The program's purchasing members as of an instant with their figures and segment
    (computed as of then, from the scores), sorted (SORTS; ties by member id), of one
    segment when given, at most limit of them."""
    if sort not in SORTS:
        raise NotFoundError(f"there is no sort {sort!r}; sort by one of {', '.join(SORTS)}")
    program = _program(conn, program_id, as_of)
    if segment is not None and segment not in program.insights.segments.names:
        raise NotFoundError(f"program {program_id!r} has no segment {segment!r} (segments: "
                            f"{', '.join(program.insights.segments.names)})")
    scores = _scores(conn, program, as_of, points=True)
    _require_purchases(scores, program, as_of)
    rows = [row for row in scores.values() if segment is None or row.segment == segment]
    key, highest_first = SORTS[sort]
    rows.sort(key=lambda row: row.figures.member_id)
    rows.sort(key=lambda row: key(row.figures), reverse=highest_first)
    return MemberSummaries(program_id, program.currency, as_of,
                           local_day(program, as_of), sort, segment, len(rows),
                           rows if limit is None else rows[:limit])


@read_use_case
def rfm_grid(conn: Connection, program_id: str, as_of: datetime) -> RfmReport:
    """How many members are in each R x F cell and each segment as of an instant."""
    program = _program(conn, program_id, as_of)
    scores = _scores(conn, program, as_of, points=False)
    _require_purchases(scores, program, as_of)
    settings = program.insights.rfm
    scoring = {measure: "quintiles" if cuts is None else "fixed" for measure, cuts in (
        ("recency", settings.recency_days), ("frequency", settings.frequency),
        ("monetary", settings.monetary_minor))}
    return RfmReport(program_id, as_of, local_day(program, as_of), scoring,
                     grid_of(list(scores.values()), program.insights.segments))


@write_use_case
def take_snapshot(conn: Connection, program_id: str, as_of: datetime, run_date: date,
                  now: datetime | None = None,
                  versions: list[VersionInForce] | None = None,
                  with_clv: bool = True) -> SnapshotCounts:
    """Store every purchasing member's scores and segment as of an instant under run_date,
    once: when the program has a snapshot of that date already, nothing is written (a
    second run of the same date, whatever it would find now, changes nothing). For each
    member whose segment differs from their previous snapshot's (the latest before
    run_date), a segment_changed event under `segment_changed:<program>:<member>:
    <run_date>`; a member's first snapshot is no move.
    Each row also gets the member's CLV and P(alive) from the CLV model fitted as of then
    (services/analytics_clv.member_clv; P(alive) empty under the simple retention model),
    unless with_clv is False (the benchmark times the RFM part alone).
    versions: the version to score with (the scheduler's choice), else the one in force."""
    taken = snapshot_size(conn, program_id, run_date)
    if taken:
        return SnapshotCounts(program_id, run_date, taken, 0, 0)
    program = _program(conn, program_id, as_of, versions)
    recorded = now or as_of
    written = write_snapshot(conn, program, as_of, run_date, recorded, _since(program, as_of))
    if with_clv and written:
        values = member_clv(conn, program_id, as_of)
        store_clv(conn, program_id, run_date,
                  [(member, figures.clv_minor, figures.p_alive)
                   for member, figures in sorted(values.items())])
    moves = [Event(f"segment_changed:{program_id}:{member}:{run_date}", "segment_changed",
                   member, program_id, as_of,
                   {"program": program_id, "from": before, "to": after,
                    "as_of": run_date.isoformat(), "r": r, "f": f, "m": m})
             for member, before, after, r, f, m in segment_moves(conn, program_id, run_date)]
    moved = record_events(conn, moves, recorded)
    return SnapshotCounts(program_id, run_date, written, written, moved)

