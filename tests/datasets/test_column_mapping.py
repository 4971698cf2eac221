"""column_mapping: roles given to the file's own column names, checked and applied on upload."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from app.datasets.errors import DatasetFormatError
from app.datasets.parsing import describe_dataset
from app.datasets.roles import parse_column_mapping
from tests.datasets.files import (
    SNLI_TRIPLETS,
    format_error,
    read_jsonl,
    write_format,
    write_jsonl,
    write_parquet,
)

MAPPING = {"anchor": "query", "positive": "passage", "negative": "hard_negative"}
FORMATS = ["jsonl", "csv", "parquet"]


@pytest.fixture(scope="module")
def retrieval_rows() -> list[dict[str, Any]]:
    """Real SNLI triplets under retrieval-style names, with an extra `id` column first."""
    return [
        {"id": i, "query": r["anchor"], "passage": r["positive"], "hard_negative": r["negative"]}
        for i, r in enumerate(read_jsonl(SNLI_TRIPLETS, limit=200))
    ]


# --------------------------------------------------------------------------------------------
# The form field


def test_absent_or_blank_mapping_is_none() -> None:
    assert parse_column_mapping(None) is None
    assert parse_column_mapping("") is None
    assert parse_column_mapping("  \n") is None
    assert parse_column_mapping("{}") is None


def test_a_valid_mapping_parses() -> None:
    assert parse_column_mapping(json.dumps(MAPPING)) == MAPPING
    assert parse_column_mapping('{"negative_2": "hn2", "score": "sim"}') == {
        "negative_2": "hn2",
        "score": "sim",
    }


@pytest.mark.parametrize(
    ("raw", "in_message", "details"),
    [
        ('{"anchor": "query",}', "not valid JSON", {}),
        ("anchor=query", "not valid JSON", {}),
        ('["anchor", "query"]', "(got array)", {}),
        ('"anchor"', "(got string)", {}),
        ("null", "(got null)", {}),
        ("42", "(got number)", {}),
        ('{"query": "anchor"}', "unknown role 'query'", {"role": "query"}),
        ('{"negative_0": "hn"}', "unknown role 'negative_0'", {"role": "negative_0"}),
        ('{"Anchor": "q"}', "unknown role 'Anchor'", {"role": "Anchor"}),
        ('{"anchor": 3}', "role 'anchor' must be mapped to a column name", {"role": "anchor"}),
        ('{"anchor": ""}', "role 'anchor' must be mapped to a column name", {"role": "anchor"}),
        (
            '{"anchor": "text", "positive": "text"}',
            "roles 'anchor' and 'positive' are both mapped to column 'text'",
            {"role": "positive", "column": "text"},
        ),
        (
            '{"anchor": "q", "anchor": "p"}',
            "role 'anchor' is given more than once",
            {"role": "anchor"},
        ),
    ],
)
def test_invalid_mappings_are_column_mapping_errors(
    raw: str, in_message: str, details: dict[str, Any]
) -> None:
    with pytest.raises(DatasetFormatError) as info:
        parse_column_mapping(raw)
    assert info.value.field == "column_mapping"
    assert in_message in info.value.message
    assert info.value.details == details


# --------------------------------------------------------------------------------------------
# Applying it


@pytest.mark.parametrize("fmt", FORMATS)
def test_mapped_triplets_with_an_extra_column(
    tmp_path: Path, fmt: str, retrieval_rows: list[dict[str, Any]]
) -> None:
    path = write_format(tmp_path, fmt, retrieval_rows)
    description = describe_dataset(path, fmt, MAPPING)  # type: ignore[arg-type]
    assert description.kind == "triplet"
    assert description.columns == ("id", "query", "passage", "hard_negative")
    assert description.text_columns == ("query", "passage", "hard_negative")
    assert description.negatives == 1
    assert description.rows == 200
    assert description.stored_format is None and description.conversion is None


def test_without_the_mapping_the_same_file_is_rejected(
    tmp_path: Path, retrieval_rows: list[dict[str, Any]]
) -> None:
    error = format_error(write_jsonl(tmp_path / "x.jsonl", retrieval_rows), "jsonl")
    assert error.field == "file"
    assert error.details["missing"] == ["anchor", "positive"]
    assert "column_mapping" in error.message


def test_unmapped_columns_keep_their_role_names(tmp_path: Path) -> None:
    rows = [
        {"anchor": r["anchor"], "passage": r["positive"], "negative": r["negative"]}
        for r in read_jsonl(SNLI_TRIPLETS, limit=20)
    ]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    description = describe_dataset(path, "jsonl", {"positive": "passage"})
    assert description.text_columns == ("anchor", "passage", "negative")
    assert description.kind == "triplet"


def test_a_mapped_role_wins_over_a_column_of_that_name(tmp_path: Path) -> None:
    # The file's own `anchor` column is not the anchor any more: it is an extra column.
    rows = [
        {"anchor": "", "query": r["anchor"], "positive": r["positive"]}
        for r in read_jsonl(SNLI_TRIPLETS, limit=10)
    ]
    description = describe_dataset(
        write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", {"anchor": "query"}
    )
    assert description.kind == "pair"
    assert description.text_columns == ("query", "positive")


def test_roles_can_be_swapped(tmp_path: Path) -> None:
    rows = [
        {"anchor": r["positive"], "positive": r["anchor"]} for r in read_jsonl(SNLI_TRIPLETS, 10)
    ]
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    description = describe_dataset(path, "jsonl", {"anchor": "positive", "positive": "anchor"})
    assert description.text_columns == ("positive", "anchor")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_mapped_column_the_file_lacks(
    tmp_path: Path, fmt: str, retrieval_rows: list[dict[str, Any]]
) -> None:
    path = write_format(tmp_path, fmt, retrieval_rows)
    error = format_error(path, fmt, {**MAPPING, "negative": "hard_neg"})
    assert error.field == "column_mapping"
    assert error.message.startswith(
        "role 'negative' is mapped to column 'hard_neg', which the file does not have"
    )
    assert error.details == {
        "role": "negative",
        "column": "hard_neg",
        "columns": ["id", "query", "passage", "hard_negative"],
    }


def test_a_mapped_role_the_shape_does_not_use(
    tmp_path: Path, retrieval_rows: list[dict[str, Any]]
) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", retrieval_rows)
    error = format_error(path, "jsonl", {**MAPPING, "label": "id"})
    assert error.field == "column_mapping"
    assert "role 'label' is not used" in error.message
    assert "triplet data, with roles anchor, positive, negative" in error.message
    assert error.details == {"role": "label", "column": "id"}


def test_value_errors_name_the_source_column(
    tmp_path: Path, retrieval_rows: list[dict[str, Any]]
) -> None:
    rows = [dict(r) for r in retrieval_rows[:5]]
    rows[3]["passage"] = "   "
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", MAPPING)
    assert error.field == "file"
    assert error.message == "line 4 (row 4): column 'passage' is empty or whitespace-only"
    assert error.details == {"line": 4, "row": 4, "column": "passage"}

    del rows[3]["passage"]
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", MAPPING)
    assert error.message == "line 4 (row 4): column 'passage' is missing"

    rows = [dict(r) for r in retrieval_rows[:5]]
    rows[2]["hard_negative"] = ""
    error = format_error(write_format(tmp_path, "csv", rows), "csv", MAPPING)
    assert error.details == {"line": 4, "row": 3, "column": "hard_negative"}


def test_parquet_mapped_column_must_be_a_string(tmp_path: Path) -> None:
    table = pa.table({"q": ["a", "b"], "p": pa.array([1, 2], pa.int64())})
    error = format_error(
        write_parquet(tmp_path / "x.parquet", table), "parquet", {"anchor": "q", "positive": "p"}
    )
    assert error.message == "column 'p' has type int64: text columns must be strings"
    assert error.details == {"column": "p"}


def test_describe_rechecks_a_mapping_given_directly(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"q": "a", "p": "b"}])
    error = format_error(path, "jsonl", {"anchor": "q", "positive": "q"})
    assert error.field == "column_mapping"
