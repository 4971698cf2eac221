"""STS data: sentence1, sentence2 and a similarity score in [0, 1]."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from app.datasets.parsing import STS_COLUMNS, DatasetDescription, describe_dataset
from tests.datasets.files import (
    STSB_DEV,
    format_error,
    read_jsonl,
    write_csv,
    write_format,
    write_jsonl,
    write_parquet,
)


@pytest.fixture(scope="module")
def sts_rows() -> list[dict[str, Any]]:
    rows = read_jsonl(STSB_DEV, limit=200)
    assert {tuple(r) for r in rows} == {STS_COLUMNS}
    return rows


def test_the_shared_stsb_dev_file(tmp_path: Path) -> None:
    assert describe_dataset(STSB_DEV, "jsonl") == DatasetDescription(
        format="jsonl",
        kind="sts",
        columns=STS_COLUMNS,
        text_columns=STS_COLUMNS,
        rows=1500,
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_sts_in_every_format(tmp_path: Path, fmt: str, sts_rows: list[dict[str, Any]]) -> None:
    description = describe_dataset(write_format(tmp_path, fmt, sts_rows), fmt)  # type: ignore[arg-type]
    assert description.kind == "sts"
    assert description.text_columns == ("sentence1", "sentence2", "score")
    assert description.negatives == 0
    assert description.rows == 200


def test_mapped_sts_columns(tmp_path: Path, sts_rows: list[dict[str, Any]]) -> None:
    rows = [
        {"pair_id": i, "a": r["sentence1"], "b": r["sentence2"], "similarity": r["score"]}
        for i, r in enumerate(sts_rows)
    ]
    mapping = {"sentence1": "a", "sentence2": "b", "score": "similarity"}
    for fmt in ("jsonl", "csv", "parquet"):
        description = describe_dataset(write_format(tmp_path, fmt, rows), fmt, mapping)  # type: ignore[arg-type]
        assert description.kind == "sts"
        assert description.text_columns == ("a", "b", "similarity")
        assert description.columns == ("pair_id", "a", "b", "similarity")


def test_integer_scores_0_and_1_are_numbers(tmp_path: Path, sts_rows: list[dict[str, Any]]) -> None:
    rows = [{**r, "score": i % 2} for i, r in enumerate(sts_rows[:10])]
    assert describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl").kind == "sts"
    table = pa.Table.from_pylist(rows)
    assert table.schema.field("score").type == pa.int64()
    assert describe_dataset(write_parquet(tmp_path / "x.parquet", table), "parquet").rows == 10


@pytest.mark.parametrize(
    ("score", "problem"),
    [
        ('"0.5"', "is not a number (got string)"),
        ("true", "is not a number (got boolean)"),
        ("null", "is not a number (got null)"),
        ("[0.5]", "is not a number (got array)"),
        ("1.5", "must be a score from 0 to 1 (got 1.5; divide 0-5 similarity scores by 5)"),
        ("4", "must be a score from 0 to 1 (got 4.0; divide 0-5 similarity scores by 5)"),
        ("-0.1", "must be a score from 0 to 1 (got -0.1)"),
        ("12", "must be a score from 0 to 1 (got 12.0)"),
        ("NaN", "must be a score from 0 to 1 (got nan)"),
        ("Infinity", "must be a score from 0 to 1 (got inf)"),
    ],
)
def test_jsonl_bad_scores(
    tmp_path: Path, sts_rows: list[dict[str, Any]], score: str, problem: str
) -> None:
    lines = [json.dumps(r) for r in sts_rows[:3]]
    bad = dict(sts_rows[3])
    lines.append(json.dumps(bad).replace(json.dumps(bad["score"]) + "}", score + "}"))
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n")
    error = format_error(path, "jsonl")
    assert error.message == f"line 4 (row 4): column 'score' {problem}"
    assert error.details == {"line": 4, "row": 4, "column": "score"}


@pytest.mark.parametrize("score", ["0", "1", "0.25", " 0.5 ", "1e-1", ".5", "+1", "1.", "0E0"])
def test_csv_scores_parse_as_numbers(
    tmp_path: Path, sts_rows: list[dict[str, Any]], score: str
) -> None:
    rows = [dict(r) for r in sts_rows[:5]]
    rows[2]["score"] = score
    assert describe_dataset(write_csv(tmp_path / "x.csv", rows), "csv").kind == "sts"


@pytest.mark.parametrize(
    ("score", "problem"),
    [
        ("", "is not a number (got '')"),
        ("high", "is not a number (got 'high')"),
        ("nan", "is not a number (got 'nan')"),
        ("inf", "is not a number (got 'inf')"),
        ("0_5", "is not a number (got '0_5')"),
        ("0,5", "is not a number (got '0,5')"),
        ("1.2", "must be a score from 0 to 1 (got 1.2; divide 0-5 similarity scores by 5)"),
        ("-1", "must be a score from 0 to 1 (got -1.0)"),
        ("1e400", "must be a score from 0 to 1 (got inf)"),
    ],
)
def test_csv_bad_scores(
    tmp_path: Path, sts_rows: list[dict[str, Any]], score: str, problem: str
) -> None:
    rows = [dict(r) for r in sts_rows[:5]]
    rows[2]["score"] = score
    error = format_error(write_csv(tmp_path / "x.csv", rows), "csv")
    assert error.message == f"line 4 (row 3): column 'score' {problem}"
    assert error.details == {"line": 4, "row": 3, "column": "score"}


@pytest.mark.parametrize(
    ("values", "arrow_type", "problem"),
    [
        ([0.5, None, 0.1], pa.float64(), "is not a number (got null)"),
        ([0.5, float("nan"), 0.1], pa.float64(), "must be a score from 0 to 1 (got nan)"),
        ([0.5, 2.5, 0.1], pa.float32(), "must be a score from 0 to 1 (got 2.5; divide"),
        ([0, 3, 1], pa.int32(), "must be a score from 0 to 1 (got 3.0; divide"),
    ],
)
def test_parquet_bad_score_values(
    tmp_path: Path, sts_rows: list[dict[str, Any]], values: list[Any], arrow_type: Any, problem: str
) -> None:
    table = pa.table(
        {
            "sentence1": [r["sentence1"] for r in sts_rows[:3]],
            "sentence2": [r["sentence2"] for r in sts_rows[:3]],
            "score": pa.array(values, arrow_type),
        }
    )
    error = format_error(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert error.message.startswith(f"row 2: column 'score' {problem}")
    assert error.details == {"row": 2, "column": "score"}


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.bool_()])
def test_parquet_score_column_must_be_numeric(
    tmp_path: Path, sts_rows: list[dict[str, Any]], arrow_type: Any
) -> None:
    values = ["0.5", "1"] if arrow_type == pa.string() else [True, False]
    table = pa.table(
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": pa.array(values, arrow_type)}
    )
    error = format_error(write_parquet(tmp_path / "x.parquet", table), "parquet")
    assert (
        error.message == f"column 'score' has type {arrow_type}: the score column must be numeric"
    )
    assert error.details == {"column": "score"}


def test_sts_texts_are_validated(tmp_path: Path, sts_rows: list[dict[str, Any]]) -> None:
    rows = [dict(r) for r in sts_rows[:5]]
    rows[4]["sentence2"] = "\t"
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert error.message == "line 5 (row 5): column 'sentence2' is empty or whitespace-only"
    rows[4]["sentence2"] = 7
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert error.details == {"line": 5, "row": 5, "column": "sentence2"}


def test_sts_without_a_score_names_it(tmp_path: Path, sts_rows: list[dict[str, Any]]) -> None:
    rows = [{"sentence1": r["sentence1"], "sentence2": r["sentence2"]} for r in sts_rows[:5]]
    error = format_error(write_csv(tmp_path / "x.csv", rows), "csv")
    assert error.message.startswith(
        "line 1: missing column(s) 'score': STS data needs columns sentence1, sentence2, score "
        "(a triplet dataset anchor, positive, negative; a pair dataset anchor, positive; "
        "NLI data premise, hypothesis, label)"
    )
    assert error.details == {"line": 1, "missing": ["score"], "columns": ["sentence1", "sentence2"]}


def test_anchor_and_positive_win_over_sts_columns(
    tmp_path: Path, sts_rows: list[dict[str, Any]]
) -> None:
    rows = [{"anchor": r["sentence1"], "positive": r["sentence2"], **r} for r in sts_rows[:5]]
    description = describe_dataset(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert description.kind == "pair"
    assert description.text_columns == ("anchor", "positive")
