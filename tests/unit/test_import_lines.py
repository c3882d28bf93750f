"""Reading purchase files line by line with a bound: a line over MAX_LINE_BYTES is refused
by its number without ever being held whole."""

from __future__ import annotations

import io

from loyalty_engine.services import importing
from loyalty_engine.services.importing import MAX_LINE_BYTES


class _Watched(io.BytesIO):
    """Remembers the largest piece asked for at once."""

    largest = 0

    def readline(self, size: int | None = -1) -> bytes:
        line = super().readline(size)
        self.largest = max(self.largest, len(line))
        return line


def test_a_long_line_is_skipped_in_bounded_pieces_and_numbered() -> None:
    data = b'{"a": 1}\n' + b"x" * (3 * MAX_LINE_BYTES + 7) + b"\n\n" + b'{"b": 2}\n'
    stream = _Watched(data)
    records = list(importing._jsonl_records(stream))  # type: ignore[arg-type]
    assert [(kind, line) for kind, line, _, _ in records] == [
        ("json", 1), ("error", 2), ("json", 4)]
    assert records[1][3].startswith("the line is longer than 1,048,576 bytes (1 MiB)")
    assert len(records[1][2]) <= 80  # only a glimpse is kept, for the rejects file
    assert stream.largest <= MAX_LINE_BYTES + 1


def test_a_line_of_exactly_the_limit_is_read() -> None:
    line = b"y" * (MAX_LINE_BYTES - 1) + b"\n"
    records = list(importing._jsonl_records(io.BytesIO(line + b"z\n")))  # type: ignore[arg-type]
    assert [(kind, n) for kind, n, _, _ in records] == [("json", 1), ("json", 2)]


def test_a_long_last_line_without_a_newline_is_refused() -> None:
    records = list(importing._jsonl_records(
        io.BytesIO(b"q" * (MAX_LINE_BYTES + 1))))  # type: ignore[arg-type]
    assert [(kind, n) for kind, n, _, _ in records] == [("error", 1)]
