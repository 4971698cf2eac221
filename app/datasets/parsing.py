"""Validate and describe an uploaded training-data file (JSONL, CSV or Parquet).

This runs on the HTTP side, so it uses only the standard library and pyarrow (no torch,
datasets or transformers). Files are read as a stream: JSONL and CSV one physical line at a
time, Parquet one record batch at a time, so memory use does not grow with the file's size
(a single JSONL line or CSV record is the largest unit held at once).

Numbering used in error messages and details:

* ``line`` is the 1-based physical line of the file. For CSV, line 1 is the header (unless
  blank lines precede it); a quoted field with embedded newlines spans several lines and an
  error about that record names the line it starts on.
* ``row`` is the 1-based data row (blank lines and the CSV header are not rows).
* ``column`` is the name of the dataset column concerned.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.parquet as pq

DatasetFormat = Literal["jsonl", "csv", "parquet"]
DatasetKind = Literal["triplet", "pair"]

TRIPLET_COLUMNS: tuple[str, ...] = ("anchor", "positive", "negative")
PAIR_COLUMNS: tuple[str, ...] = ("anchor", "positive")

_EXTENSIONS: dict[str, DatasetFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = b"\xef\xbb\xbf"
# Splits a decoded line after every carriage return that is not part of a CRLF pair, so that
# CSV files with old-Mac (lone CR) line endings are split into physical lines like
# ``open(..., newline="")`` would.
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_PARQUET_BATCH_ROWS = 8192


@dataclass(frozen=True)
class DatasetDescription:
    format: DatasetFormat
    kind: DatasetKind
    columns: tuple[str, ...]  # every column found in the file, in file order
    text_columns: tuple[str, ...]  # the kind's columns in loss order: anchor, positive[, negative]
    rows: int


class DatasetFormatError(Exception):
    """A problem with an uploaded dataset file, worded for the user who uploaded it.

    ``message`` is the user-facing text; ``details`` says where the problem is, with the keys
    ``line``, ``row`` and ``column`` present only where known (plus ``missing`` and ``columns``
    for a missing-column error).
    """

    message: str
    details: dict[str, object]

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details) if details else {}

    def __str__(self) -> str:
        return self.message


# --------------------------------------------------------------------------------------------
# Format detection


def detect_format(filename: str | None, head: bytes) -> DatasetFormat:
    """Pick the file's format from its name, or failing that from its first bytes.

    A known extension wins (``.jsonl``/``.ndjson``/``.json`` -> jsonl, ``.csv`` -> csv,
    ``.parquet``/``.pq`` -> parquet). Otherwise ``head`` is sniffed: the Parquet magic
    ``PAR1`` means parquet, text whose first non-space character is ``{`` means jsonl, and any
    other text means csv. Raises :class:`DatasetFormatError` for content that can be none of
    them (empty, or binary that is not Parquet).
    """
    if filename:
        # Browsers may send a full Windows path; take the last component either way.
        name = PureWindowsPath(PurePosixPath(filename).name).name
        by_extension = _EXTENSIONS.get(PurePosixPath(name).suffix.lower())
        if by_extension is not None:
            return by_extension

    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head[len(_UTF8_BOM) :] if head.startswith(_UTF8_BOM) else head
    stripped = text.lstrip()
    if not stripped:
        raise DatasetFormatError(
            "the file is empty: upload a JSON Lines, CSV or Parquet file with your training rows"
        )
    if b"\x00" in text or not _is_utf8_prefix(text):
        raise DatasetFormatError(
            "the file is neither UTF-8 text nor Parquet: upload a JSON Lines, CSV or Parquet file"
        )
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


def _is_utf8_prefix(data: bytes) -> bool:
    """True if ``data`` is valid UTF-8, allowing a multi-byte character cut off at the end."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A sequence truncated by the end of the sniffed head is fine; anything else is not.
        return exc.reason == "unexpected end of data" and exc.end == len(data)
    return True


# --------------------------------------------------------------------------------------------
# Describing a file


def describe_dataset(path: Path, format: DatasetFormat) -> DatasetDescription:
    """Validate the whole file at ``path`` as ``format`` and describe it.

    Raises :class:`DatasetFormatError` at the first problem found. ``OSError`` from opening a
    missing or unreadable path is not a user error and propagates unchanged.
    """
    if format == "jsonl":
        return _describe_jsonl(Path(path))
    if format == "csv":
        return _describe_csv(Path(path))
    if format == "parquet":
        return _describe_parquet(Path(path))
    raise ValueError(f"unknown dataset format {format!r}")


def _where(line: int | None = None, row: int | None = None) -> str:
    if line is not None and row is not None:
        return f"line {line} (row {row})"
    if line is not None:
        return f"line {line}"
    if row is not None:
        return f"row {row}"
    return ""


def _location(line: int | None = None, row: int | None = None) -> dict[str, object]:
    details: dict[str, object] = {}
    if line is not None:
        details["line"] = line
    if row is not None:
        details["row"] = row
    return details


def _prefixed(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _resolve_kind(
    columns: Sequence[str], line: int | None = None
) -> tuple[DatasetKind, tuple[str, ...]]:
    present = set(columns)
    if all(c in present for c in TRIPLET_COLUMNS):
        return "triplet", TRIPLET_COLUMNS
    if all(c in present for c in PAIR_COLUMNS):
        return "pair", PAIR_COLUMNS
    # With a negative column the user evidently means a triplet set; otherwise the smallest
    # fix is to make it a pair set.
    wanted = TRIPLET_COLUMNS if "negative" in present else PAIR_COLUMNS
    missing = [c for c in wanted if c not in present]
    names = ", ".join(f"'{c}'" for c in missing)
    message = (
        f"missing column(s) {names}: a triplet dataset needs columns "
        f"{', '.join(TRIPLET_COLUMNS)} (a pair dataset {', '.join(PAIR_COLUMNS)})"
    )
    details = _location(line)
    details["missing"] = missing
    details["columns"] = list(columns)
    raise DatasetFormatError(_prefixed(_where(line), message), details)


def _json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_text(value: object, column: str, line: int | None, row: int | None) -> None:
    """Raise unless ``value`` is a string with at least one non-whitespace character."""
    if isinstance(value, str):
        if value.strip():
            return
        problem = "is empty or whitespace-only"
    else:
        problem = f"is not a string (got {_json_type_name(value)})"
    details = _location(line, row)
    details["column"] = column
    raise DatasetFormatError(_prefixed(_where(line, row), f"column '{column}' {problem}"), details)


def _decode_error(line: int, raw: bytes, exc: UnicodeDecodeError) -> DatasetFormatError:
    bad = raw[exc.start : exc.end].hex(" ")
    return DatasetFormatError(
        f"line {line}: the file is not valid UTF-8 (bad byte(s) {bad}); save it as UTF-8",
        {"line": line},
    )


def _decoded_lines(handle: BinaryIO, split_lone_cr: bool) -> Iterator[str]:
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
            if raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start].count(b"\r") if split_lone_cr else 0
            raise _decode_error(line + 1 + before, raw, exc) from None
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


def _describe_jsonl(path: Path) -> DatasetDescription:
    columns: tuple[str, ...] = ()
    text_columns: tuple[str, ...] = ()
    rows = 0
    with path.open("rb") as handle:
        for line, text in enumerate(_decoded_lines(handle, split_lone_cr=False), start=1):
            if not text.strip():
                continue
            rows += 1
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetFormatError(
                    f"{_where(line, rows)}: not valid JSON ({exc.msg} at character {exc.colno})",
                    _location(line, rows),
                ) from None
            except (ValueError, RecursionError):
                raise DatasetFormatError(
                    f"{_where(line, rows)}: not valid JSON", _location(line, rows)
                ) from None
            if not isinstance(obj, dict):
                raise DatasetFormatError(
                    f"{_where(line, rows)}: expected a JSON object with the row's columns "
                    f"(got {_json_type_name(obj)})",
                    _location(line, rows),
                )
            if rows == 1:
                columns = tuple(obj)
                _kind, text_columns = _resolve_kind(columns, line)
            for column in text_columns:
                if column not in obj:
                    raise DatasetFormatError(
                        f"{_where(line, rows)}: column '{column}' is missing",
                        {"line": line, "row": rows, "column": column},
                    )
                _check_text(obj[column], column, line, rows)
    if rows == 0:
        raise DatasetFormatError("the file has no data rows")
    return DatasetDescription(
        format="jsonl",
        kind=_kind_of(text_columns),
        columns=columns,
        text_columns=text_columns,
        rows=rows,
    )


def _kind_of(text_columns: tuple[str, ...]) -> DatasetKind:
    return "triplet" if text_columns == TRIPLET_COLUMNS else "pair"


# --------------------------------------------------------------------------------------------
# CSV


def _describe_csv(path: Path) -> DatasetDescription:
    with path.open("rb") as handle:
        reader = csv.reader(_decoded_lines(handle, split_lone_cr=True), strict=True)
        header: list[str] | None = None
        header_line = 0
        text_indexes: list[tuple[str, int]] = []
        rows = 0
        last_line = 0  # reader.line_num after the previous record
        while True:
            start_line = last_line + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # Name the line the broken record starts on: for an unclosed quote that is where
                # the problem is, while reader.line_num has run on to the end of the file.
                raise DatasetFormatError(
                    f"line {start_line}: malformed CSV ({exc}); a field containing commas, "
                    'quotes or newlines must be wrapped in double quotes, with any " inside '
                    'written as ""',
                    {"line": start_line},
                ) from None
            last_line = reader.line_num
            if not record:  # a blank line
                continue
            if header is None:
                header = record
                header_line = start_line
                text_indexes = _csv_header(header, header_line)
                continue
            rows += 1
            if len(record) != len(header):
                raise DatasetFormatError(
                    f"{_where(start_line, rows)}: expected {len(header)} fields as in the "
                    f"header, found {len(record)}",
                    _location(start_line, rows),
                )
            for column, index in text_indexes:
                _check_text(record[index], column, start_line, rows)
    if header is None:
        raise DatasetFormatError(
            "the file is empty: a CSV file needs a header row naming its columns "
            f"({', '.join(TRIPLET_COLUMNS)})"
        )
    if rows == 0:
        raise DatasetFormatError("the file has no data rows")
    text_columns = tuple(column for column, _ in text_indexes)
    return DatasetDescription(
        format="csv",
        kind=_kind_of(text_columns),
        columns=tuple(header),
        text_columns=text_columns,
        rows=rows,
    )


def _csv_header(header: list[str], line: int) -> list[tuple[str, int]]:
    """Check the header row and return (column, field index) for the kind's text columns."""
    _kind, text_columns = _resolve_kind(header, line)
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise DatasetFormatError(
                f"line {line}: column '{name}' appears more than once in the header",
                {"line": line, "column": name},
            )
        seen.add(name)
    return [(column, header.index(column)) for column in text_columns]


# --------------------------------------------------------------------------------------------
# Parquet


def _describe_parquet(path: Path) -> DatasetDescription:
    unreadable: tuple[type[BaseException], ...] = (pa.ArrowException, OSError, ValueError)
    with path.open("rb") as handle:
        try:
            # buffer_size/pre_buffer=False: read column chunks as a stream of pages rather than
            # whole row groups at once, so memory stays flat for big row groups.
            parquet = pq.ParquetFile(handle, buffer_size=1 << 20, pre_buffer=False)
            schema = parquet.schema_arrow
        except unreadable as exc:
            raise DatasetFormatError(
                f"the file could not be read as Parquet ({_short(exc)})"
            ) from None
        columns = tuple(schema.names)
        _kind, text_columns = _resolve_kind(columns)
        for column in text_columns:
            if columns.count(column) > 1:
                raise DatasetFormatError(
                    f"column '{column}' appears more than once", {"column": column}
                )
            arrow_type = schema.field(column).type
            if not _is_arrow_string(arrow_type):
                raise DatasetFormatError(
                    f"column '{column}' has type {arrow_type}: text columns must be strings",
                    {"column": column},
                )

        rows = 0
        try:
            batches = parquet.iter_batches(
                batch_size=_PARQUET_BATCH_ROWS, columns=list(text_columns)
            )
            for batch in batches:
                values = [
                    (column, batch.column(i).to_pylist()) for i, column in enumerate(text_columns)
                ]
                for offset in range(batch.num_rows):
                    row = rows + offset + 1
                    for column, column_values in values:
                        _check_text(column_values[offset], column, None, row)
                rows += batch.num_rows
        except unreadable as exc:
            raise DatasetFormatError(
                f"the file could not be read as Parquet after row {rows} ({_short(exc)})",
                {"row": rows + 1},
            ) from None
    if rows == 0:
        raise DatasetFormatError("the file has no data rows")
    return DatasetDescription(
        format="parquet",
        kind=_kind_of(text_columns),
        columns=columns,
        text_columns=text_columns,
        rows=rows,
    )


def _is_arrow_string(arrow_type: Any) -> bool:
    """True for Arrow string types, plain or dictionary-encoded (e.g. pandas categoricals)."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks = [pa.types.is_string, pa.types.is_large_string]
    if hasattr(pa.types, "is_string_view"):  # pyarrow >= 16
        checks.append(pa.types.is_string_view)
    return any(check(arrow_type) for check in checks)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "PAIR_COLUMNS",
    "TRIPLET_COLUMNS",
    "DatasetDescription",
    "DatasetFormat",
    "DatasetFormatError",
    "DatasetKind",
    "describe_dataset",
    "detect_format",
]
