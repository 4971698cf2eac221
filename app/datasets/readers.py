"""Read an uploaded file (JSONL, CSV or Parquet) as a stream of rows: (line | None, row, values).

Files are read as a stream: JSONL and CSV one physical line at a time, Parquet one record batch
at a time (only the columns asked for), so memory use does not grow with the file's size.

A reader first tells its ``columns()`` (every column in file order: a JSONL file's first
object, a CSV header, a Parquet schema), then yields ``rows(wanted)``. ``values`` maps column
names to values: for JSONL the whole object (a later object may lack a column: the caller
checks), for CSV and Parquet exactly the ``wanted`` columns. What a value must be is the
caller's business (:mod:`app.datasets.checks`); readers only report structural problems
(encoding, malformed JSON or CSV, field counts, unreadable Parquet), naming line and row.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from app.datasets.errors import DatasetFormatError, json_type_name, location, where
from app.datasets.formats import UTF8_BOM, DatasetFormat

Row = tuple[int | None, int, Mapping[str, Any]]

# Splits a decoded line after every carriage return that is not part of a CRLF pair, so that
# CSV files with old-Mac (lone CR) line endings are split into physical lines like
# ``open(..., newline="")`` would.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_PARQUET_BATCH_ROWS = 8192
NO_ROWS = "the file has no data rows"


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
def open_reader(path: Path, format: DatasetFormat) -> Iterator[RowReader]:
    """Open ``path`` as ``format``. ``OSError`` from a missing file propagates unchanged."""
    readers: dict[str, Callable[[BinaryIO], RowReader]] = {
        "jsonl": JsonlReader,
        "csv": CsvReader,
        "parquet": ParquetReader,
    }
    if format not in readers:
        raise ValueError(f"unknown dataset format {format!r}")
    with Path(path).open("rb") as handle:
        yield readers[format](handle)


def decoded_lines(handle: BinaryIO, split_lone_cr: bool) -> Iterator[str]:
    """Yield the file's physical lines, decoded as strict UTF-8, line endings kept.

    A UTF-8 BOM at the very start is dropped. Invalid UTF-8 raises DatasetFormatError naming
    the physical line. Lines are split on LF (CRLF included); with ``split_lone_cr`` also on a
    lone CR, as Python's universal newlines (and the csv module) do.
    """
    line = 0
    first = True
    for raw in handle:
        if first:
            first = False
            if raw.startswith(UTF8_BOM):
                raw = raw[len(UTF8_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start].count(b"\r") if split_lone_cr else 0
            bad = raw[exc.start : exc.end].hex(" ")
            number = line + 1 + before
            raise DatasetFormatError(
                f"line {number}: the file is not valid UTF-8 (bad byte(s) {bad}); save it as UTF-8",
                {"line": number},
            ) from None
        if split_lone_cr and "\r" in text and not (text.endswith("\r\n") and text.count("\r") == 1):
            for part in _LONE_CR.split(text):
                if part:
                    line += 1
                    yield part
        else:
            line += 1
            yield text


# --------------------------------------------------------------------------------------------
# JSON Lines


class JsonlReader:
    """One JSON object per line; blank lines are skipped. Columns: the first object's keys."""

    format: DatasetFormat = "jsonl"

    def __init__(self, handle: BinaryIO) -> None:
        self._lines = enumerate(decoded_lines(handle, split_lone_cr=False), start=1)
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
            return line, row, obj
        return None


# --------------------------------------------------------------------------------------------
# CSV


class CsvReader:
    """A header row naming the columns, then one record per row; blank lines are skipped.

    A record's line is the line it starts on (a quoted field may span several lines).
    """

    format: DatasetFormat = "csv"

    def __init__(self, handle: BinaryIO) -> None:
        self._reader = csv.reader(decoded_lines(handle, split_lone_cr=True), strict=True)
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
            yield line, row, {column: record[index] for column, index in indexes}

    def _read_records(self) -> Iterator[tuple[int, list[str]]]:
        last_line = 0  # reader.line_num after the previous record
        while True:
            start_line = last_line + 1
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
    """Columns from the schema; rows read one record batch at a time, wanted columns only."""

    format: DatasetFormat = "parquet"
    header_line: int | None = None

    def __init__(self, handle: BinaryIO) -> None:
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
        rows = 0
        try:
            for batch in self._file.iter_batches(
                batch_size=_PARQUET_BATCH_ROWS, columns=list(wanted)
            ):
                values = [batch.column(i).to_pylist() for i in range(len(wanted))]
                for offset, row_values in enumerate(zip(*values, strict=True)):
                    yield None, rows + offset + 1, dict(zip(wanted, row_values, strict=True))
                rows += batch.num_rows
        except _UNREADABLE as exc:
            raise DatasetFormatError(
                f"the file could not be read as Parquet after row {rows} ({short_reason(exc)})",
                {"row": rows + 1},
            ) from None

    def _check_unique(self, column: str) -> None:
        if self._columns.count(column) > 1:
            raise DatasetFormatError(
                f"column '{column}' appears more than once", {"column": column}
            )


def short_reason(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
