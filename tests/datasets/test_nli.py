"""NLI pairs (premise, hypothesis, label) converted to triplets on upload, as all-nli is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from app.datasets.errors import DatasetFormatError
from app.datasets.nli import NliTriplets, parse_label
from app.datasets.parsing import describe_dataset
from tests.datasets.files import (
    SNLI_PAIRS,
    SNLI_TRIPLETS,
    format_error,
    read_jsonl,
    write_csv,
    write_jsonl,
    write_parquet,
)

LABEL_NUMBERS = {"entailment": 0, "neutral": 1, "contradiction": 2}
SNLI_REPORT = {
    "from": "nli",
    "source_rows": 9842,
    "premises": 3319,
    "triplets": 3253,
    "premises_without_pair": 376,
}


@pytest.fixture(scope="module")
def pairs() -> list[dict[str, Any]]:
    return read_jsonl(SNLI_PAIRS)


def _assert_same_rows(converted: Path, expected: Path) -> None:
    got = converted.read_text(encoding="utf-8").splitlines()
    want = expected.read_text(encoding="utf-8").splitlines()
    assert len(got) == len(want)
    for number, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        assert json.loads(a) == json.loads(b), f"row {number} differs"


def test_the_shared_snli_pairs_become_exactly_the_shared_triplets(tmp_path: Path) -> None:
    converted = tmp_path / "converted.jsonl"
    description = describe_dataset(SNLI_PAIRS, "jsonl", converted_path=converted)
    assert description.format == "jsonl"
    assert description.kind == "triplet"
    assert description.columns == ("premise", "hypothesis", "label")
    assert description.text_columns == ("anchor", "positive", "negative")
    assert description.negatives == 1
    assert description.rows == 3253
    assert description.stored_format == "jsonl"
    assert description.conversion == SNLI_REPORT
    _assert_same_rows(converted, SNLI_TRIPLETS)
    # Written the same way, byte for byte, so the stored file is an ordinary triplet upload.
    assert converted.read_bytes() == SNLI_TRIPLETS.read_bytes()
    assert describe_dataset(converted, "jsonl").rows == 3253


def test_csv_with_numeric_labels(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    rows = [{**r, "label": LABEL_NUMBERS[r["label"]]} for r in pairs]
    path = write_csv(tmp_path / "pairs.csv", rows)
    assert b",0\r\n" in path.read_bytes() or b",0\n" in path.read_bytes()
    converted = tmp_path / "converted.jsonl"
    description = describe_dataset(path, "csv", converted_path=converted)
    assert description.format == "csv" and description.stored_format == "jsonl"
    assert description.conversion == SNLI_REPORT
    _assert_same_rows(converted, SNLI_TRIPLETS)


@pytest.mark.parametrize("labels", ["int", "string", "dictionary"])
def test_parquet_labels(tmp_path: Path, pairs: list[dict[str, Any]], labels: str) -> None:
    label_values: Any = [r["label"] for r in pairs]
    if labels == "int":
        label_values = pa.array([LABEL_NUMBERS[v] for v in label_values], pa.int8())
    elif labels == "dictionary":
        label_values = pa.array(label_values).dictionary_encode()
    table = pa.table(
        {
            "premise": [r["premise"] for r in pairs],
            "hypothesis": [r["hypothesis"] for r in pairs],
            "label": label_values,
        }
    )
    converted = tmp_path / "converted.jsonl"
    path = write_parquet(tmp_path / "pairs.parquet", table)
    description = describe_dataset(path, "parquet", converted_path=converted)
    assert description.conversion == SNLI_REPORT
    _assert_same_rows(converted, SNLI_TRIPLETS)


def test_mapped_nli_columns(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    rows = [
        {"sentence_a": r["premise"], "sentence_b": r["hypothesis"], "gold": r["label"], "n": i}
        for i, r in enumerate(pairs)
    ]
    converted = tmp_path / "converted.jsonl"
    description = describe_dataset(
        write_jsonl(tmp_path / "x.jsonl", rows),
        "jsonl",
        {"premise": "sentence_a", "hypothesis": "sentence_b", "label": "gold"},
        converted_path=converted,
    )
    assert description.columns == ("sentence_a", "sentence_b", "gold", "n")
    assert description.text_columns == ("anchor", "positive", "negative")
    assert description.rows == 3253
    _assert_same_rows(converted, SNLI_TRIPLETS)


def test_grouping_order_deduplication_and_report(
    tmp_path: Path, pairs: list[dict[str, Any]]
) -> None:
    premises = list(dict.fromkeys(r["premise"] for r in pairs))[:3]
    hypotheses = [r["hypothesis"] for r in pairs[:8]]
    p1, p2, p3 = premises
    h = hypotheses
    rows = [
        {"premise": p1, "hypothesis": h[0], "label": "entailment"},
        {"premise": p2, "hypothesis": h[1], "label": "contradiction"},  # p2: no entailment
        {"premise": p1, "hypothesis": h[2], "label": "Contradiction"},
        {"premise": p1, "hypothesis": h[3], "label": " ENTAILMENT "},
        {"premise": p1, "hypothesis": h[0], "label": 0},  # duplicate entailment
        {"premise": p3, "hypothesis": h[4], "label": "neutral"},  # p3: neutral only
        {"premise": p1, "hypothesis": h[5], "label": "2"},
        {"premise": p1, "hypothesis": h[2], "label": 2},  # duplicate contradiction
        {"premise": p1, "hypothesis": h[6], "label": 1},
    ]
    converted = tmp_path / "converted.jsonl"
    description = describe_dataset(
        write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", converted_path=converted
    )
    assert [json.loads(line) for line in converted.read_text().splitlines()] == [
        {"anchor": p1, "positive": h[0], "negative": h[2]},
        {"anchor": p1, "positive": h[0], "negative": h[5]},
        {"anchor": p1, "positive": h[3], "negative": h[2]},
        {"anchor": p1, "positive": h[3], "negative": h[5]},
    ]
    assert description.rows == 4
    assert description.conversion == {
        "from": "nli",
        "source_rows": 9,
        "premises": 3,
        "triplets": 4,
        "premises_without_pair": 2,
    }


def test_no_premise_with_both_labels_is_rejected(
    tmp_path: Path, pairs: list[dict[str, Any]]
) -> None:
    rows = [r for r in pairs[:300] if r["label"] != "contradiction"]
    converted = tmp_path / "converted.jsonl"
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", converted_path=converted)
    assert error.field == "file"
    assert error.message.startswith(
        f"no triplets could be made from the {len(rows)} NLI pair(s): no premise had both an "
        "entailed and a contradicting hypothesis"
    )
    assert not converted.exists()


@pytest.mark.parametrize(
    ("label", "shown"),
    [
        ('"maybe"', "'maybe'"),
        ("3", "3"),
        ("-1", "-1"),
        ("1.0", "1.0"),
        ("true", "true"),
        ("null", "null"),
        ('""', "''"),
        ('"entails"', "'entails'"),
    ],
)
def test_jsonl_bad_labels(
    tmp_path: Path, pairs: list[dict[str, Any]], label: str, shown: str
) -> None:
    lines = [json.dumps(r) for r in pairs[:4]]
    bad = {"premise": pairs[4]["premise"], "hypothesis": pairs[4]["hypothesis"]}
    lines.append(json.dumps(bad)[:-1] + f', "label": {label}}}')
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(lines) + "\n")
    error = format_error(path, "jsonl", converted_path=tmp_path / "c.jsonl")
    assert error.message == (
        "line 5 (row 5): column 'label' must be an NLI label: 0 or entailment, 1 or neutral, "
        f"2 or contradiction (got {shown})"
    )
    assert error.details == {"line": 5, "row": 5, "column": "label"}


def test_csv_bad_label(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    rows = [dict(r) for r in pairs[:5]]
    rows[3]["label"] = "3"
    error = format_error(write_csv(tmp_path / "x.csv", rows), "csv", converted_path=tmp_path / "c")
    assert error.details == {"line": 5, "row": 4, "column": "label"}
    assert "(got '3')" in error.message


def test_parquet_label_type_and_values(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    texts = {"premise": [r["premise"] for r in pairs[:3]], "hypothesis": ["a", "b", "c"]}
    floats = pa.table({**texts, "label": pa.array([0.0, 1.0, 2.0])})
    error = format_error(
        write_parquet(tmp_path / "f.parquet", floats), "parquet", converted_path=tmp_path / "c"
    )
    assert error.message == (
        "column 'label' has type double: the label column must hold integers or strings"
    )
    ints = pa.table({**texts, "label": pa.array([0, 7, 2], pa.int64())})
    error = format_error(
        write_parquet(tmp_path / "i.parquet", ints), "parquet", converted_path=tmp_path / "c"
    )
    assert error.details == {"row": 2, "column": "label"}


def test_nli_texts_are_validated(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    rows = [dict(r) for r in pairs[:5]]
    rows[1]["hypothesis"] = ""
    error = format_error(
        write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", converted_path=tmp_path / "c"
    )
    assert error.message == "line 2 (row 2): column 'hypothesis' is empty or whitespace-only"


def test_nli_without_labels_names_the_missing_column(
    tmp_path: Path, pairs: list[dict[str, Any]]
) -> None:
    rows = [{"premise": r["premise"], "hypothesis": r["hypothesis"]} for r in pairs[:5]]
    error = format_error(write_jsonl(tmp_path / "x.jsonl", rows), "jsonl")
    assert error.message.startswith(
        "line 1: missing column(s) 'label': NLI data needs columns premise, hypothesis, label"
    )
    assert error.details["missing"] == ["label"]


def test_converting_needs_a_place_to_write(tmp_path: Path, pairs: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="converted_path"):
        describe_dataset(write_jsonl(tmp_path / "x.jsonl", pairs[:10]), "jsonl")


def test_parse_label_accepts_the_documented_spellings() -> None:
    for value, expected in [
        (0, 0),
        (1, 1),
        (2, 2),
        ("0", 0),
        ("1", 1),
        ("2", 2),
        ("entailment", 0),
        ("Neutral", 1),
        ("CONTRADICTION", 2),
    ]:
        assert parse_label(value, "label", 1, 1) == expected
    for bad in (True, False, 3, 1.0, "yes", None):
        with pytest.raises(DatasetFormatError):
            parse_label(bad, "label", 1, 1)


def test_nli_triplets_report_counts_premises_lacking_a_pair() -> None:
    with NliTriplets() as builder:
        builder.add("p1", "e1", 0)
        builder.add("p2", "c1", 2)
        builder.add("p3", "n1", 1)
        report = builder.report()
    assert report == {
        "from": "nli",
        "source_rows": 3,
        "premises": 3,
        "triplets": 0,
        "premises_without_pair": 3,
    }


def test_nli_pairs_are_grouped_on_disk_not_in_memory(tmp_path) -> None:
    """30,000 distinct pairs (~5 MB of text) leave the Python heap nearly untouched: the
    premises and hypotheses wait in the scratch file, which is gone afterwards."""
    import tracemalloc

    tracemalloc.start()
    try:
        with NliTriplets(tmp_path) as builder:
            for i in range(30_000):
                builder.add(f"premise {i // 3} " + "p" * 80, f"hypothesis {i} " + "h" * 80, i % 3)
            report = builder.write(tmp_path / "out.jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report["premises"] == 10_000 and report["triplets"] == 10_000
    assert peak < 1_000_000, peak
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
