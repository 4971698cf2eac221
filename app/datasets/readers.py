"""Read an uploaded file (JSONL, CSV or Parquet) as a stream of rows: (line | None, row, values).

Files are read as a stream: JSONL and CSV one physical line at a time, Parquet one row group at
a time in small record batches (only the columns asked for), so memory use does not grow with
the file's size.

A reader first tells its ``columns()`` (every column in file order: a JSONL file's first
object, a CSV header, a Parquet schema), then yields ``rows(wanted)``. ``values`` maps column
names to values: for JSONL the whole object (a later object may lack a column: the caller
checks), for CSV and Parquet exactly the ``wanted`` columns. What a value must be is the
caller's business (:mod:`app.datasets.checks`); readers only report structural problems
(encoding, malformed JSON or CSV, field counts, unreadable Parquet), naming line and row, and
enforce the :class:`ReadBounds` of an upload before anything outgrows them:

* every text cell read (JSONL: the object's top-level strings; CSV: every field; Parquet: the
  wanted string columns, checked in Arrow before any becomes a Python string) has at most
  ``max_text_chars`` characters: :class:`~app.datasets.errors.TextTooLong` naming line, row
  and column;
* a physical line is read with a length limit (``readline(limit)``), sized for a row of
  ``max(8, columns)`` cells of ``max_text_chars`` characters, worst-case escaped (JSON:
  ``\\ud83d\\ude00``, 12 bytes for one character; CSV: quotes doubled, 4 UTF-8 bytes a
  character): a longer line is refused naming it, without being held whole; a CSV record
  spanning lines (quoted newlines) is bounded the same way;
* the data read, uncompressed, stays within ``max_uncompressed_bytes``: text files are counted
  as they are read; Parquet files are checked on their footer, then on their page headers,
  before any data is read (see :mod:`app.datasets.parquet_bounds`).

The memory bound, with the default settings (100,000 characters a cell): reading holds one
line (JSONL/CSV: at most ~10 MB of bytes, ~40 MB decoded in the worst Unicode case, plus its
parsed values) or one Parquet batch (Arrow at most ``READ_BUDGET_BYTES`` = 64 MiB, whatever
the footer says; Python strings made ``_PY_SLICE_BYTES`` = 16 MiB at a time): validating any
upload within the limits keeps peak RSS under the process's baseline + 256 MB (measured:
+3 to +57 MB for the worst uploads, ``bench/upload_memory.py``). What a caller keeps per row
is the caller's: the upload preflight adds at most 32 bytes a row (``BYTES_PER_ROW`` in
:mod:`app.datasets.preflight`; 320 MB at the default 10 million rows,
``EMBEDTUNE_MAX_DATASET_ROWS``), so an upload stays under baseline + 256 MB + 32 bytes a row.
Stored files that already passed are re-read without bounds
(``bounds=None``): the Parquet batch planning applies all the same.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets import parquet_bounds
from app.datasets.errors import (
    DatasetFormatError,
    DatasetTooLarge,
    TextTooLong,
    json_type_name,
    location,
    text_too_long,
    where,
)
from app.datasets.formats import UTF8_BOM, DatasetFormat

Row = tuple[int | None, int, Mapping[str, Any]]

# Splits a decoded line after every carriage return that is not part of a CRLF pair, so that
# CSV files with old-Mac (lone CR) line endings are split into physical lines like
# ``open(..., newline="")`` would.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
NO_ROWS = "the file has no data rows"

# Line bounds: a row is sized as at least this many cells, plus slack for keys and separators.
MIN_SIZED_CELLS = 8
LINE_SLACK_BYTES = 64 * 1024
JSON_BYTES_PER_CHAR = 12  # "\ud83d\ude00" (json.dumps' default ensure_ascii) is one character
UTF8_MAX_BYTES = 4
# Python strings made from one Parquet batch at a time (estimated at 4 bytes a character).
_PY_SLICE_BYTES = 16 * 1024 * 1024
_PY_STR_OVERHEAD = 64
# The csv module's own field limit (131,072 characters by default) is process-wide, so it
# cannot follow each team's max_text_chars; it is lifted, and CsvReader bounds records and
# checks fields itself (naming line, row and column).
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class ReadBounds:
    """What reading an upload may hold; None: not checked (a stored file that passed)."""

    max_text_chars: int | None = None
    max_uncompressed_bytes: int | None = None

    def jsonl_line_bytes(self, cells: int) -> int | None:
        """Longest JSONL line (bytes) for a row of ``cells`` cells within max_text_chars."""
        if self.max_text_chars is None:
            return None
        per_cell = JSON_BYTES_PER_CHAR * self.max_text_chars + 64
        return max(cells, MIN_SIZED_CELLS) * per_cell + LINE_SLACK_BYTES

    def csv_record_chars(self, cells: int) -> int | None:
        """Longest CSV record (characters, lines joined) for ``cells`` fields within limits."""
        if self.max_text_chars is None:
            return None
        per_cell = 2 * self.max_text_chars + 3  # every quote doubled, wrapped in quotes, a comma
        return max(cells, MIN_SIZED_CELLS) * per_cell + LINE_SLACK_BYTES

    def check_text(self, value: Any, line: int | None, row: int | None, column: str) -> None:
        """TextTooLong when ``value`` is a string over max_text_chars."""
        limit = self.max_text_chars
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise text_too_long(line, row, column, len(value), limit)


UNBOUNDED = ReadBounds()


class RowReader(Protocol):
    format: DatasetFormat
    # The line the columns were read from (JSONL: the first object; CSV: the header).
    header_line: int | None

    def columns(self) -> tuple[str, ...]: ...

    def arrow_type(self, column: str) -> pa.DataType | None:
        """The column's Arrow type (Parquet), or None where the format has no types."""
        ...

    def rows(self, wanted: Sequence[str]) -> Iterator[Row]: ...


