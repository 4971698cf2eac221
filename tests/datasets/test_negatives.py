"""Several negatives per row: negative_1..negative_N (or negative, negative_2, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.datasets.parsing import describe_dataset
from tests.datasets.files import (
    SNLI_TRIPLETS,
    format_error,
    read_jsonl,
    write_csv,
    write_format,
    write_jsonl,
)

FORMATS = ["jsonl", "csv", "parquet"]


@pytest.fixture(scope="module")
def hard_rows() -> list[dict[str, str]]:
    """Real rows: anchor, positive, its contradiction, and contradictions of other premises."""
    triplets = read_jsonl(SNLI_TRIPLETS, limit=400)
    negatives = [r["negative"] for r in triplets]
    rows = []
    for i, r in enumerate(triplets[:100]):
        rows.append(
            {
                "anchor": r["anchor"],
                "positive": r["positive"],
                "negative_1": r["negative"],
                "negative_2": negatives[i + 100],
                "negative_3": negatives[i + 200],
            }
        )
    return rows


def _renamed(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    return [{names.get(k, k): v for k, v in r.items()} for r in rows]


@pytest.mark.parametrize("fmt", FORMATS)
def test_numbered_negatives_make_a_triplet_dataset(
    tmp_path: Path, fmt: str, hard_rows: list[dict[str, str]]
) -> None:
    description = describe_dataset(write_format(tmp_path, fmt, hard_rows), fmt)  # type: ignore[arg-type]
    assert description.kind == "triplet"
    assert description.text_columns == (
        "anchor",
        "positive",
        "negative_1",
        "negative_2",
        "negative_3",
    )
    assert description.negatives == 3
    assert description.rows == 100


@pytest.mark.parametrize("fmt", FORMATS)
def test_negative_counts_as_the_first(
    tmp_path: Path, fmt: str, hard_rows: list[dict[str, str]]
) -> None:
    rows = _renamed(hard_rows, {"negative_1": "negative"})
    description = describe_dataset(write_format(tmp_path, fmt, rows), fmt)  # type: ignore[arg-type]
    assert description.text_columns == (
        "anchor",
        "positive",
        "negative",
        "negative_2",
        "negative_3",
    )
    assert description.negatives == 3


def test_negatives_are_ordered_by_number_not_by_file_order_or_name(
    tmp_path: Path, hard_rows: list[dict[str, str]]
) -> None:
    rows = []
    for r in hard_rows[:20]:
        row: dict[str, str] = {f"negative_{n}": r["negative_3"] for n in range(11, 1, -1)}
        rows.append(
            {**row, "negative_1": r["negative_1"], "positive": r["positive"], "anchor": r["anchor"]}
        )
    description = describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert description.text_columns == (
        "anchor",
        "positive",
        *(f"negative_{n}" for n in range(1, 12)),
    )
    assert description.negatives == 11


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_gap_in_the_numbering_names_the_missing_column(
    tmp_path: Path, fmt: str, hard_rows: list[dict[str, str]]
) -> None:
    rows = [{k: v for k, v in r.items() if k != "negative_2"} for r in hard_rows]
    error = format_error(write_format(tmp_path, fmt, rows), fmt)
    assert error.field == "file"
    assert "column 'negative_2' is missing" in error.message
    assert "(found negative_1, negative_3)" in error.message
    line = {} if fmt == "parquet" else {"line": 1}
    assert error.details == {**line, "column": "negative_2", "missing": ["negative_2"]}


def test_a_missing_first_negative(tmp_path: Path, hard_rows: list[dict[str, str]]) -> None:
    rows = [{k: v for k, v in r.items() if k != "negative_1"} for r in hard_rows]
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert error.message.startswith(
        "line 1: column 'negative_1' (or 'negative') is missing: negative columns are numbered"
    )
    assert error.details["column"] == "negative_1"


def test_negative_and_negative_1_together_are_ambiguous(
    tmp_path: Path, hard_rows: list[dict[str, str]]
) -> None:
    rows = [{**r, "negative": r["negative_3"]} for r in hard_rows[:5]]
    error = format_error(write_csv(tmp_path / "x.csv", rows), "csv")
    assert error.message == (
        "line 1: columns 'negative' and 'negative_1' are both the first negative; keep one"
    )
    assert error.details == {"line": 1, "column": "negative_1"}


def test_every_negative_is_validated_as_text(
    tmp_path: Path, hard_rows: list[dict[str, str]]
) -> None:
    rows = [dict(r) for r in hard_rows[:10]]
    rows[6]["negative_3"] = " "
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert error.message == "line 7 (row 7): column 'negative_3' is empty or whitespace-only"
    assert error.details == {"line": 7, "row": 7, "column": "negative_3"}


def test_mapped_negatives(tmp_path: Path, hard_rows: list[dict[str, str]]) -> None:
    rows = _renamed(
        hard_rows,
        {
            "anchor": "q",
            "positive": "doc",
            "negative_1": "hn_a",
            "negative_2": "hn_b",
            "negative_3": "hn_c",
        },
    )
    path = write_jsonl(tmp_path / "x.jsonl", rows)
    mapping = {
        "anchor": "q",
        "positive": "doc",
        "negative_1": "hn_a",
        "negative_2": "hn_b",
        "negative_3": "hn_c",
    }
    description = describe_dataset(path, "jsonl", mapping)
    assert description.text_columns == ("q", "doc", "hn_a", "hn_b", "hn_c")
    assert description.negatives == 3

    gap = {k: v for k, v in mapping.items() if k != "negative_2"}
    error = format_error(path, "jsonl", gap)
    assert error.field == "column_mapping"
    assert error.message.startswith("column 'negative_2' is missing")
    assert error.details == {"column": "negative_2", "missing": ["negative_2"]}


def test_pairs_have_no_negatives(tmp_path: Path, hard_rows: list[dict[str, str]]) -> None:
    rows = [{"anchor": r["anchor"], "positive": r["positive"]} for r in hard_rows]
    description = describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert description.kind == "pair" and description.negatives == 0


def test_unnumbered_look_alikes_are_extra_columns(
    tmp_path: Path, hard_rows: list[dict[str, str]]
) -> None:
    rows = [{**r, "negative_0": "x", "negative_02": "y", "negatives": "z"} for r in hard_rows[:5]]
    description = describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert description.negatives == 3
    assert "negative_0" in description.columns and "negative_0" not in description.text_columns
