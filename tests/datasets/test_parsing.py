"""Tests for app.datasets.parsing: format detection and streaming validation of uploads."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.datasets.parsing import (
    PAIR_COLUMNS,
    TRIPLET_COLUMNS,
    DatasetDescription,
    DatasetFormatError,
    describe_dataset,
    detect_format,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
SNLI_TRIPLETS = DATA_DIR / "snli_dev_triplets.jsonl"

# Texts that exercise CSV quoting: commas, double quotes, embedded LF and CRLF, non-ASCII.
AWKWARD_ROWS: list[dict[str, str]] = [
    {
        "anchor": 'She said "hello, world" and left.',
        "positive": "A woman spoke,\nthen went away.",
        "negative": 'Nobody said anything, "ever".',
    },
    {
        "anchor": "Line one\r\nline two, with a comma",
        "positive": "Café, naïve, 東京 — unicode text",
        "negative": '""',
    },
]


@pytest.fixture(scope="module")
def snli_rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    with SNLI_TRIPLETS.open(encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) == 300:
                break
    assert len(rows) == 300
    assert all(set(row) == set(TRIPLET_COLUMNS) for row in rows)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    return path


def write_parquet(path: Path, table: pa.Table, **kwargs: Any) -> Path:
    pq.write_table(table, path, **kwargs)
    return path


def format_error(path: Path, fmt: Any) -> DatasetFormatError:
    with pytest.raises(DatasetFormatError) as info:
        describe_dataset(path, fmt)
    return info.value


# --------------------------------------------------------------------------------------------
# detect_format


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("train.jsonl", "jsonl"),
        ("train.ndjson", "jsonl"),
        ("train.json", "jsonl"),
        ("TRAIN.JSONL", "jsonl"),
        ("train.csv", "csv"),
        ("my.data.CSV", "csv"),
        ("train.parquet", "parquet"),
        ("train.pq", "parquet"),
        ("C:\\Users\\me\\Desktop\\train.csv", "csv"),
        ("/home/me/train.parquet", "parquet"),
    ],
)
def test_detect_format_by_extension(filename: str, expected: str) -> None:
    assert detect_format(filename, b"anchor,positive\n") == expected


def test_detect_format_extension_wins_over_content() -> None:
    assert detect_format("data.csv", b'{"anchor": "a"}\n') == "csv"
    assert detect_format("data.jsonl", b"PAR1\x00\x00") == "jsonl"
    assert detect_format("data.parquet", b"anchor,positive\n") == "parquet"


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        (None, b"PAR1\x15\x04\x15\x00\x00binary", "parquet"),
        (None, b'{"anchor": "a", "positive": "b"}\n', "jsonl"),
        (None, b'  \n\r\n\t{"anchor": "a"}', "jsonl"),
        (None, b'\xef\xbb\xbf{"anchor": "a"}', "jsonl"),
        (None, b"anchor,positive,negative\na,b,c\n", "csv"),
        (None, b"\xef\xbb\xbfanchor,positive\n", "csv"),
        ("upload.txt", b'{"anchor": "x"}', "jsonl"),
        ("upload.txt", b"anchor,positive\n", "csv"),
        ("", b"anchor,positive\n", "csv"),
        ("noextension", b"PAR1", "parquet"),
    ],
)
def test_detect_format_sniffs_content(filename: str | None, head: bytes, expected: str) -> None:
    assert detect_format(filename, head) == expected


def test_detect_format_tolerates_a_character_cut_at_the_end_of_the_head() -> None:
    head = "anchor,positive\nnaïve,東".encode()[:-1]  # last character truncated mid-sequence
    assert detect_format(None, head) == "csv"


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"   \n\t\r\n",
        b"\xef\xbb\xbf",
        b"PK\x03\x04\x14\x00\x06\x00binary zip data",  # e.g. an .xlsx
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00",  # gzip
        b"anchor,positive\n\xff\xfe,b\n",  # not UTF-8
        b"text with a \x00 NUL byte",
    ],
)
def test_detect_format_rejects_content_that_is_no_supported_format(head: bytes) -> None:
    with pytest.raises(DatasetFormatError) as info:
        detect_format(None, head)
    assert "JSON Lines, CSV or Parquet" in info.value.message
    assert info.value.details == {}


def test_detect_format_unknown_extension_falls_back_to_sniffing_and_can_fail() -> None:
    with pytest.raises(DatasetFormatError):
        detect_format("archive.zip", b"PK\x03\x04\x14\x00")


# --------------------------------------------------------------------------------------------
# The error type


def test_dataset_format_error_carries_message_and_details() -> None:
    error = DatasetFormatError("line 2: broken", {"line": 2})
    assert error.message == "line 2: broken"
    assert str(error) == "line 2: broken"
    assert error.details == {"line": 2}
    assert DatasetFormatError("no details").details == {}


# --------------------------------------------------------------------------------------------
# Valid files built from real SNLI rows


def test_describes_the_shared_snli_triplet_file_itself() -> None:
    description = describe_dataset(SNLI_TRIPLETS, "jsonl")
    assert description == DatasetDescription(
        format="jsonl",
        kind="triplet",
        columns=("anchor", "positive", "negative"),
        text_columns=("anchor", "positive", "negative"),
        rows=3253,
    )


def test_jsonl_triplets_from_real_rows(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", snli_rows + AWKWARD_ROWS)
    description = describe_dataset(path, "jsonl")
    assert description.format == "jsonl"
    assert description.kind == "triplet"
    assert description.columns == ("anchor", "positive", "negative")
    assert description.text_columns == TRIPLET_COLUMNS
    assert description.rows == 302


def test_jsonl_non_ascii_written_raw(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    path = tmp_path / "raw.jsonl"
    rows = snli_rows[:5] + AWKWARD_ROWS
    path.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    assert describe_dataset(path, "jsonl").rows == 7


def test_csv_triplets_from_real_rows_with_quoting(
    tmp_path: Path, snli_rows: list[dict[str, str]]
) -> None:
    rows = snli_rows + AWKWARD_ROWS
    path = write_csv(
        tmp_path / "train.csv",
        list(TRIPLET_COLUMNS),
        [[row[c] for c in TRIPLET_COLUMNS] for row in rows],
    )
    raw = path.read_bytes()
    assert b'"She said ""hello, world"" and left."' in raw  # the quoting really is exercised
    assert b"A woman spoke,\nthen went away." in raw
    description = describe_dataset(path, "csv")
    assert description == DatasetDescription(
        format="csv",
        kind="triplet",
        columns=TRIPLET_COLUMNS,
        text_columns=TRIPLET_COLUMNS,
        rows=302,
    )


def test_parquet_triplets_from_real_rows(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    rows = snli_rows + AWKWARD_ROWS
    table = pa.Table.from_pylist(rows)
    path = write_parquet(tmp_path / "train.parquet", table)
    description = describe_dataset(path, "parquet")
    assert description == DatasetDescription(
        format="parquet",
        kind="triplet",
        columns=TRIPLET_COLUMNS,
        text_columns=TRIPLET_COLUMNS,
        rows=302,
    )


def test_parquet_with_many_batches_and_row_groups(
    tmp_path: Path, snli_rows: list[dict[str, str]]
) -> None:
    rows = (snli_rows * 70)[:20_001]
    path = write_parquet(tmp_path / "big.parquet", pa.Table.from_pylist(rows), row_group_size=3000)
    assert describe_dataset(path, "parquet").rows == 20_001


def test_extra_columns_are_kept_in_file_order(
    tmp_path: Path, snli_rows: list[dict[str, str]]
) -> None:
    rows = [
        {
            "id": i,
            "negative": r["negative"],
            "source": "snli",
            "anchor": r["anchor"],
            "positive": r["positive"],
        }
        for i, r in enumerate(snli_rows[:20])
    ]
    expected_columns = ("id", "negative", "source", "anchor", "positive")

    jsonl = describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert jsonl.columns == expected_columns
    assert jsonl.text_columns == ("anchor", "positive", "negative")
    assert jsonl.kind == "triplet"

    csv_path = write_csv(
        tmp_path / "x.csv", list(expected_columns), [list(r.values()) for r in rows]
    )
    csv_description = describe_dataset(csv_path, "csv")
    assert csv_description.columns == expected_columns
    assert csv_description.text_columns == ("anchor", "positive", "negative")

    parquet = describe_dataset(
        write_parquet(tmp_path / "x.parquet", pa.Table.from_pylist(rows)), "parquet"
    )
    assert parquet.columns == expected_columns
    assert parquet.text_columns == ("anchor", "positive", "negative")


def test_extra_columns_may_hold_any_values(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"anchor": "a", "positive": "b", "score": None, "tags": [1, 2]},
        {"anchor": "c", "positive": "d", "score": 0.5, "tags": ""},
    ]
    assert describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl").rows == 2
    csv_path = write_csv(tmp_path / "x.csv", ["anchor", "positive", "note"], [["a", "b", ""]])
    assert describe_dataset(csv_path, "csv").rows == 1


def test_pair_datasets_in_every_format(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    pairs = [{"anchor": r["anchor"], "positive": r["positive"]} for r in snli_rows[:50]]
    paths = {
        "jsonl": write_jsonl(tmp_path / "p.jsonl", pairs),
        "csv": write_csv(
            tmp_path / "p.csv", list(PAIR_COLUMNS), [[r["anchor"], r["positive"]] for r in pairs]
        ),
        "parquet": write_parquet(tmp_path / "p.parquet", pa.Table.from_pylist(pairs)),
    }
    for fmt, path in paths.items():
        description = describe_dataset(path, fmt)  # type: ignore[arg-type]
        assert description == DatasetDescription(
            format=fmt,  # type: ignore[arg-type]
            kind="pair",
            columns=PAIR_COLUMNS,
            text_columns=PAIR_COLUMNS,
            rows=50,
        )


def test_utf8_bom_is_tolerated(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    bom = b"\xef\xbb\xbf"
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + b"".join(json.dumps(r).encode() + b"\n" for r in snli_rows[:10]))
    assert describe_dataset(jsonl, "jsonl").rows == 10

    csv_path = write_csv(
        tmp_path / "bom.csv",
        list(TRIPLET_COLUMNS),
        [[r[c] for c in TRIPLET_COLUMNS] for r in snli_rows[:10]],
    )
    csv_path.write_bytes(bom + csv_path.read_bytes())
    description = describe_dataset(csv_path, "csv")
    assert description.columns == TRIPLET_COLUMNS  # not "\ufeffanchor"
    assert description.kind == "triplet"
    assert description.rows == 10


def test_crlf_and_lone_cr_line_endings(tmp_path: Path) -> None:
    crlf_jsonl = tmp_path / "crlf.jsonl"
    crlf_jsonl.write_bytes(
        b'{"anchor": "a", "positive": "b"}\r\n{"anchor": "c", "positive": "d"}\r\n'
    )
    assert describe_dataset(crlf_jsonl, "jsonl").rows == 2

    crlf_csv = tmp_path / "crlf.csv"
    crlf_csv.write_bytes(b'anchor,positive\r\na,b\r\nc,"d\r\ne"\r\n')
    assert describe_dataset(crlf_csv, "csv").rows == 2

    cr_csv = tmp_path / "cr.csv"
    cr_csv.write_bytes(b"anchor,positive\ra,b\rc,d\r")
    assert describe_dataset(cr_csv, "csv").rows == 2


def test_jsonl_without_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "c", "positive": "d"}')
    assert describe_dataset(path, "jsonl").rows == 2


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text(
        '\n{"anchor": "a", "positive": "b"}\n   \n\n{"anchor": "c", "positive": "d"}\n\n'
    )
    assert describe_dataset(jsonl, "jsonl").rows == 2

    csv_path = tmp_path / "x.csv"
    csv_path.write_text("anchor,positive\na,b\n\nc,d\n\n")
    assert describe_dataset(csv_path, "csv").rows == 2


def test_parquet_accepts_large_and_dictionary_strings(tmp_path: Path) -> None:
    table = pa.table(
        {
            "anchor": pa.array(["a", "b"], type=pa.large_string()),
            "positive": pa.array(["c", "d"]).dictionary_encode(),
            "negative": pa.array(["e", "f"], type=pa.string()),
        }
    )
    path = write_parquet(tmp_path / "x.parquet", table)
    description = describe_dataset(path, "parquet")
    assert description.kind == "triplet"
    assert description.rows == 2


def test_parquet_extra_column_of_other_type_is_fine(tmp_path: Path) -> None:
    table = pa.table({"anchor": ["a"], "positive": ["b"], "label": pa.array([1], pa.int64())})
    description = describe_dataset(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert description.columns == ("anchor", "positive", "label")
    assert description.kind == "pair"


# --------------------------------------------------------------------------------------------
# Encoding errors


def test_jsonl_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(
        b'{"anchor": "a", "positive": "b"}\n\n{"anchor": "caf\xe9", "positive": "b"}\n'
    )
    error = format_error(path, "jsonl")
    assert error.message.startswith("line 3: ")
    assert "UTF-8" in error.message
    assert error.details == {"line": 3}


def test_csv_invalid_utf8_names_the_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    # Line 3 holds the second half of a quoted multi-line field; the bad byte is on line 4.
    path.write_bytes(b'anchor,positive\na,"multi\nline"\nb,\xff\xfe\n')
    error = format_error(path, "csv")
    assert error.message.startswith("line 4: ")
    assert "UTF-8" in error.message
    assert error.details == {"line": 4}


def test_latin1_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("anchor,positive\nnaïve,café\n".encode("latin-1"))
    error = format_error(path, "csv")
    assert error.details == {"line": 2}


def test_bom_only_at_start_is_tolerated_not_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"anchor,positive\n\xef\xbb\xbfa,b\n")
    # A BOM later in the file is a valid (if odd) character, not an encoding error.
    assert describe_dataset(path, "csv").rows == 1


# --------------------------------------------------------------------------------------------
# JSONL structure errors


def test_jsonl_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n\n{"anchor": "c" "positive": "d"}\n')
    error = format_error(path, "jsonl")
    assert error.message.startswith("line 3 (row 2): not valid JSON")
    assert error.details == {"line": 3, "row": 2}


@pytest.mark.parametrize(
    ("line", "got"),
    [
        ('["a", "b", "c"]', "array"),
        ('"just a string"', "string"),
        ("42", "number"),
        ("null", "null"),
        ("true", "boolean"),
    ],
)
def test_jsonl_non_object_line_is_rejected(tmp_path: Path, line: str, got: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"anchor": "a", "positive": "b"}\n' + line + "\n")
    error = format_error(path, "jsonl")
    assert error.message == (
        f"line 2 (row 2): expected a JSON object with the row's columns (got {got})"
    )
    assert error.details == {"line": 2, "row": 2}


def test_jsonl_first_line_non_object(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('[{"anchor": "a", "positive": "b"}]\n')
    error = format_error(path, "jsonl")
    assert error.details == {"line": 1, "row": 1}
    assert "got array" in error.message


def test_jsonl_later_row_missing_a_text_column(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [
            {"anchor": "a", "positive": "b", "negative": "c"},
            {"anchor": "a", "positive": "b", "negative": "c"},
            {"anchor": "a", "positive": "b"},
        ],
    )
    error = format_error(path, "jsonl")
    assert error.message == "line 3 (row 3): column 'negative' is missing"
    assert error.details == {"line": 3, "row": 3, "column": "negative"}


def test_jsonl_later_row_may_lack_an_extra_column(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [{"anchor": "a", "positive": "b", "id": 1}, {"anchor": "a", "positive": "b"}],
    )
    description = describe_dataset(path, "jsonl")
    assert description.columns == ("anchor", "positive", "id")
    assert description.rows == 2


# --------------------------------------------------------------------------------------------
# Text values


def test_whitespace_only_value_error_message_matches_the_documented_form(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [
            {"anchor": "a", "positive": "b", "negative": "c"},
            {"anchor": "a", "positive": "b", "negative": "c"},
            {"anchor": "a", "positive": "b", "negative": " \t\n "},
        ],
    )
    error = format_error(path, "jsonl")
    assert error.message == "line 3 (row 3): column 'negative' is empty or whitespace-only"
    assert error.details == {"line": 3, "row": 3, "column": "negative"}


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (None, "null"),
        (3, "number"),
        (2.5, "number"),
        (["x"], "array"),
        ({"t": "x"}, "object"),
        (False, "boolean"),
    ],
)
def test_jsonl_non_string_text_value(tmp_path: Path, value: Any, got: str) -> None:
    path = write_jsonl(
        tmp_path / "x.jsonl",
        [{"anchor": "a", "positive": "b"}, {"anchor": "a", "positive": value}],
    )
    error = format_error(path, "jsonl")
    assert error.message == f"line 2 (row 2): column 'positive' is not a string (got {got})"
    assert error.details == {"line": 2, "row": 2, "column": "positive"}


@pytest.mark.parametrize("value", ["", "   ", "\t", "\u3000\u00a0"])
def test_jsonl_empty_text_value(tmp_path: Path, value: str) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"anchor": value, "positive": "b"}])
    error = format_error(path, "jsonl")
    assert error.message == "line 1 (row 1): column 'anchor' is empty or whitespace-only"
    assert error.details == {"line": 1, "row": 1, "column": "anchor"}


def test_csv_empty_value_names_line_and_row(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    # Row 2 spans lines 3-4; the blank line 5 is not a row; row 3 starts on line 6.
    path.write_text('anchor,positive,negative\na,b,c\nd,"e\nf",g\n\nh,i,"  "\n')
    error = format_error(path, "csv")
    assert error.message == "line 6 (row 3): column 'negative' is empty or whitespace-only"
    assert error.details == {"line": 6, "row": 3, "column": "negative"}


def test_csv_empty_quoted_value(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('anchor,positive\n"",b\n')
    error = format_error(path, "csv")
    assert error.details == {"line": 2, "row": 1, "column": "anchor"}


def test_parquet_null_text_value(tmp_path: Path) -> None:
    table = pa.table({"anchor": ["a", "b", "c"], "positive": ["d", None, "f"]})
    error = format_error(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert error.message == "row 2: column 'positive' is not a string (got null)"
    assert error.details == {"row": 2, "column": "positive"}


def test_parquet_whitespace_value_row_counts_across_batches(tmp_path: Path) -> None:
    anchors = ["text"] * 20_000
    anchors[17_345] = "  "
    table = pa.table({"anchor": anchors, "positive": ["p"] * 20_000})
    path = write_parquet(tmp_path / "x.parquet", table, row_group_size=5000)
    error = format_error(path, "parquet")
    assert error.message == "row 17346: column 'anchor' is empty or whitespace-only"
    assert error.details == {"row": 17_346, "column": "anchor"}


def test_parquet_reports_the_earliest_bad_row_across_columns(tmp_path: Path) -> None:
    table = pa.table({"anchor": ["a", "b", ""], "positive": ["x", "", "z"]})
    error = format_error(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert {k: error.details[k] for k in ("row", "column")} == {"row": 2, "column": "positive"}
    # Every problem is listed, not only the first.
    assert error.details["problem_count"] == 2
    assert [(p["row"], p["column"]) for p in error.details["problems"]] == [
        (2, "positive"),
        (3, "anchor"),
    ]


@pytest.mark.parametrize(
    "arrow_type_values",
    [
        (pa.int64(), [1, 2]),
        (pa.float64(), [1.0, 2.0]),
        (pa.binary(), [b"a", b"b"]),
        (pa.list_(pa.string()), [["a"], ["b"]]),
    ],
)
def test_parquet_non_string_text_column(tmp_path: Path, arrow_type_values: Any) -> None:
    arrow_type, values = arrow_type_values
    table = pa.table({"anchor": ["a", "b"], "positive": pa.array(values, type=arrow_type)})
    error = format_error(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert error.message.startswith("column 'positive' has type ")
    assert error.message.endswith(": text columns must be strings")
    assert error.details == {"column": "positive"}


# --------------------------------------------------------------------------------------------
# CSV structure errors


def test_csv_row_with_too_many_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("anchor,positive\na,b\nc,d,e\n")
    error = format_error(path, "csv")
    assert error.message == "line 3 (row 2): expected 2 fields as in the header, found 3"
    assert error.details == {"line": 3, "row": 2}


def test_csv_row_with_too_few_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("anchor,positive,negative\na,b,c\nunquoted, with a comma\n")
    error = format_error(path, "csv")
    assert error.message == "line 3 (row 2): expected 3 fields as in the header, found 2"


def test_csv_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('anchor,positive\na,b\nc,"never closed\nd,e\nf,g\n')
    error = format_error(path, "csv")
    assert error.message.startswith("line 3: malformed CSV")
    assert error.details == {"line": 3}


def test_csv_stray_quote_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text('anchor,positive\n"a"b,c\n')
    error = format_error(path, "csv")
    assert error.message.startswith("line 2: malformed CSV")
    assert error.details == {"line": 2}


def test_csv_empty_file_has_no_header(tmp_path: Path) -> None:
    for content in (b"", b"\n\n"):
        path = tmp_path / "x.csv"
        path.write_bytes(content)
        error = format_error(path, "csv")
        assert "needs a header row" in error.message


def test_csv_without_header_is_rejected_by_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("A man plays guitar.,A person plays music.,A cat sleeps.\n")
    error = format_error(path, "csv")
    assert error.message.startswith("line 1: missing column(s) 'anchor', 'positive'")
    assert error.details["line"] == 1


def test_csv_duplicate_header_column(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("anchor,positive,anchor\na,b,c\n")
    error = format_error(path, "csv")
    assert error.message == "line 1: column 'anchor' appears more than once in the header"
    assert error.details == {"line": 1, "column": "anchor"}


# --------------------------------------------------------------------------------------------
# Parquet structure errors


@pytest.mark.parametrize(
    "content",
    [b"", b"not a parquet file at all", b"PAR1" + b"\x00" * 64 + b"PAR1"],
)
def test_parquet_unreadable_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(content)
    error = format_error(path, "parquet")
    assert error.message.startswith("the file could not be read as Parquet")


def test_parquet_truncated_file(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    path = write_parquet(tmp_path / "x.parquet", pa.Table.from_pylist(snli_rows))
    path.write_bytes(path.read_bytes()[:-100])
    error = format_error(path, "parquet")
    assert error.message.startswith("the file could not be read as Parquet")


def test_parquet_with_corrupt_data_pages(tmp_path: Path, snli_rows: list[dict[str, str]]) -> None:
    path = write_parquet(
        tmp_path / "x.parquet", pa.Table.from_pylist(snli_rows), compression="none"
    )
    data = bytearray(path.read_bytes())
    # Overwrite the middle of the data pages (after the leading magic, before the footer).
    start, end = 64, len(data) // 2
    data[start:end] = b"\xff" * (end - start)
    path.write_bytes(bytes(data))
    error = format_error(path, "parquet")
    assert "could not be read as Parquet" in error.message


# --------------------------------------------------------------------------------------------
# Kind / missing columns


MISSING_MESSAGE = (
    "missing column(s) {names}: a triplet dataset needs columns anchor, positive, negative "
    "(a pair dataset anchor, positive; STS data sentence1, sentence2, score; NLI data premise, "
    "hypothesis, label); columns with other names can be given these roles with the "
    "column_mapping field"
)


@pytest.mark.parametrize(
    ("columns", "missing"),
    [
        (["text", "label"], ["anchor", "positive"]),
        (["anchor"], ["positive"]),
        (["anchor", "negative"], ["positive"]),
        (["positive", "negative", "extra"], ["anchor"]),
        (["Anchor", "Positive"], ["anchor", "positive"]),
    ],
)
def test_missing_columns_in_every_format(
    tmp_path: Path, columns: list[str], missing: list[str]
) -> None:
    row = {c: f"value of {c}" for c in columns}
    names = ", ".join(f"'{m}'" for m in missing)
    expected = MISSING_MESSAGE.format(names=names)

    jsonl = format_error(write_jsonl(tmp_path / "x.jsonl", [row]), "jsonl")
    assert jsonl.message == "line 1: " + expected
    assert jsonl.details == {"line": 1, "missing": missing, "columns": columns}

    csv_error = format_error(write_csv(tmp_path / "x.csv", columns, [list(row.values())]), "csv")
    assert csv_error.message == "line 1: " + expected
    assert csv_error.details == {"line": 1, "missing": missing, "columns": columns}

    parquet = format_error(
        write_parquet(tmp_path / "x.parquet", pa.Table.from_pylist([row])), "parquet"
    )
    assert parquet.message == expected
    assert parquet.details == {"missing": missing, "columns": columns}


def test_jsonl_columns_come_from_the_first_object_after_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('\n\n{"sentence1": "a", "sentence2": "b"}\n')
    error = format_error(path, "jsonl")
    assert error.details["line"] == 3
    assert error.details["columns"] == ["sentence1", "sentence2"]


def test_kind_is_pair_without_negative_and_triplet_with_it(tmp_path: Path) -> None:
    pair = write_jsonl(tmp_path / "p.jsonl", [{"positive": "b", "anchor": "a"}])
    assert describe_dataset(pair, "jsonl").kind == "pair"
    assert describe_dataset(pair, "jsonl").text_columns == ("anchor", "positive")
    triplet = write_jsonl(tmp_path / "t.jsonl", [{"negative": "c", "positive": "b", "anchor": "a"}])
    assert describe_dataset(triplet, "jsonl").kind == "triplet"
    assert describe_dataset(triplet, "jsonl").columns == ("negative", "positive", "anchor")
    assert describe_dataset(triplet, "jsonl").text_columns == ("anchor", "positive", "negative")


# --------------------------------------------------------------------------------------------
# No data rows


def test_no_data_rows_in_every_format(tmp_path: Path) -> None:
    empty_jsonl = tmp_path / "empty.jsonl"
    empty_jsonl.write_bytes(b"")
    blank_jsonl = tmp_path / "blank.jsonl"
    blank_jsonl.write_bytes(b"\xef\xbb\xbf\n  \n\r\n")
    header_only = tmp_path / "header.csv"
    header_only.write_text("anchor,positive,negative\n\n")
    no_rows = tmp_path / "empty.parquet"
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in TRIPLET_COLUMNS}), no_rows)
    for path, fmt in [
        (empty_jsonl, "jsonl"),
        (blank_jsonl, "jsonl"),
        (header_only, "csv"),
        (no_rows, "parquet"),
    ]:
        error = format_error(path, fmt)
        assert error.message == "the file has no data rows", path


# --------------------------------------------------------------------------------------------
# Error details are JSON-serialisable (they end up in an HTTP error body)


def test_error_details_are_json_serialisable(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}])
    error = format_error(path, "jsonl")
    assert json.loads(json.dumps(error.details)) == error.details


# --------------------------------------------------------------------------------------------
# The module stays on the light side of the dependency split


def test_parsing_does_not_import_heavy_ml_libraries() -> None:
    code = (
        "import sys, app.datasets.parsing\n"
        "heavy = [m for m in ('torch', 'datasets', 'transformers', 'sentence_transformers')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
