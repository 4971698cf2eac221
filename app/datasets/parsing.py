"""Validate and describe an uploaded training-data file (JSONL, CSV or Parquet).

This runs on the HTTP side, so it uses only the standard library and pyarrow (no torch,
datasets or transformers). The pieces:

* :mod:`app.datasets.formats` picks the format, :mod:`app.datasets.readers` streams the rows,
* :mod:`app.datasets.roles` maps columns to roles (``column_mapping``) and decides the shape,
* :mod:`app.datasets.checks` checks each row's values for that shape,
* :mod:`app.datasets.nli` turns NLI pairs into triplets.

Validation is a bounded stream (one JSONL line, CSV record or Parquet batch at a time, each
bounded by the upload's :class:`~app.datasets.readers.ReadBounds`); NLI data is grouped by
premise in a scratch SQLite file beside the upload, not in memory. Error messages name the line
(JSONL, CSV), the row and the file's column; see :mod:`app.datasets.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.datasets.checks import check_column_types, row_checker
from app.datasets.errors import (
    DatasetFormatError,
    DatasetTooLarge,
    Problems,
    location,
    prefixed,
    where,
)
from app.datasets.formats import FORMATS, DatasetFormat, detect_format
from app.datasets.nli import TRIPLET_KEYS, NliTriplets
from app.datasets.readers import NO_ROWS, ReadBounds, open_reader
from app.datasets.roles import count_negatives, resolve_layout

DatasetKind = Literal["triplet", "pair", "sts"]

TRIPLET_COLUMNS: tuple[str, ...] = ("anchor", "positive", "negative")
PAIR_COLUMNS: tuple[str, ...] = ("anchor", "positive")
STS_COLUMNS: tuple[str, ...] = ("sentence1", "sentence2", "score")
_KINDS: dict[str, DatasetKind] = {"triplet": "triplet", "pair": "pair", "sts": "sts"}


@dataclass(frozen=True)
class DatasetDescription:
    format: DatasetFormat  # the uploaded file's format
    kind: DatasetKind
    columns: tuple[str, ...]  # every column found in the uploaded file, in file order
    # The stored file's columns the worker trains on, in loss order: anchor, positive,
    # negatives...; sentence1, sentence2, score. Source names, under a column mapping.
    text_columns: tuple[str, ...]
    rows: int  # rows of the stored data (triplets, for converted NLI pairs)
    # Set when the upload was converted (NLI pairs -> triplets): the format the converted
    # file was written in, and the conversion record with its counts.
    stored_format: DatasetFormat | None = None
    conversion: dict[str, Any] | None = None

    @property
    def negatives(self) -> int:
        return count_negatives(self.kind, self.text_columns)


def describe_dataset(
    path: Path,
    format: DatasetFormat,
    column_mapping: Mapping[str, str] | None = None,
    *,
    converted_path: Path | None = None,
    max_rows: int | None = None,
    bounds: ReadBounds | None = None,
) -> DatasetDescription:
    """Validate the whole file at ``path`` as ``format`` and describe it.

    ``column_mapping`` maps roles to the file's column names. NLI data (premise, hypothesis,
    label) is converted to triplets written as JSON Lines to ``converted_path``, which must be
    given for it. Raises :class:`DatasetFormatError` at the first problem found (its ``field``
    says whether the file or the mapping is at fault), :class:`DatasetTooLarge` as soon as the
    file has more than ``max_rows`` rows (NLI: also when it would make more triplets).
    ``bounds`` (max text characters a cell, max uncompressed bytes) are enforced while reading,
    before anything outgrows them: TextTooLong naming line, row and column, DatasetTooLarge
    (see :mod:`app.datasets.readers`); None: not checked.
    ``OSError`` from opening a missing or unreadable path is not a user error and propagates
    unchanged.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown dataset format {format!r}")
    with ExitStack() as stack:
        reader = stack.enter_context(open_reader(Path(path), format, bounds))
        columns = reader.columns()
        layout = resolve_layout(columns, column_mapping, reader.header_line)
        if layout.shape == "nli" and converted_path is None:
            raise ValueError("NLI data is converted on upload: pass converted_path")
        check_column_types(layout, reader)
        check_row = row_checker(layout, format)
        triplets = None
        if layout.shape == "nli":
            assert converted_path is not None
            triplets = stack.enter_context(NliTriplets(converted_path.parent))
        rows = 0
        problems = Problems()
        try:
            for line, row, values in reader.rows(layout.sources):
                if max_rows is not None and row > max_rows:
                    raise _too_large(max_rows, line, row)
                try:
                    checked = check_row(line, row, values)
                except DatasetFormatError as exc:  # a bad value: note it, read on
                    problems.add(exc)
                    continue
                if triplets is not None and not problems:
                    triplets.add(*checked)
                rows = row
        except DatasetTooLarge:
            raise
        except DatasetFormatError as exc:  # the file cannot be read further
            if not problems:
                raise
            problems.add(exc)
        problems.raise_any()
        if rows == 0:
            raise DatasetFormatError(NO_ROWS)
        if triplets is None:
            return DatasetDescription(
                format=format,
                kind=_KINDS[layout.shape],
                columns=columns,
                text_columns=layout.sources,
                rows=rows,
            )
        assert converted_path is not None
        if max_rows is not None and triplets.report()["triplets"] > max_rows:
            raise _too_large(max_rows)
        conversion = triplets.write(converted_path)
    return DatasetDescription(
        format=format,
        kind="triplet",
        columns=columns,
        text_columns=TRIPLET_KEYS,
        rows=conversion["triplets"],
        stored_format="jsonl",
        conversion=conversion,
    )


def _too_large(max_rows: int, line: int | None = None, row: int | None = None) -> DatasetTooLarge:
    what = "the dataset has" if row is not None else "the NLI pairs make triplets (rows):"
    message = prefixed(where(line, row), f"{what} more than the limit of {max_rows} rows")
    return DatasetTooLarge(message, {**location(line, row), "max_rows": max_rows})


__all__ = [
    "PAIR_COLUMNS",
    "STS_COLUMNS",
    "TRIPLET_COLUMNS",
    "DatasetDescription",
    "DatasetFormat",
    "DatasetFormatError",
    "DatasetKind",
    "DatasetTooLarge",
    "ReadBounds",
    "describe_dataset",
    "detect_format",
]
