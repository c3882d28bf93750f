"""Segment maps: named ranges of R, F and M scores (1-5) and the segment of a score triple;
the shipped default map of eleven segments over recency and frequency."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SCORES = range(1, 6)


@dataclass(frozen=True, slots=True)
class ScoreRange:
    """One box of a segment: inclusive score ranges; (1, 5) is any score."""

    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    def holds(self, r: int, f: int, m: int) -> bool:
        """Whether the scores fall in the box."""
        return (self.r[0] <= r <= self.r[1] and self.f[0] <= f <= self.f[1]
                and self.m[0] <= m <= self.m[1])

    def cells(self) -> Iterator[tuple[int, int, int]]:
        """Every (r, f, m) in the box."""
        for r in range(self.r[0], self.r[1] + 1):
            for f in range(self.f[0], self.f[1] + 1):
                for m in range(self.m[0], self.m[1] + 1):
                    yield r, f, m


@dataclass(frozen=True, slots=True)
class SegmentMap:
    """Segments in the order declared, each one or more boxes; a valid map puts every one
    of the 125 cells in exactly one segment (checked where the map is loaded)."""

    segments: tuple[tuple[str, tuple[ScoreRange, ...]], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The segments' names, in the map's order."""
        return tuple(name for name, _ in self.segments)

    def segment_of(self, r: int, f: int, m: int) -> str:
        """The segment of a score triple (the first that holds it; '' if none does)."""
        for name, boxes in self.segments:
            if any(box.holds(r, f, m) for box in boxes):
                return name
        return ""


def _box(r: tuple[int, int], f: tuple[int, int]) -> ScoreRange:
    return ScoreRange(r=r, f=f)


# The common R x F grid (monetary value left free): recent and frequent members are
# champions, frequent ones who stopped coming are can't-lose or at-risk, and so on.
DEFAULT_SEGMENTS = SegmentMap((
    ("champions", (_box((5, 5), (4, 5)),)),
    ("loyal", (_box((3, 4), (4, 5)),)),
    ("potential_loyalists", (_box((4, 5), (2, 3)),)),
    ("new", (_box((5, 5), (1, 1)),)),
    ("promising", (_box((4, 4), (1, 1)),)),
    ("need_attention", (_box((3, 3), (3, 3)),)),
    ("about_to_sleep", (_box((3, 3), (1, 2)),)),
    ("at_risk", (_box((1, 2), (3, 4)),)),
    ("cant_lose", (_box((1, 2), (5, 5)),)),
    ("hibernating", (_box((2, 2), (1, 2)), _box((1, 1), (2, 2)))),
    ("lost", (_box((1, 1), (1, 1)),)),
))
