"""The loyalty matrix, pure (analytics/loyalty_matrix.py), on a table worked by hand.

Default thresholds: F >= 4 behavioural; NPS >= 9 or commitment >= 5 attitudinal.

| member | F | NPS | commitment | behaviour | attitude | type |
|---|---|---|---|---|---|---|
| m1 | 5 | 10 | | yes | yes | true |
| m2 | 2 | 9 | | no | yes | latent |
| m3 | 4 | 6 | | yes | no | spurious |
| m4 | 1 | | 3 | no | no | none |
| m5 | 3 | 8 | 5 | no | yes (commitment) | latent |
| m6 | 5 | | | yes | unknown | unknown |
| m7 | 0 | | | no | unknown | unknown |

Counts: true 1, latent 2, spurious 1, none 1; unknown 2 (1 behaving, 1 not); in a cell 5.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest

from loyalty_engine.analytics.loyalty_matrix import (
    Answer,
    MatrixCounts,
    attitudinally_loyal,
    behaviourally_loyal,
    check_score,
    classify,
    count,
    latest_answers,
    loyalty_type,
)
from loyalty_engine.rules.compiled_insights import MatrixThresholds

DEFAULT = MatrixThresholds()
TABLE = [
    ("m1", 5, 10, None, "true"),
    ("m2", 2, 9, None, "latent"),
    ("m3", 4, 6, None, "spurious"),
    ("m4", 1, None, 3, "none"),
    ("m5", 3, 8, 5, "latent"),
    ("m6", 5, None, None, "unknown"),
    ("m7", 0, None, None, "unknown"),
]


def test_each_member_in_its_cell() -> None:
    got = [(m, classify(m, f, None, nps, c, DEFAULT).type) for m, f, nps, c, _ in TABLE]
    assert got == [(m, t) for m, *_, t in TABLE]


def test_the_counts() -> None:
    members = [classify(m, f, None, nps, c, DEFAULT) for m, f, nps, c, _ in TABLE]
    counts = count(members)
    assert counts == MatrixCounts(true=1, latent=2, spurious=1, none=1,
                                  unknown_behavioural=1, unknown_not_behavioural=1)
    assert (counts.known, counts.unknown) == (5, 2)
    assert counts.share("latent") == Fraction(2, 5)
    assert count([]).share("true") is None


def test_the_four_cells() -> None:
    assert [loyalty_type(b, a) for b, a in
            ((True, True), (False, True), (True, False), (False, False), (True, None))] == [
        "true", "latent", "spurious", "none", "unknown"]


def test_thresholds_are_at_least() -> None:
    assert behaviourally_loyal(4, None, DEFAULT) and not behaviourally_loyal(3, None, DEFAULT)
    assert attitudinally_loyal(9, None, DEFAULT) and not attitudinally_loyal(8, None, DEFAULT)
    assert attitudinally_loyal(None, 5, DEFAULT)
    assert attitudinally_loyal(None, 4, DEFAULT) is False
    assert attitudinally_loyal(None, None, DEFAULT) is None


def test_share_of_wallet_counts_as_behaviour_only_when_the_program_sets_it() -> None:
    half = MatrixThresholds(wallet_share_at_least=Fraction(1, 2))
    # F 2 is below 4 either way; a share of 3/5 is behaviour only under `half`.
    assert classify("w", 2, Fraction(3, 5), 9, None, DEFAULT).type == "latent"
    assert classify("w", 2, Fraction(3, 5), 9, None, half).type == "true"
    assert classify("w", 2, Fraction(1, 2), 3, None, half).type == "spurious"  # at the line
    assert classify("w", 2, Fraction(49, 100), 3, None, half).type == "none"
    assert classify("w", 2, None, 3, None, half).type == "none"  # no wallet known
    assert classify("w", 5, Fraction(0), 3, None, half).type == "spurious"  # F alone


def test_thresholds_from_the_program() -> None:
    strict = MatrixThresholds(f_at_least=5, nps_at_least=10, commitment_at_least=7)
    assert classify("s", 4, None, 9, 6, strict).type == "none"
    assert classify("s", 5, None, 10, None, strict).type == "true"


def test_the_latest_answer_of_each_kind_by_the_as_of_instant() -> None:
    at = [datetime(2026, month, 1, tzinfo=UTC) for month in range(1, 7)]
    answers = [
        Answer("m1", "nps", 4, at[0]), Answer("m1", "nps", 10, at[2]),
        Answer("m1", "nps", 2, at[4]),  # after as_of
        Answer("m1", "commitment", 6, at[1]),
        Answer("m2", "nps", 7, at[3]),  # as_of itself counts
        Answer("m3", "commitment", 1, at[5]),  # only after as_of: no answer
    ]
    assert latest_answers(answers, at[3]) == {"m1": {"nps": 10, "commitment": 6},
                                              "m2": {"nps": 7}}


@pytest.mark.parametrize(("kind", "score", "ok"), [
    ("nps", 0, True), ("nps", 10, True), ("nps", 11, False), ("nps", -1, False),
    ("commitment", 1, True), ("commitment", 7, True), ("commitment", 0, False),
    ("commitment", 8, False), ("csat", 3, False),
])
def test_score_ranges(kind: str, score: int, ok: bool) -> None:
    if ok:
        check_score(kind, score)
    else:
        with pytest.raises(ValueError):
            check_score(kind, score)
