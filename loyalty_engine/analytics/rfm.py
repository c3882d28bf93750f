"""RFM scores: recency, frequency and monetary value scored 1-5 over a program's purchasing
members, by quintiles or by the program's fixed boundaries, and the segment a score triple
falls in; the R x F grid of a set of scores.

Quintiles, and ties. The members are ranked by the value, ascending (recency: by days since
the last purchase, descending, so that fewer days score higher). A member's position p
(0-based) among n members scores floor(5 p / n) + 1, and members with equal values all take
the score of the first position their value holds: equal values always score the same,
whatever the members' ids or the order they were read in, and a tie is resolved towards the
lower score. With distinct values each score holds floor(n / 5) or ceil(n / 5) members.

Fixed boundaries (RfmSettings): four ascending cut points per measure. Frequency and
monetary value score 1 + the number of cuts strictly below the value (at or below the first
cut: 1; above the fourth: 5); recency in days scores 5 - that number (at or below the first
cut: 5; above the fourth: 1). A measure without cuts is scored by quintiles."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from loyalty_engine.analytics.figures import MemberFigures
from loyalty_engine.analytics.segments import SCORES, SegmentMap
from loyalty_engine.rules.compiled_insights import RfmSettings

QUINTILES = 5


@dataclass(frozen=True, slots=True)
class RfmRow:
    """A member's figures, their R, F and M scores (1-5) and the segment of those."""

    figures: MemberFigures
    r: int
    f: int
    m: int
    segment: str

    def as_json(self) -> dict[str, object]:
        """The figures with the scores and the segment."""
        return {**self.figures.as_json(), "r": self.r, "f": self.f, "m": self.m,
                "segment": self.segment}


def quintile_scores(values: Sequence[int | float]) -> list[int]:
    """Scores 1-5 of values, higher for a higher value, in the values' order: position p of
    n in ascending order scores floor(5 p / n) + 1; equal values share the score of their
    first position."""
    n = len(values)
    order = sorted(range(n), key=values.__getitem__)
    scores = [0] * n
    first = 0
    for position, index in enumerate(order):
        if position and values[index] != values[order[position - 1]]:
            first = position
        scores[index] = QUINTILES * first // n + 1
    return scores


def fixed_scores(values: Sequence[int], cuts: Sequence[int]) -> list[int]:
    """Scores 1-5 against four ascending cut points: 1 + the cuts strictly below the value."""
    return [1 + bisect_left(cuts, v) for v in values]


def recency_scores(days: Sequence[int], cuts: Sequence[int] | None = None) -> list[int]:
    """Scores 1-5 of days since the last purchase: fewer days score higher. By quintiles
    of the negated days (the same tie rule), or 5 - the cuts strictly below the days."""
    if cuts is not None:
        return [QUINTILES - bisect_left(cuts, d) for d in days]
    return quintile_scores([-d for d in days])


def scores(recency_days: Sequence[int], frequency: Sequence[int],
           monetary_minor: Sequence[int], settings: RfmSettings
           ) -> tuple[list[int], list[int], list[int]]:
    """R, F and M scores of members given as three parallel sequences: each measure by its
    fixed boundaries when the settings give them, else by quintiles."""
    r = recency_scores(recency_days, settings.recency_days)
    f = (fixed_scores(frequency, settings.frequency) if settings.frequency is not None
         else quintile_scores(frequency))
    m = (fixed_scores(monetary_minor, settings.monetary_minor)
         if settings.monetary_minor is not None else quintile_scores(monetary_minor))
    return r, f, m


def segment_table(segments: SegmentMap) -> dict[tuple[int, int, int], str]:
    """The segment of every one of the 125 score triples, looked up once."""
    return {(r, f, m): segments.segment_of(r, f, m)
            for r in SCORES for f in SCORES for m in SCORES}


def score_members(figures: Sequence[MemberFigures], settings: RfmSettings,
                  segments: SegmentMap) -> dict[str, RfmRow]:
    """Every member's scores and segment, by member id (members with at least one
    purchase: those the figures hold): recency = recency_days, frequency = purchases,
    monetary = spend_minor."""
    r, f, m = scores([x.recency_days for x in figures], [x.purchases for x in figures],
                     [x.spend_minor for x in figures], settings)
    table = segment_table(segments)
    return {x.member_id: RfmRow(x, r[i], f[i], m[i], table[(r[i], f[i], m[i])])
            for i, x in enumerate(figures)}


@dataclass(frozen=True, slots=True)
class RfmGrid:
    """How many members are in each R x F cell and in each segment (in the map's order,
    every segment listed, empty ones at 0)."""

    cells: dict[tuple[int, int], int]
    segments: dict[str, int]
    members: int

    def as_json(self) -> dict[str, object]:
        """The grid as rows of R (5 first) with counts by F (1 to 5), and the segments."""
        return {
            "members": self.members,
            "grid": [{"r": r, "counts": [self.cells.get((r, f), 0) for f in SCORES]}
                     for r in reversed(SCORES)],
            "segments": [{"segment": name, "members": count,
                          "share": round(count / self.members, 4) if self.members else 0.0}
                         for name, count in self.segments.items()],
        }


def grid_of(rows: Sequence[RfmRow], segments: SegmentMap) -> RfmGrid:
    """The R x F counts and the segment mix of scored members."""
    cells = Counter((row.r, row.f) for row in rows)
    mix = Counter(row.segment for row in rows)
    names = list(segments.names) + sorted(set(mix) - set(segments.names))
    return RfmGrid({cell: cells.get(cell, 0) for r in SCORES for cell in
                    ((r, f) for f in SCORES)}, {name: mix.get(name, 0) for name in names},
                   len(rows))
