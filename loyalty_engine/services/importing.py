"""Bulk import of purchase files (JSON Lines or CSV): streamed, batched, all-or-nothing.

The file is read once, in batches; each batch is validated and written with set-based SQL
inside one transaction. JSON Lines files may hold refunds too (`"type": "refund"`); each is
applied after the purchases before it, so a file can refund its own purchases. By default
any bad line rolls the whole import back after every problem has been reported; with
skip_invalid the good records are kept and the rejects are written, with their reasons,
to a JSON Lines file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pydantic import ValidationError
from sqlalchemy import Connection, text

from loyalty_engine.domain.errors import (
    ImportFileError,
    RefundConflictError,
    RefundPurchaseMissingError,
    RefundRejectedError,
)
from loyalty_engine.domain.events import PurchaseEvent, describe_errors
from loyalty_engine.domain.purchases import Purchase
from loyalty_engine.domain.refunds import RefundEvent
from loyalty_engine.engine.catalog import ProgramCatalog
from loyalty_engine.records.purchase_writer import PurchaseWriter, Rejection
from loyalty_engine.services.programs import load_catalog
from loyalty_engine.services.refunds import apply_refund
from loyalty_engine.store.unit_of_work import write_use_case

Format = Literal["jsonl", "csv"]
CSV_COLUMNS = (
    "transaction_id", "store_id", "member_id", "occurred_at", "currency", "total",
    "sku", "category", "quantity", "unit_price",
)
# Optional columns: how the purchase was paid and where (domain.events TENDERS, CHANNELS).
OPTIONAL_CSV_COLUMNS = ("tender", "channel")
_PURCHASE_COLUMNS = (*CSV_COLUMNS[:6], *OPTIONAL_CSV_COLUMNS)
BATCH_SIZE = 2000
# The longest line (a JSON Lines record, a CSV row) read; longer ones are refused unparsed,
# read in pieces of this size so that memory stays bounded (a 74 MB line reached 1.5 GB).
# A purchase of the most lines allowed (1,000) is about 150 KB as JSON.
MAX_LINE_BYTES = 1 << 20
# The longest `source` a row imported from a file keeps (wallet totals, survey answers).
SOURCE_LENGTH = 200

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class LineError:
    """A rejected record: the line it starts on and why."""

    line: int
    reason: str
    record: Any = None


@dataclass(slots=True)
class ImportReport:
    """What an import did; nothing was stored when committed is False."""

    path: str
    read: int = 0
    recorded: int = 0
    replayed: int = 0
    # Points per program: two programs' points are never added together.
    points: dict[str, int] = field(default_factory=dict)
    refunds_read: int = 0
    refunds: int = 0
    refunds_replayed: int = 0
    points_refunded: dict[str, int] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    committed: bool = False
    rejects_path: str | None = None


class _Counting(io.RawIOBase):
    """A binary reader that counts the bytes read through it, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


def detect_format(path: Path) -> Format:
    """The format from the file name: .jsonl/.ndjson/.json are JSON Lines, .csv is CSV."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ImportFileError(
        f"{path}: cannot tell the format from the name; use a .jsonl or .csv file or --format"
    )


@write_use_case
def import_purchases(
    conn: Connection,
    path: Path,
    now: datetime,
    fmt: Format | None = None,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import a purchase file inside the caller's transaction; see the module docstring for
    the all-or-nothing rule (a failed import rolls back what it wrote, to a savepoint taken
    at its start, and leaves the rest of the caller's transaction as it was)."""
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; import one purchase file (.jsonl or "
                              ".csv) at a time")
    fmt = fmt or detect_format(path)
    report = ImportReport(path=str(path))
    rejects_target = rejects_path or path.with_name(path.name + ".rejects.jsonl")
    if skip_invalid and rejects_target.resolve() == path.resolve():
        raise ImportFileError(f"the rejects file {rejects_target} would overwrite the input")
    if skip_invalid and not rejects_target.parent.is_dir():
        raise ImportFileError(
            f"cannot write rejects to {rejects_target}: the folder {rejects_target.parent} "
            "does not exist"
        )
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read: {exc.strerror}") from None
    total_bytes = path.stat().st_size
    with handle:
        serialize_imports(conn)
        # What an all-or-nothing import that failed rolls back to.
        start = conn.begin_nested()
        counting = _Counting(handle)
        buffered = io.BufferedReader(counting, buffer_size=1 << 20)
        records = _jsonl_records(buffered) if fmt == "jsonl" else _csv_records(buffered, path)
        catalog = load_catalog(conn)
        writer = PurchaseWriter(conn, catalog, now, defer_balances=True)
        for chunk in _chunks(records, batch_size):
            prepared = prepare_chunk(chunk)
            raw_by_line = {r[1]: _as_text(r[2]) for r in chunk} if skip_invalid else {}
            purchases: list[tuple[int, Purchase]] = []
            for line, item in prepared:
                report.read += 1
                if isinstance(item, str):
                    if isinstance(item, _RefundLineError):
                        report.refunds_read += 1
                    report.errors.append(LineError(line, item, raw_by_line.get(line)))
                elif isinstance(item, RefundEvent):
                    report.refunds_read += 1
                    _write_purchases(writer, purchases, report, raw_by_line, skip_invalid)
                    purchases = []
                    _apply_refund(conn, catalog, writer, item, line, now, report,
                                  raw_by_line, skip_invalid)
                else:
                    purchases.append((line, item))
            _write_purchases(writer, purchases, report, raw_by_line, skip_invalid)
            if progress is not None:
                progress(counting.count, total_bytes)
        if progress is not None:
            progress(counting.count, total_bytes)
        if report.read == 0:
            raise ImportFileError(f"{path}: the file is empty; expected purchase records")
        report.errors.sort(key=lambda e: e.line)
        if report.errors and not skip_invalid:
            start.rollback()
            report.recorded = report.replayed = report.refunds = report.refunds_replayed = 0
            report.points, report.points_refunded = {}, {}
            return report
        writer.flush_balances()
        if skip_invalid and report.errors:
            try:
                _write_rejects(rejects_target, path, report.errors)
            except OSError as exc:
                # Raised inside the transaction: nothing is imported without its rejects.
                raise ImportFileError(
                    f"cannot write rejects to {rejects_target}: {exc.strerror}"
                ) from None
            report.rejects_path = str(rejects_target)
        start.commit()
        report.committed = True
    return report