@contextmanager
def open_reader(
    path: Path, format: DatasetFormat, bounds: ReadBounds | None = None
) -> Iterator[RowReader]:
    """Open ``path`` as ``format``, reading within ``bounds`` (None: a stored file that
    passed, not checked). ``OSError`` from a missing file propagates unchanged."""
    readers: dict[str, Callable[[BinaryIO, ReadBounds], RowReader]] = {
        "jsonl": JsonlReader,
        "csv": CsvReader,
        "parquet": ParquetReader,
    }
    if format not in readers:
        raise ValueError(f"unknown dataset format {format!r}")
    with Path(path).open("rb") as handle:
        yield readers[format](handle, bounds or UNBOUNDED)


class LineSource:
    """The file's physical lines, decoded as strict UTF-8, line endings kept; bounded.

    A UTF-8 BOM at the very start is dropped. Invalid UTF-8 raises DatasetFormatError naming
    the physical line. Lines are split on LF (CRLF included); with ``split_lone_cr`` also on a
    lone CR, as Python's universal newlines (and the csv module) do. A line longer than
    ``max_line_bytes`` raises TextTooLong naming it, having read only that many bytes of it;
    more than ``max_record_chars`` characters since :meth:`start_record` (a CSV record over
    several lines) likewise; more than ``max_total_bytes`` in all raises DatasetTooLarge.
    The limits may change while reading (once the columns are known).
    """

    def __init__(
        self, handle: BinaryIO, split_lone_cr: bool, bounds: ReadBounds, cells: int = 0
    ) -> None:
        self._handle = handle
        self._split_lone_cr = split_lone_cr
        self._bounds = bounds
        self.max_line_bytes: int | None = None
        self.max_record_chars: int | None = None
        self.max_total_bytes = bounds.max_uncompressed_bytes
        self.size_for(cells)
        self.line = 0  # physical lines yielded so far
        self._record_chars = 0
        self._record_line = 1

    def size_for(self, cells: int) -> None:
        """Set the line (and CSV record) limits for rows of ``cells`` cells."""
        if self._split_lone_cr:
            chars = self._bounds.csv_record_chars(cells)
            self.max_record_chars = chars
            self.max_line_bytes = None if chars is None else UTF8_MAX_BYTES * chars
        else:
            self.max_line_bytes = self._bounds.jsonl_line_bytes(cells)

    def start_record(self) -> None:
        """A new CSV record starts with the next line."""
        self._record_chars = 0
        self._record_line = self.line + 1

    def __iter__(self) -> Iterator[str]:
        first = True
        for raw in self._raw_lines():
            if first:
                first = False
                if raw.startswith(UTF8_BOM):
                    raw = raw[len(UTF8_BOM) :]
            text = self._decode(raw)
            if (
                self._split_lone_cr
                and "\r" in text
                and not (text.endswith("\r\n") and text.count("\r") == 1)
            ):
                parts = [part for part in _LONE_CR.split(text) if part]
            else:
                parts = [text]
            for part in parts:
                self.line += 1
                self._count_record(len(part))
                yield part

    def _raw_lines(self) -> Iterator[bytes]:
        """Raw lines, each read with a length limit; a too long line is refused unread."""
        total = 0
        pending = b""
        while True:
            limit = self.max_line_bytes
            if limit is None:
                raw = pending + self._handle.readline()
            else:
                raw = pending + self._handle.readline(max(0, limit + 1 - len(pending)))
            pending = b""
            if not raw:
                return
            if limit is not None and len(raw) > limit:
                raw, pending = self._cut_at_lone_cr(raw, limit)
            total += len(raw)
            if self.max_total_bytes is not None and total > self.max_total_bytes:
                raise self._too_much(total)
            yield raw

    def _cut_at_lone_cr(self, raw: bytes, limit: int) -> tuple[bytes, bytes]:
        # With lone-CR line endings (old Mac CSV) a whole file is one LF "line": cut it after
        # its last CR (not one that may start a CRLF) and read on from there.
        cut = raw.rfind(b"\r", 0, len(raw) - 1) if self._split_lone_cr else -1
        if cut < 0:
            raise self._line_too_long(limit)
        return raw[: cut + 1], raw[cut + 1 :]

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start].count(b"\r") if self._split_lone_cr else 0
            bad = raw[exc.start : exc.end].hex(" ")
            number = self.line + 1 + before
            raise DatasetFormatError(
                f"line {number}: the file is not valid UTF-8 (bad byte(s) {bad}); save it as UTF-8",
                {"line": number},
            ) from None

    def _count_record(self, chars: int) -> None:
        self._record_chars += chars
        limit = self.max_record_chars
        if limit is not None and self._record_chars > limit:
            line = self._record_line
            raise TextTooLong(
                f"line {line}: the record starting here is longer than {limit} characters, "
                f"more than a row of texts within the limit of {self._bounds.max_text_chars} "
                "characters per cell can take (is a quote left open?)",
                {"line": line, "max_record_chars": limit, **self._text_limit()},
            )

    def _line_too_long(self, limit: int) -> TextTooLong:
        line = self.line + 1
        return TextTooLong(
            f"line {line}: the line is longer than {limit} bytes, more than a row of texts "
            f"within the limit of {self._bounds.max_text_chars} characters per cell can take",
            {"line": line, "max_line_bytes": limit, **self._text_limit()},
        )

    def _too_much(self, total: int) -> DatasetTooLarge:
        limit = self.max_total_bytes
        line = self.line + 1
        return DatasetTooLarge(
            f"line {line}: the file has more than {limit} bytes of data",
            {"line": line, "max_dataset_uncompressed_bytes": limit},
            limit_field="max_dataset_uncompressed_bytes",
        )

    def _text_limit(self) -> dict[str, object]:
        return {"max_text_chars": self._bounds.max_text_chars}


