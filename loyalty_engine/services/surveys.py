"""Attitudinal answers: a member's NPS score (0-10) or commitment score (1-7), dated; the
latest of each kind is the member's attitude in the loyalty matrix.

An answer is a fact at an instant: (member, kind, answered_at) names it. The same answer
again (in a file, twice in one file, or posted) is one answer; the same key with another
score is refused, in a file as a line's error and over HTTP as a conflict, since an answer
cannot be changed by sending it again. A file import is all-or-nothing, every problem
reported as `file:line: message` before anything is written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from sqlalchemy import Connection

from loyalty_engine.analytics.loyalty_matrix import SCORE_RANGES, check_score
from loyalty_engine.domain.errors import LoyaltyError
from loyalty_engine.domain.events import MAX_AHEAD, Identifier, Instant, describe_errors
from loyalty_engine.records.memberships import refuse_erased
from loyalty_engine.records.surveys import (
    AnswerKey,
    insert_answers,
    stored_answer,
    stored_scores,
)
from loyalty_engine.records.wallet import known_members
from loyalty_engine.services.importing import (
    SOURCE_LENGTH,
    LineError,
    csv_file_rows,
    member_problem,
    source_of,
)
from loyalty_engine.services.members import MemberNotFoundError
from loyalty_engine.store.locks import lock_member
from loyalty_engine.store.unit_of_work import write_use_case

SURVEY_COLUMNS = ("member_id", "kind", "score", "answered_at")
_INTEGER = re.compile(r"-?[0-9]{1,6}", re.ASCII)
Key = AnswerKey


def score_in_kind_range(value: int, info: ValidationInfo) -> int:
    """A pydantic validator of an answer's `score`, after its `kind`: the score in the
    kind's range (analytics/loyalty_matrix.SCORE_RANGES). A kind that failed its own check
    is reported there alone."""
    kind = info.data.get("kind")
    if kind in SCORE_RANGES:
        check_score(kind, value)
    return value


class SurveyConflictError(LoyaltyError):
    """An answer already recorded for the same member, kind and instant with another
    score."""


class SurveyRejectedError(LoyaltyError):
    """An answer that cannot be recorded as given (dated in the future)."""

    field = "answered_at"


class SurveyAnswer(BaseModel):
    """One answer, checked: the kind, a score in its range, an instant with an offset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: Identifier
    kind: Literal["nps", "commitment"]
    score: int
    answered_at: Instant

    @field_validator("score", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not _INTEGER.fullmatch(value.strip()):
                raise ValueError(f"must be a whole number, not {value!r}")
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be a whole number")
        return value

    _in_range = field_validator("score")(score_in_kind_range)

    def key(self) -> Key:
        """The answer's natural key (its instant in UTC)."""
        return (self.member_id, self.kind, self.answered_at.astimezone(UTC))


def _ahead(answered_at: datetime, now: datetime) -> str | None:
    if answered_at > now + MAX_AHEAD:
        return (f"answered_at: {answered_at.isoformat()} is in the future (now is "
                f"{now.isoformat(timespec='seconds')}); check the date and its offset")
    return None


def _conflict(key: Key, stored: int, given: int) -> str:
    article = "an" if key[1] == "nps" else "a"
    return (f"member {key[0]!r} already has {article} {key[1]} answer at "
            f"{key[2].isoformat()} with score {stored}, not {given}; an answer cannot be "
            "changed by sending it again")


@dataclass(slots=True)
class SurveyImportReport:
    """What a survey import did; nothing was written when committed is False."""

    path: str
    read: int = 0
    recorded: int = 0
    already: int = 0  # answers already stored, or given twice in the file
    errors: list[LineError] = field(default_factory=list)
    committed: bool = False

    def as_json(self) -> dict[str, Any]:
        """The report as the CLI's --json prints it."""
        return {"file": self.path, "read": self.read, "recorded": self.recorded,
                "already_recorded": self.already, "committed": self.committed,
                "errors": [{"line": e.line, "reason": e.reason} for e in self.errors]}


@write_use_case
def import_surveys(conn: Connection, path: Path, now: datetime) -> SurveyImportReport:
    """Import a survey file (CSV: member_id,kind,score,answered_at) in the caller's
    transaction, all or nothing (see the module docstring). Unknown or erased members,
    unknown kinds, scores out of range (nps 0-10, commitment 1-7), instants without an
    offset or in the future are each a line's error."""
    report = SurveyImportReport(path=str(path))
    answers: list[tuple[int, SurveyAnswer]] = []
    in_file: dict[Key, tuple[int, int]] = {}
    for line, record in csv_file_rows(path, SURVEY_COLUMNS, "survey answers"):
        report.read += 1
        if isinstance(record, str):
            report.errors.append(LineError(line, record))
            continue
        try:
            answer = SurveyAnswer.model_validate(record)
        except ValidationError as exc:
            report.errors.append(LineError(line, "; ".join(describe_errors(exc))))
            continue
        problem = _ahead(answer.answered_at, now)
        if problem is not None:
            report.errors.append(LineError(line, problem))
            continue
        earlier = in_file.get(answer.key())
        if earlier is not None:
            if earlier[1] != answer.score:
                report.errors.append(LineError(line, f"line {earlier[0]} gives the same "
                                               f"answer (member, kind, answered_at) with "
                                               f"score {earlier[1]}, not {answer.score}"))
            else:
                report.already += 1
            continue
        in_file[answer.key()] = (line, answer.score)
        answers.append((line, answer))
    members = {a.member_id for _, a in answers}
    known = known_members(conn, members)
    stored = stored_scores(conn, members)
    rows = []
    for line, answer in answers:
        problem = member_problem(answer.member_id, known)
        if problem is not None:
            report.errors.append(LineError(line, problem))
            continue
        held = stored.get(answer.key())
        if held is not None and held != answer.score:
            report.errors.append(LineError(line, _conflict(answer.key(), held, answer.score)))
        elif held is not None:
            report.already += 1
        else:
            rows.append(_row(answer, source_of(path), now))
    report.errors.sort(key=lambda e: e.line)
    if report.errors:
        report.already = 0
        return report
    start = conn.begin_nested()
    try:
        report.recorded = len(insert_answers(conn, rows))
    except BaseException:
        start.rollback()
        raise
    start.commit()
    report.already += len(rows) - report.recorded  # stored meanwhile by another writer
    report.committed = True
    return report


def _row(answer: SurveyAnswer, source: str, now: datetime) -> dict[str, Any]:
    return {"member_id": answer.member_id, "kind": answer.kind, "score": answer.score,
            "answered_at": answer.answered_at, "source": source[:SOURCE_LENGTH],
            "recorded_at": now}


@dataclass(frozen=True, slots=True)
class SurveyOutcome:
    """An answer recorded (or found already recorded)."""

    id: int
    member_id: str
    kind: str
    score: int
    answered_at: datetime
    source: str
    replayed: bool

    def as_json(self) -> dict[str, Any]:
        """The answer as the API returns it."""
        return {"id": self.id, "member_id": self.member_id, "kind": self.kind,
                "score": self.score, "answered_at": self.answered_at.astimezone(UTC),
                "source": self.source, "replayed": self.replayed}


@write_use_case
def record_survey(conn: Connection, answer: SurveyAnswer, source: str,
                  now: datetime) -> SurveyOutcome:
    """Record one answer (the member's row locked first, as every member write does): a new
    one, or the same one again (replayed). MemberNotFoundError for an unknown member,
    MemberErasedError for an erased one, SurveyConflictError for the same key with another
    score, SurveyRejectedError for an answer dated in the future."""
    problem = _ahead(answer.answered_at, now)
    if problem is not None:
        raise SurveyRejectedError(problem)
    if not lock_member(conn, answer.member_id):
        raise MemberNotFoundError(answer.member_id)
    refuse_erased(conn, answer.member_id)
    inserted = insert_answers(conn, [_row(answer, source, now)])
    if inserted:
        row = inserted[0]
        return SurveyOutcome(row.id, row.member_id, row.kind, row.score, row.answered_at,
                             row.source, False)
    held = stored_answer(conn, answer.key())
    if held.score != answer.score:
        raise SurveyConflictError(_conflict(answer.key(), held.score, answer.score))
    return SurveyOutcome(held.id, held.member_id, held.kind, held.score, held.answered_at,
                         held.source, True)