def _write_purchases(writer: PurchaseWriter, purchases: list[tuple[int, Purchase]],
                     report: ImportReport, raw_by_line: dict[int, Any],
                     skip_invalid: bool) -> None:
    if not purchases:
        return
    # Once an all-or-nothing import has failed, later batches are only checked.
    result = writer.write(purchases, check_only=bool(report.errors) and not skip_invalid)
    report.replayed += len(result.replays)
    report.recorded += len(result.recorded)
    for program_id, points in result.points_by_program.items():
        report.points[program_id] = report.points.get(program_id, 0) + points
    for rejection in result.rejections:
        line = rejection.ref
        report.errors.append(LineError(line, _rejection_text(rejection),
                                       raw_by_line.get(line)))


def _apply_refund(conn: Connection, catalog: ProgramCatalog, writer: PurchaseWriter,
                  event: RefundEvent, line: int, now: datetime, report: ImportReport,
                  raw_by_line: dict[int, Any], skip_invalid: bool) -> None:
    # Once an all-or-nothing import has failed, a refund is still tried (so that every
    # bad refund is reported at once) but rolled back straight away.
    dry_run = bool(report.errors) and not skip_invalid
    savepoint = conn.begin_nested()
    try:
        outcome = apply_refund(conn, catalog, event, now)
    except RefundPurchaseMissingError as exc:
        savepoint.rollback()
        if not (dry_run and writer.was_checked(event.purchase_key)):
            report.errors.append(LineError(line, str(exc), raw_by_line.get(line)))
        return  # else: its purchase is in this file but was only checked, not written
    except (RefundRejectedError, RefundConflictError) as exc:
        savepoint.rollback()  # a rejected refund leaves the rest of the import intact
        report.errors.append(LineError(line, str(exc), raw_by_line.get(line)))
        return
    if dry_run:
        savepoint.rollback()
        return
    savepoint.commit()
    if outcome.replayed:
        report.refunds_replayed += 1
    else:
        report.refunds += 1
        for program_id, points in outcome.points.items():
            report.points_refunded[program_id] = (report.points_refunded.get(program_id, 0)
                                                  + points)


class _RefundLineError(str):
    """A refund line that failed validation (counted as a refund read, not a purchase)."""

    __slots__ = ()


# A record as read from the file, before validation: (kind, first line, raw, extra).
#   ("json", line, bytes, None)            one JSON Lines record
#   ("csv", line, rows, item_lines)        the consecutive CSV rows of one transaction
#   ("error", line, row, message)          a record the reader already knows is bad
Record = tuple[str, int, Any, Any]
Prepared = tuple[int, "Purchase | RefundEvent | str"]