# --------------------------------------------------------------------------------------------
# JSON Lines


class JsonlReader:
    """One JSON object per line; blank lines are skipped. Columns: the first object's keys."""

    format: DatasetFormat = "jsonl"

    def __init__(self, handle: BinaryIO, bounds: ReadBounds = UNBOUNDED) -> None:
        self._bounds = bounds
        self._source = LineSource(handle, split_lone_cr=False, bounds=bounds)
        self._lines = enumerate(self._source, start=1)
        self._row = 0
        self._first: Row | None = None
        self._columns: tuple[str, ...] | None = None
        self.header_line: int | None = None

    def columns(self) -> tuple[str, ...]:
        if self._columns is None:
            self._first = self._next()
            if self._first is None:
                raise DatasetFormatError(NO_ROWS)
            self.header_line = self._first[0]
            self._columns = tuple(self._first[2])
            self._source.size_for(len(self._columns))
        return self._columns

    def arrow_type(self, column: str) -> pa.DataType | None:
        return None

    def rows(self, wanted: Sequence[str]) -> Iterator[Row]:
        self.columns()
        first, self._first = self._first, None
        if first is not None:
            yield first
        while (row := self._next()) is not None:
            yield row

    def _next(self) -> Row | None:
        for line, text in self._lines:
            if not text.strip():
                continue
            self._row += 1
            row = self._row
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(
                    f"{where(line, row)}: not valid JSON ({exc.msg} at character {exc.colno})",
                    location(line, row),
                ) from None
            except (ValueError, RecursionError):
                raise DatasetFormatError(
                    f"{where(line, row)}: not valid JSON", location(line, row)
                ) from None
            if not isinstance(obj, dict):
                raise DatasetFormatError(
                    f"{where(line, row)}: expected a JSON object with the row's columns "
                    f"(got {json_type_name(obj)})",
                    location(line, row),
                )
            for column, value in obj.items():
                self._bounds.check_text(value, line, row, column)
            return line, row, obj
        return None


