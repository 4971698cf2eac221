"""Bounded memory for every upload: text length per cell, line length, uncompressed size, and
Parquet files whose data inflates far past their size (compression, dictionaries, a footer that
understates its sizes). In-process: describe_dataset and the readers on files built here."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets import parquet_bounds
from app.datasets.errors import DatasetFormatError, DatasetTooLarge, TextTooLong
from app.datasets.parsing import describe_dataset
from app.datasets.readers import ReadBounds, open_reader
from tests.support.parquet_tamper import understate_footer

LIMIT = 1000  # max_text_chars in these tests
BOUNDS = ReadBounds(max_text_chars=LIMIT, max_uncompressed_bytes=64 * 1024 * 1024)
COLUMNS = ("anchor", "positive", "negative")
MB = 1024 * 1024


def triplet(i: int, length: int = 20) -> dict[str, str]:
    return {c: f"{c} {i} ".ljust(length, "x") for c in COLUMNS}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    lines = [",".join(COLUMNS)] + [",".join(f'"{r[c]}"' for c in COLUMNS) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_format(path: Path, fmt: str, rows: list[dict[str, str]]) -> Path:
    if fmt == "jsonl":
        return write_jsonl(path, rows)
    if fmt == "csv":
        return write_csv(path, rows)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def refused(path: Path, fmt: Any, bounds: ReadBounds = BOUNDS) -> DatasetFormatError:
    with pytest.raises(DatasetFormatError) as info:
        describe_dataset(path, fmt, bounds=bounds)
    return info.value


def long_string_parquet(path: Path, chars: int, compression: str, **kwargs: Any) -> Path:
    """One row of three texts of ``chars`` characters each: a few KB compressed."""
    table = pa.table({c: [c[0] * chars] for c in COLUMNS})
    pq.write_table(table, path, compression=compression, **kwargs)
    return path


# --------------------------------------------------------------------------------------------
# Text length per cell, the same in every format


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_texts_exactly_at_the_limit_are_accepted(tmp_path: Path, fmt: str) -> None:
    rows = [triplet(1), {c: "é" * LIMIT for c in COLUMNS}, triplet(3)]
    path = write_format(tmp_path / f"data.{fmt}", fmt, rows)

    assert describe_dataset(path, fmt, bounds=BOUNDS).rows == 3  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_text_one_over_the_limit_is_refused_naming_row_and_column(
    tmp_path: Path, fmt: str
) -> None:
    rows = [triplet(1), triplet(2), {**triplet(3), "positive": "é" * (LIMIT + 1)}]
    path = write_format(tmp_path / f"data.{fmt}", fmt, rows)

    error = refused(path, fmt)

    assert isinstance(error, TextTooLong) and error.code == "text_too_long"
    assert error.details["row"] == 3 and error.details["column"] == "positive"
    assert error.details["chars"] == LIMIT + 1 and error.details["max_text_chars"] == LIMIT
    assert "column 'positive' has 1001 characters, more than the limit of 1000" in error.message
    if fmt != "parquet":
        assert error.details["line"] == 4 if fmt == "csv" else 3
        assert error.message.startswith(f"line {error.details['line']} (row 3): ")


def test_without_bounds_long_texts_are_read(tmp_path: Path) -> None:
    """Stored files that passed are re-read unbounded (a team's higher limit applied then)."""
    path = write_csv(tmp_path / "data.csv", [{c: "y" * 200_000 for c in COLUMNS}])

    with open_reader(path, "csv") as reader:
        rows = list(reader.rows(COLUMNS))

    assert len(rows[0][2]["anchor"]) == 200_000  # past the csv module's default field limit


# --------------------------------------------------------------------------------------------
# JSONL and CSV: lines are read with a length limit


def test_a_jsonl_line_longer_than_the_bound_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(triplet(1)) + "\n")
        out.write('{"anchor": "' + "z" * (40 * MB) + '", "positive": "p", "negative": "n"}\n')
    line_bound = BOUNDS.jsonl_line_bytes(3)
    assert line_bound is not None and line_bound < MB

    tracemalloc.start()
    try:
        error = refused(path, "jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert isinstance(error, TextTooLong)
    assert error.details["line"] == 2
    assert error.message.startswith(f"line 2: the line is longer than {line_bound} bytes")
    assert peak < 4 * MB  # the 40 MB line was never held


def test_a_csv_record_spanning_lines_is_bounded(tmp_path: Path) -> None:
    """An unclosed quote makes one record of the rest of the file: refused at its start."""
    path = tmp_path / "data.csv"
    path.write_text("anchor,positive,negative\n" + 'a,"b,c\n' + "more text\n" * 200_000)

    error = refused(path, "csv")

    assert isinstance(error, TextTooLong)
    assert error.details["line"] == 2 and "the record starting here" in error.message


def test_old_mac_line_endings_are_not_one_long_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    rows = "\r".join(f"a {i},p {i},n {i}" for i in range(50_000))
    path.write_bytes(("anchor,positive,negative\r" + rows + "\r").encode())

    assert describe_dataset(path, "csv", bounds=BOUNDS).rows == 50_000


def test_text_files_count_their_bytes_against_the_uncompressed_limit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [triplet(i, 100) for i in range(1000)])
    bounds = ReadBounds(max_text_chars=LIMIT, max_uncompressed_bytes=50_000)

    error = refused(path, "jsonl", bounds)

    assert isinstance(error, DatasetTooLarge) and error.code == "dataset_too_large"
    assert error.limit_field == "max_dataset_uncompressed_bytes"
    assert 100 < error.details["line"] < 1000  # type: ignore[operator]