def _as_text(raw: Any) -> Any:
    """A record as the rejects file shows it: JSON Lines as text, CSV rows as they are."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def prepare_chunk(chunk: list[Record]) -> list[Prepared]:
    """Validate each record, in file order (pure: no database).

    Measured and rejected: doing this in a worker process. Sending the plans back costs
    about as much as making them, and writing is the larger half of the work.
    """
    prepared: list[Prepared] = []
    for kind, line, raw, extra in chunk:
        if kind == "error":
            prepared.append((line, str(extra)))
            continue
        try:
            if kind == "json" and _REFUND_MARK in raw and _is_refund(raw):
                try:
                    prepared.append((line, RefundEvent.model_validate_json(raw)))
                except ValidationError as exc:
                    prepared.append((line, _RefundLineError("; ".join(describe_errors(exc)))))
                continue
            if kind == "json":
                event = PurchaseEvent.model_validate_json(raw)
            else:
                event = PurchaseEvent.model_validate(_csv_body(raw))
        except ValidationError as exc:
            lines = extra if kind == "csv" else None
            prepared.append((line, "; ".join(describe_errors(exc, lines))))
            continue
        prepared.append((line, event.to_purchase()))
    return prepared


_REFUND_MARK = b'"refund"'


def _is_refund(raw: bytes) -> bool:
    """Whether a JSON line is a refund (decoded only when it mentions one at all)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return False  # the purchase parser reports malformed JSON
    return isinstance(data, dict) and data.get("type") == "refund"


# Any constant: the key of the PostgreSQL advisory lock that queues imports behind each other.
_IMPORT_LOCK = 0x4C4F59414C  # "LOYAL"


def serialize_imports(conn: Connection) -> None:
    """Queue this import behind any other (PostgreSQL; SQLite's write lock already does).

    An import holds its transaction for the whole file; two of them inserting the same new
    members in different orders would deadlock. Short writers (a till) still run beside an
    import: they insert their member, then their purchase, then their balance, and wait at
    the first row the import holds while holding nothing the import needs.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})


def _rejection_text(rejection: Rejection) -> str:
    return (f"transaction {rejection.transaction_id!r} of store {rejection.store_id!r}: "
            f"{rejection.reason}")


def _write_rejects(target: Path, source: Path, errors: list[LineError]) -> None:
    with target.open("w", encoding="utf-8") as out:
        for error in errors:
            out.write(json.dumps({"file": str(source), "line": error.line,
                                  "reason": error.reason, "record": error.record},
                                 ensure_ascii=False) + "\n")


class _LongLine(bytes):
    """The first MAX_LINE_BYTES of a line that was longer (the rest was skipped)."""

    __slots__ = ()


def _too_long() -> str:
    return (f"the line is longer than {MAX_LINE_BYTES:,} bytes (1 MiB), the most a record "
            "may have; it was not read")


def _numbered_lines(stream: io.BufferedReader[Any]) -> Iterator[tuple[int, bytes]]:
    """The file's lines with their 1-based numbers, without a leading UTF-8 byte-order mark
    (as some editors write). A line longer than MAX_LINE_BYTES comes as a _LongLine."""
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (rest := stream.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                pass  # skipped in bounded pieces
            yield number, _LongLine(raw[:80])
            continue
        yield number, raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw


def _jsonl_records(stream: io.BufferedReader[Any]) -> Iterator[Record]:
    for number, raw in _numbered_lines(stream):
        if isinstance(raw, _LongLine):
            yield ("error", number, bytes(raw), _too_long())
        elif raw.strip():
            yield ("json", number, raw.rstrip(b"\r\n"), None)


def _decoded_lines(stream: io.BufferedReader[Any], path: Path) -> Iterator[str]:
    """The file's lines as text, decoded one by one so an error names its line."""
    for number, raw in _numbered_lines(stream):
        if isinstance(raw, _LongLine):
            raise ImportFileError(f"{path}:{number}: {_too_long()}")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{path}:{number}: the file is not UTF-8 text (byte {exc.start + 1} of the line)"
            ) from None


# A CSV row as csv_rows gives it: (line, cells as read, {column: stripped cell}), or
# (line, cells, problem) for a row of the wrong width.
CsvRow = tuple[int, list[str], "dict[str, str] | str"]


def csv_rows(stream: io.BufferedReader[Any], path: Path, columns: Sequence[str],
             optional: Sequence[str] = ()) -> Iterator[CsvRow] | None:
    """The non-blank rows of a CSV file whose header names every one of `columns` and
    any of `optional` (in any order), read line by line with a bound (MAX_LINE_BYTES), a
    leading byte-order mark dropped; None for a file without even a header line. The
    header is checked at once; a file that is not UTF-8 text, malformed CSV, a line too
    long or a wrong header is an ImportFileError naming the line."""
    reader = csv.reader(_decoded_lines(stream, path))
    try:
        header = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        raise ImportFileError(f"{path}:1: malformed CSV: {exc}") from None
    names = [h.strip() for h in header]
    _check_header(path, names, columns, optional)
    index = {name: names.index(name) for name in (*columns, *optional) if name in names}
    return _rows(reader, path, len(names), index)