# --------------------------------------------------------------------------------------------
# CSV


class CsvReader:
    """A header row naming the columns, then one record per row; blank lines are skipped.

    A record's line is the line it starts on (a quoted field may span several lines).
    """

    format: DatasetFormat = "csv"

    def __init__(self, handle: BinaryIO, bounds: ReadBounds = UNBOUNDED) -> None:
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)
        self._bounds = bounds
        self._source = LineSource(handle, split_lone_cr=True, bounds=bounds)
        self._reader = csv.reader(self._source, strict=True)
        self._records = self._read_records()
        self._header: tuple[str, ...] | None = None
        self.header_line: int | None = None

    def columns(self) -> tuple[str, ...]:
        if self._header is None:
            first = next(self._records, None)
            if first is None:
                raise DatasetFormatError(
                    "the file is empty: a CSV file needs a header row naming its columns "
                    "(anchor, positive, negative)"
                )
            self.header_line, header = first
            seen: set[str] = set()
            for name in header:
                if name in seen:
                    raise DatasetFormatError(
                        f"line {self.header_line}: column '{name}' appears more than once in "
                        "the header",
                        {"line": self.header_line, "column": name},
                    )
                seen.add(name)
            self._header = tuple(header)
            self._source.size_for(len(header))
        return self._header

    def arrow_type(self, column: str) -> pa.DataType | None:
        return None

    def rows(self, wanted: Sequence[str]) -> Iterator[Row]:
        header = self.columns()
        indexes = [(column, header.index(column)) for column in wanted]
        for row, (line, record) in enumerate(self._records, start=1):
            if len(record) != len(header):
                raise DatasetFormatError(
                    f"{where(line, row)}: expected {len(header)} fields as in the header, "
                    f"found {len(record)}",
                    location(line, row),
                )
            for column, value in zip(header, record, strict=True):
                self._bounds.check_text(value, line, row, column)
            yield line, row, {column: record[index] for column, index in indexes}

    def _read_records(self) -> Iterator[tuple[int, list[str]]]:
        last_line = 0  # reader.line_num after the previous record
        while True:
            start_line = last_line + 1
            self._source.start_record()
            try:
                record = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # Name the line the broken record starts on: for an unclosed quote that is where
                # the problem is, while reader.line_num has run on to the end of the file.
                raise DatasetFormatError(
                    f"line {start_line}: malformed CSV ({exc}); a field containing commas, "
                    'quotes or newlines must be wrapped in double quotes, with any " inside '
                    'written as ""',
                    {"line": start_line},
                ) from None
            last_line = self._reader.line_num
            if record:  # not a blank line
                yield start_line, record