# --------------------------------------------------------------------------------------------
# Parquet: sizes checked before any data is read


@pytest.mark.parametrize("compression", ["zstd", "snappy", "gzip"])
def test_a_compressed_bomb_is_refused_before_decoding(tmp_path: Path, compression: str) -> None:
    path = long_string_parquet(tmp_path / "bomb.parquet", 10 * MB, compression)
    assert path.stat().st_size < 2 * MB  # 30 MB of text

    tracemalloc.start()
    try:
        error = refused(path, "parquet")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert isinstance(error, TextTooLong)
    assert error.details["row"] == 1 and error.details["column"] == "anchor"
    assert peak < 2 * MB


def test_a_plain_encoded_bomb_is_refused_too(tmp_path: Path) -> None:
    path = long_string_parquet(tmp_path / "bomb.parquet", 5 * MB, "zstd", use_dictionary=False)

    assert isinstance(refused(path, "parquet"), TextTooLong)


def test_the_declared_size_is_checked_against_the_dataset_limit(tmp_path: Path) -> None:
    path = long_string_parquet(tmp_path / "big.parquet", 5 * MB, "zstd")
    bounds = ReadBounds(max_text_chars=10 * MB, max_uncompressed_bytes=8 * MB)

    error = refused(path, "parquet", bounds)

    assert isinstance(error, DatasetTooLarge)
    assert "declares" in error.message
    assert error.details["max_dataset_uncompressed_bytes"] == 8 * MB


def test_a_footer_understating_its_sizes_is_caught_by_the_page_headers(tmp_path: Path) -> None:
    path = long_string_parquet(tmp_path / "lying.parquet", 5 * MB, "zstd")
    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(0).column(j).total_uncompressed_size for j in range(3)]
    understate_footer(path, sorted({*sizes, metadata.row_group(0).total_byte_size}))
    lying = pq.ParquetFile(path).metadata.row_group(0)
    assert [lying.column(j).total_uncompressed_size for j in range(3)] == [100, 100, 100]

    # Within the declared limit now, but the pages say otherwise: refused, never read.
    bounds = ReadBounds(max_text_chars=10 * MB, max_uncompressed_bytes=8 * MB)
    too_large = refused(path, "parquet", bounds)
    assert isinstance(too_large, DatasetTooLarge) and "holds at least" in too_large.message

    assert isinstance(refused(path, "parquet"), TextTooLong)