def _check_header(path: Path, names: list[str], columns: Sequence[str],
                  optional: Sequence[str]) -> None:
    if len(names) == 1:
        separator = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs"))
                          if sep in names[0]), None)
        if separator is not None:
            raise ImportFileError(f"{path}:1: the header has one column; the file looks "
                                  f"separated by {separator}: use commas")
    doubled = sorted({n for n in names if names.count(n) > 1})
    missing = [c for c in columns if c not in names]
    unknown = [n for n in names if n not in columns and n not in optional]
    if doubled or missing or unknown:
        parts = ([f"column(s) named twice: {', '.join(doubled)}"] if doubled else []) + (
            [f"missing column(s): {', '.join(missing)}"] if missing else []) + (
            [f"unknown column(s): {', '.join(unknown)}"] if unknown else [])
        raise ImportFileError(f"{path}:1: " + "; ".join(parts) + " (expected: "
                              + ",".join(columns)
                              + (("; optional: " + ",".join(optional)) if optional else "")
                              + ")")


def _rows(reader: Any, path: Path, width: int, index: dict[str, int]) -> Iterator[CsvRow]:
    line = reader.line_num
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != width:
                yield start, row, f"expected {width} columns, found {len(row)}"
                continue
            yield start, row, {name: row[i].strip() for name, i in index.items()}
    except csv.Error as exc:
        raise ImportFileError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None


def csv_file_rows(path: Path, columns: Sequence[str], what: str
                  ) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line, {column: stripped cell}) per non-blank row of a CSV file with exactly
    `columns` as its header (csv_rows), or (line, problem) for a row of the wrong width.
    A file that cannot be read, or whose header is wrong, is an ImportFileError naming the
    line; one without rows says it is empty (`what`: what the rows are)."""
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; import one CSV file at a time")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot be read: {exc.strerror}") from None
    with handle:
        rows = csv_rows(handle, path, columns)
        if rows is None:
            raise ImportFileError(f"{path}: the file is empty; expected a header "
                                  f"({','.join(columns)}) and {what}")
        seen = 0
        for line, _, record in rows:
            seen += 1
            yield line, record
        if not seen:
            raise ImportFileError(f"{path}: the file has a header but no rows; expected "
                                  f"{what}")


def _csv_records(stream: io.BufferedReader[Any], path: Path) -> Iterator[Record]:
    rows = csv_rows(stream, path, CSV_COLUMNS, OPTIONAL_CSV_COLUMNS)
    if rows is None:
        return
    group: list[tuple[int, dict[str, str]]] = []
    for start, row, record in rows:
        if isinstance(record, str):
            if group:
                yield _csv_group(group)
                group = []
            yield ("error", start, row, record)
            continue
        if group and (record["store_id"], record["transaction_id"]) != (
            group[0][1]["store_id"], group[0][1]["transaction_id"]
        ):
            yield _csv_group(group)
            group = []
        group.append((start, record))
    if group:
        yield _csv_group(group)


def _csv_group(group: list[tuple[int, dict[str, str]]]) -> Record:
    """Rows sharing a transaction (consecutive) become one record; their purchase columns
    must agree."""
    first_line, first = group[0]
    rows = [r for _, r in group]
    for line, row in group[1:]:
        differing = [c for c in _PURCHASE_COLUMNS if row.get(c) != first.get(c)]
        if differing:
            return ("error", first_line, rows, f"line {line}: {', '.join(differing)} "
                                               "differ(s) from the first row of the same "
                                               "transaction")
    return ("csv", first_line, rows, [line for line, _ in group])


def _csv_body(rows: list[dict[str, str]]) -> dict[str, Any]:
    first = rows[0]
    return {
        "transaction_id": first["transaction_id"],
        "store_id": first["store_id"],
        "member_id": first["member_id"] or None,
        "occurred_at": first["occurred_at"],
        "currency": first["currency"],
        "total": first["total"],
        "items": [
            {"sku": r["sku"], "category": r["category"], "quantity": r["quantity"] or "1",
             "unit_price": r["unit_price"]}
            for r in rows
        ],
        # An empty cell is a purchase that did not say.
        **{name: first[name] for name in OPTIONAL_CSV_COLUMNS if first.get(name)},
    }


def source_of(path: Path) -> str:
    """What a row imported from a file says it came from."""
    return f"file:{path.name}"[:SOURCE_LENGTH]


def member_problem(member_id: str, known: dict[str, bool]) -> str | None:
    """Why a line's member cannot take new data: unknown, or erased."""
    if member_id not in known:
        return (f"member_id: no member with id {member_id!r} (enrol them first, or correct "
                "the id)")
    if known[member_id]:
        return (f"member_id: member {member_id!r} was erased and takes no new personal "
                "data")
    return None