# --------------------------------------------------------------------------------------------
# Parquet

_UNREADABLE: tuple[type[BaseException], ...] = (pa.ArrowException, OSError, ValueError)


class ParquetReader:
    """Columns from the schema; rows read row group by row group, in record batches sized so
    that Arrow's memory stays within ``parquet_bounds.READ_BUDGET_BYTES``, wanted columns only.

    Before any data is read, :meth:`rows` checks the footer's declared sizes and then every
    page header of the wanted columns (:mod:`app.datasets.parquet_bounds`); each batch's text
    lengths are checked in Arrow before its values become Python objects.
    """

    format: DatasetFormat = "parquet"
    header_line: int | None = None

    def __init__(self, handle: BinaryIO, bounds: ReadBounds = UNBOUNDED) -> None:
        self._handle = handle
        self._bounds = bounds
        self._decoded = 0  # characters of text decoded so far
        try:
            # buffer_size/pre_buffer=False: read column chunks as a stream of pages rather than
            # whole row groups at once, so memory stays flat for big row groups.
            self._file = pq.ParquetFile(handle, buffer_size=1 << 20, pre_buffer=False)
            self._schema = self._file.schema_arrow
        except _UNREADABLE as exc:
            raise DatasetFormatError(
                f"the file could not be read as Parquet ({short_reason(exc)})"
            ) from None
        self._columns = tuple(self._schema.names)

    def columns(self) -> tuple[str, ...]:
        return self._columns

    def arrow_type(self, column: str) -> pa.DataType:
        self._check_unique(column)
        return self._schema.field(column).type

    def rows(self, wanted: Sequence[str]) -> Iterator[Row]:
        for column in wanted:
            self._check_unique(column)
        plans = self._plan(wanted)
        rows = 0
        try:
            for group, batch_rows in plans:
                batches = self._file.iter_batches(
                    batch_size=batch_rows,
                    row_groups=[group],
                    columns=list(wanted),
                    use_threads=False,
                )
                for batch in batches:
                    yield from self._batch_rows(batch, wanted, rows)
                    rows += batch.num_rows
        except _UNREADABLE as exc:
            raise DatasetFormatError(
                f"the file could not be read as Parquet after row {rows} ({short_reason(exc)})",
                {"row": rows + 1},
            ) from None

    def _plan(self, wanted: Sequence[str]) -> list[tuple[int, int]]:
        """(row group, rows per batch) for every non-empty row group, from the footer and the
        page headers, before any data is read; raises when the file is over the bounds."""
        metadata = self._file.metadata
        leaves = parquet_bounds.leaf_indexes(metadata, wanted)
        limit = self._bounds.max_uncompressed_bytes
        parquet_bounds.check_declared_size(metadata, leaves, limit)
        texts = [c for c in wanted if _is_plain_string(self._schema.field(c).type)]
        plans: list[tuple[int, int]] = []
        pages = total = 0
        first_row = 1
        for group in range(metadata.num_row_groups):
            group_rows = metadata.row_group(group).num_rows
            if group_rows == 0:
                continue
            try:
                chunks = parquet_bounds.scan_row_group(self._handle, metadata, group, leaves, pages)
            except OSError as exc:
                raise DatasetFormatError(
                    f"the file could not be read as Parquet ({short_reason(exc)})"
                ) from None
            pages += sum(len(c.data_pages) + 1 for c in chunks)
            total += sum(c.total_bytes for c in chunks)
            if limit is not None and total > limit:
                raise parquet_bounds.too_large(total, limit, "holds at least")
            parquet_bounds.check_text_bytes(
                chunks, group, first_row, group_rows, texts, self._bounds.max_text_chars
            )
            chunks = parquet_bounds.measure_dictionaries(
                self._handle, metadata, group, leaves, chunks
            )
            plans.append((group, parquet_bounds.plan_row_group(chunks, group, group_rows)))
            first_row += group_rows
        return plans

    def _batch_rows(
        self, batch: pa.RecordBatch, wanted: Sequence[str], before: int
    ) -> Iterator[Row]:
        """The batch's rows (numbered after ``before``), its texts checked in Arrow first and
        turned into Python objects a slice of at most ``_PY_SLICE_BYTES`` at a time."""
        arrays = [batch.column(i) for i in range(len(wanted))]
        sizes = pa.array([0] * batch.num_rows, pa.int64())
        for column, array in zip(wanted, arrays, strict=True):
            lengths = char_lengths(array)
            if lengths is None:
                continue
            self._check_lengths(lengths, column, before)
            self._count_decoded(pc.sum(lengths).as_py() or 0, before + 1)
            sizes = pc.add(sizes, pc.add(pc.multiply(lengths, 4), _PY_STR_OVERHEAD))
        for start, stop in _slices(sizes.to_pylist(), _PY_SLICE_BYTES):
            values = [_to_pylist(array.slice(start, stop - start)) for array in arrays]
            for offset, row_values in enumerate(zip(*values, strict=True)):
                row = before + start + offset + 1
                yield None, row, dict(zip(wanted, row_values, strict=True))

    def _count_decoded(self, chars: int, row: int) -> None:
        # Dictionary (and prefix) encoding repeat a text without storing it again: what the
        # file decodes to counts against the uncompressed limit too, as it is read.
        self._decoded += chars
        limit = self._bounds.max_uncompressed_bytes
        if limit is not None and self._decoded > limit:
            raise DatasetTooLarge(
                f"from row {row}: the file's texts decode to more than {limit} characters, "
                "more than the limit of uncompressed data",
                {"row": row, "max_dataset_uncompressed_bytes": limit},
                limit_field="max_dataset_uncompressed_bytes",
            )

    def _check_lengths(self, lengths: pa.Array, column: str, before: int) -> None:
        limit = self._bounds.max_text_chars
        if limit is None or len(lengths) == 0:
            return
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > limit:
            index = pc.index(pc.greater(lengths, limit), True).as_py()
            chars = lengths[index].as_py()
            raise text_too_long(None, before + index + 1, column, chars, limit)

    def _check_unique(self, column: str) -> None:
        if self._columns.count(column) > 1:
            raise DatasetFormatError(
                f"column '{column}' appears more than once", {"column": column}
            )


def char_lengths(array: pa.Array) -> pa.Array | None:
    """Each value's length in characters (0 for nulls) for string arrays, plain or
    dictionary-encoded (the dictionary's lengths, taken by index); None for other types."""
    if pa.types.is_dictionary(array.type):
        lengths = char_lengths(array.dictionary)
        if lengths is None:
            return None
        return pc.fill_null(pc.take(lengths, array.indices), 0).cast(pa.int64())
    if hasattr(pa.types, "is_string_view") and pa.types.is_string_view(array.type):
        array = array.cast(pa.large_string())
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    return pc.fill_null(pc.utf8_length(array), 0).cast(pa.int64())


def _to_pylist(array: pa.Array) -> list[Any]:
    # A dictionary array (a pandas categorical) is decoded first, a slice at a time, its texts
    # already checked: converting it directly is many times slower.
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array.to_pylist()


def _is_plain_string(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _slices(sizes: Sequence[int], budget: int) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges of consecutive items whose sizes add up to at most ``budget``
    (an item bigger than that alone)."""
    start = used = 0
    for index, size in enumerate(sizes):
        if index > start and used + size > budget:
            yield start, index
            start, used = index, 0
        used += size
    if start < len(sizes):
        yield start, len(sizes)


def short_reason(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
