"""Which program version is in force at an instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from loyalty_engine.engine import version_in_force

JAN = datetime(2026, 1, 1, tzinfo=UTC)
MAR = datetime(2026, 3, 1, tzinfo=UTC)
JUN = datetime(2026, 6, 1, tzinfo=UTC)
FROMS = [JAN, MAR, JUN]
VERSIONS = ["v1", "v2", "v3"]
TICK = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (JAN - timedelta(days=365), None),
        (JAN - TICK, None),
        (JAN, "v1"),
        (JAN + TICK, "v1"),
        (datetime(2026, 2, 14, 12, tzinfo=UTC), "v1"),
        (MAR - TICK, "v1"),
        (MAR, "v2"),
        (datetime(2026, 4, 1, tzinfo=UTC), "v2"),
        (JUN - TICK, "v2"),
        (JUN, "v3"),
        (datetime(2030, 1, 1, tzinfo=UTC), "v3"),
    ],
)
def test_version_in_force(at: datetime, expected: str | None) -> None:
    assert version_in_force(FROMS, VERSIONS, at) == expected


def test_instants_compare_across_offsets() -> None:
    amsterdam = timezone(timedelta(hours=1))
    # 01:00 in Amsterdam (winter) on 1 March is exactly MAR in UTC.
    assert version_in_force(FROMS, VERSIONS, datetime(2026, 3, 1, 1, tzinfo=amsterdam)) == "v2"
    # 00:59:59 in Amsterdam is still February in UTC.
    assert version_in_force(
        FROMS, VERSIONS, datetime(2026, 3, 1, 0, 59, 59, tzinfo=amsterdam)
    ) == "v1"


def test_no_versions_means_nothing_in_force() -> None:
    assert version_in_force([], [], MAR) is None


def test_single_version() -> None:
    assert version_in_force([MAR], ["only"], MAR - TICK) is None
    assert version_in_force([MAR], ["only"], MAR) == "only"
    assert version_in_force([MAR], ["only"], JUN) == "only"
