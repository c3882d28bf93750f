"""Members' survey answers read and written (services/surveys.py, the loyalty matrix in
services/wallet.py), on the caller's Connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, select

from loyalty_engine.analytics.loyalty_matrix import Answer
from loyalty_engine.store import tables
from loyalty_engine.store.bulk import IN_CHUNK, chunked, insert_if_absent

_surveys = tables.member_surveys
AnswerKey = tuple[str, str, datetime]  # member, kind, answered_at (UTC)


def stored_scores(conn: Connection, member_ids: set[str]) -> dict[AnswerKey, int]:
    """The answers held for these members: key -> score."""
    found: dict[AnswerKey, int] = {}
    for part in chunked(sorted(member_ids), IN_CHUNK):
        for member_id, kind, answered_at, score in conn.execute(
                select(_surveys.c.member_id, _surveys.c.kind, _surveys.c.answered_at,
                       _surveys.c.score).where(_surveys.c.member_id.in_(part))):
            found[(member_id, kind, answered_at.astimezone(UTC))] = int(score)
    return found


def insert_answers(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """The answers not held yet inserted (insert-if-absent on member, kind and
    answered_at); the rows inserted."""
    inserted: list[Any] = []
    for part in chunked(list(rows), 1000):
        inserted += insert_if_absent(conn, _surveys, list(part),
                                     ("member_id", "kind", "answered_at"))
    return inserted


def stored_answer(conn: Connection, key: AnswerKey) -> Any:
    """The answer held under a key (it must be there)."""
    member_id, kind, at = key
    return conn.execute(select(_surveys).where(
        _surveys.c.member_id == member_id, _surveys.c.kind == kind,
        _surveys.c.answered_at == at)).one()


def answers_by(conn: Connection, members: Select[Any], as_of: datetime
               ) -> list[Answer]:
    """Every answer given by as_of of the members the query selects."""
    return [Answer(r.member_id, r.kind, int(r.score), r.answered_at) for r in conn.execute(
        select(_surveys.c.member_id, _surveys.c.kind, _surveys.c.score,
               _surveys.c.answered_at)
        .where(_surveys.c.member_id.in_(members), _surveys.c.answered_at <= as_of))]