def test_pages_too_large_for_the_memory_bound_are_refused(tmp_path: Path) -> None:
    chars = parquet_bounds.READ_BUDGET_BYTES // 2
    path = long_string_parquet(tmp_path / "pages.parquet", chars, "zstd")
    bounds = ReadBounds(max_text_chars=chars, max_uncompressed_bytes=1 << 40)

    error = refused(path, "parquet", bounds)

    assert type(error) is DatasetFormatError
    assert "too large to read within the memory bound" in error.message
    assert error.details["row_group"] == 1


def test_a_dictionary_bomb_is_read_a_few_rows_at_a_time(tmp_path: Path) -> None:
    """One 2 MB text on every row: 2 MB of data that decodes to 4 GB; refused at row 1."""
    column = pa.DictionaryArray.from_arrays(pa.array([0] * 2000), pa.array(["d" * (2 * MB)]))
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({c: column for c in COLUMNS}), path, compression="zstd")
    bounds = ReadBounds(max_text_chars=3 * MB, max_uncompressed_bytes=1 << 40)

    tracemalloc.start()
    try:
        with open_reader(path, "parquet", bounds) as reader:
            rows = reader.rows(COLUMNS)
            first = next(rows)
            second = next(rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert first[1] == 1 and second[1] == 2
    assert peak < 200 * MB  # Python strings; Arrow's batch is within READ_BUDGET_BYTES
    assert isinstance(refused(path, "parquet"), TextTooLong)


def test_many_row_groups_are_read_one_by_one_with_rows_numbered_across(tmp_path: Path) -> None:
    rows = [triplet(i) for i in range(5000)]
    rows[4321] = {**rows[4321], "negative": "n" * (LIMIT + 1)}
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100)
    assert pq.ParquetFile(path).metadata.num_row_groups == 50

    error = refused(path, "parquet")

    assert isinstance(error, TextTooLong)
    assert error.details == {
        "row": 4322,
        "column": "negative",
        "chars": LIMIT + 1,
        "max_text_chars": LIMIT,
    }


def test_a_valid_file_of_many_row_groups_is_read_whole(tmp_path: Path) -> None:
    rows = [triplet(i, 200) for i in range(20_000)]
    path = tmp_path / "ok.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3000, compression="zstd")

    description = describe_dataset(path, "parquet", bounds=BOUNDS)

    assert description.rows == 20_000


def test_delta_byte_array_pages_are_read(tmp_path: Path) -> None:
    rows = [triplet(i, 300) for i in range(3000)]
    path = tmp_path / "delta.parquet"
    table = pa.Table.from_pylist(rows)
    pq.write_table(table, path, use_dictionary=False, column_encoding="DELTA_BYTE_ARRAY")

    assert describe_dataset(path, "parquet", bounds=BOUNDS).rows == 3000


def test_garbage_where_page_headers_should_be_is_a_format_error(tmp_path: Path) -> None:
    path = write_format(tmp_path / "data.parquet", "parquet", [triplet(i) for i in range(50)])
    start = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    dictionary = pq.ParquetFile(path).metadata.row_group(0).column(0).dictionary_page_offset
    offset = dictionary if 0 < dictionary < start else start
    data[offset : offset + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))

    error = refused(path, "parquet")

    assert type(error) is DatasetFormatError
    assert "could not be read as Parquet" in error.message


def test_what_a_dictionary_decodes_to_counts_against_the_uncompressed_limit(
    tmp_path: Path,
) -> None:
    column = pa.DictionaryArray.from_arrays(pa.array([0] * 5000), pa.array(["v" * LIMIT]))
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({c: column for c in COLUMNS}), path)
    assert path.stat().st_size < 20_000  # 15 MB of text
    bounds = ReadBounds(max_text_chars=LIMIT, max_uncompressed_bytes=MB)

    error = refused(path, "parquet", bounds)

    assert isinstance(error, DatasetTooLarge) and "decode to more than" in error.message
