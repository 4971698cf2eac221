"""The upload-time preflight report (app.datasets.preflight) on files made to hold each finding."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.datasets.parsing import describe_dataset
from app.datasets.preflight import MAX_TEXT_CHARS, normalise, preflight_report
from app.datasets.schemas import DatasetPreflight
from tests.datasets.files import (
    SNLI_PAIRS,
    SNLI_TRIPLETS,
    STSB_DEV,
    read_jsonl,
    write_csv,
    write_format,
    write_jsonl,
    write_parquet,
)

TRIPLET = ("anchor", "positive", "negative")


def report(path: Path, fmt: str, kind: str, text_columns: tuple[str, ...]) -> dict[str, Any]:
    result = preflight_report(path, fmt, kind, text_columns)  # type: ignore[arg-type]
    DatasetPreflight.model_validate(result)  # the stored report always fits the API schema
    return result


def by_code(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in result["findings"]}


def t(anchor: str, positive: str, negative: str) -> dict[str, str]:
    return {"anchor": anchor, "positive": positive, "negative": negative}


# Rows numbered from 1; each finding planted at known rows.
TRIPLETS = [
    t("a cat sits on a mat", "a cat is sitting", "a dog runs"),  # 1
    t("the sky is blue", "  The Sky Is Blue ", "the sky is green"),  # 2: anchor == positive
    t("a cat sits on a mat", "a cat is sitting", "a dog runs"),  # 3: repeats row 1
    t("two men talk", "people are talking", "TWO MEN TALK"),  # 4: anchor == negative
    t("a kid plays", "A CAT IS SITTING", "a kid sleeps"),  # 5: shares positive of rows 1, 3
    t("a cat sits on a mat", "a cat is sitting", "a dog runs"),  # 6: repeats row 1
    t("rain falls", "it is raining", "the sun shines"),  # 7
    t("a cat sits on a mat", "a cat is sitting", "a bird sings"),  # 8: not a repeat (negative)
    t("it rains", "it is raining", "it is dry"),  # 9: shares positive of row 7
]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_each_finding_with_counts_and_examples(tmp_path: Path, fmt: str) -> None:
    result = report(write_format(tmp_path, fmt, TRIPLETS), fmt, "triplet", TRIPLET)
    assert result["rows"] == 9
    assert result["checked"] == [
        "duplicate_rows",
        "anchor_equals_positive",
        "anchor_equals_negative",
        "duplicate_positives",
    ]
    found = by_code(result)
    assert list(found) == result["checked"]  # in the order checked
    assert {f["severity"] for f in found.values()} == {"warning"}

    dup = found["duplicate_rows"]
    assert dup["count"] == 2
    assert dup["examples"] == [
        {"row": 3, "texts": TRIPLETS[2], "same_as_row": 1},
        {"row": 6, "texts": TRIPLETS[5], "same_as_row": 1},
    ]
    assert dup["message"].startswith("2 row(s) repeat")

    pos = found["anchor_equals_positive"]
    assert (pos["count"], pos["examples"]) == (1, [{"row": 2, "texts": TRIPLETS[1]}])
    neg = found["anchor_equals_negative"]
    assert (neg["count"], neg["examples"]) == (1, [{"row": 4, "texts": TRIPLETS[3]}])

    # "a cat is sitting": rows 1, 3, 5, 6, 8; "it is raining": rows 7, 9 -> 7 rows share.
    shared = found["duplicate_positives"]
    assert shared["count"] == 7
    assert shared["examples"] == [
        {"row": 3, "texts": TRIPLETS[2], "same_as_row": 1},
        {"row": 5, "texts": TRIPLETS[4], "same_as_row": 1},
        {"row": 6, "texts": TRIPLETS[5], "same_as_row": 1},
    ]
    for finding in found.values():
        assert str(finding["count"]) in finding["message"]


def test_a_clean_file_has_no_findings(tmp_path: Path) -> None:
    rows = [t(f"anchor {i}", f"positive {i}", f"negative {i}") for i in range(50)]
    result = report(write_jsonl(tmp_path / "clean.jsonl", rows), "jsonl", "triplet", TRIPLET)
    assert result == {
        "rows": 50,
        "checked": [
            "duplicate_rows",
            "anchor_equals_positive",
            "anchor_equals_negative",
            "duplicate_positives",
        ],
        "findings": [],
    }


def test_duplicate_rows_are_exact_and_other_findings_normalise(tmp_path: Path) -> None:
    rows = [
        {"anchor": "Hello", "positive": "World"},
        {"anchor": "hello", "positive": "world"},  # not an exact repeat, but the same positive
        {"anchor": "Hello", "positive": "World "},  # not an exact repeat either
        {"anchor": "Hello", "positive": "World"},  # an exact repeat of row 1
    ]
    result = report(write_csv(tmp_path / "p.csv", rows), "csv", "pair", ("anchor", "positive"))
    assert result["checked"] == ["duplicate_rows", "anchor_equals_positive", "duplicate_positives"]
    found = by_code(result)
    assert found["duplicate_rows"]["count"] == 1
    assert found["duplicate_rows"]["examples"][0]["row"] == 4
    assert found["duplicate_positives"]["count"] == 4
    assert "anchor_equals_positive" not in found


def test_texts_are_not_confused_across_columns(tmp_path: Path) -> None:
    rows = [{"anchor": "ab", "positive": "c"}, {"anchor": "a", "positive": "bc"}]
    result = report(
        write_jsonl(tmp_path / "x.jsonl", rows), "jsonl", "pair", ("anchor", "positive")
    )
    assert result["findings"] == []


def test_any_negative_equal_to_the_anchor_counts_the_row_once(tmp_path: Path) -> None:
    columns = ("q", "p", "n1", "n2", "n3")
    rows = [
        {"id": 1, "q": "query", "p": "answer", "n1": "other", "n2": "Query", "n3": "QUERY"},
        {"id": 2, "q": "query two", "p": "answer two", "n1": "x", "n2": "y", "n3": "query two"},
        {"id": 3, "q": "query three", "p": "answer three", "n1": "x", "n2": "y", "n3": "z"},
    ]
    path = write_parquet(tmp_path / "n.parquet", rows)
    found = by_code(report(path, "parquet", "triplet", columns))
    neg = found["anchor_equals_negative"]
    assert neg["count"] == 2
    # Examples name the stored file's own (mapped) columns, never the ids.
    assert neg["examples"][0] == {"row": 1, "texts": {k: rows[0][k] for k in columns}}
    assert [e["row"] for e in neg["examples"]] == [1, 2]


def test_at_most_three_examples_and_long_texts_cut(tmp_path: Path) -> None:
    long = "word " * 100
    rows = [{"anchor": long, "positive": long + "!"} for _ in range(10)]
    found = by_code(
        report(write_jsonl(tmp_path / "l.jsonl", rows), "jsonl", "pair", ("anchor", "positive"))
    )
    dup = found["duplicate_rows"]
    assert dup["count"] == 9
    assert [e["row"] for e in dup["examples"]] == [2, 3, 4]
    for text in dup["examples"][0]["texts"].values():
        assert len(text) == MAX_TEXT_CHARS and text.endswith("\u2026")
    assert found["duplicate_positives"]["count"] == 10
    assert len(found["duplicate_positives"]["examples"]) == 3


def test_sts_checks_the_sentences_not_the_score(tmp_path: Path) -> None:
    rows = [
        {"sentence1": "A man eats.", "sentence2": "a man eats.", "score": 0.9},  # 1: equal
        {"sentence1": "A dog barks.", "sentence2": "A cat meows.", "score": 0.2},  # 2
        {"sentence1": "A dog barks.", "sentence2": "A cat meows.", "score": 0.4},  # 3: repeat
        {"sentence1": "A bird.", "sentence2": "A cat meows.", "score": 0.1},  # 4: fine for STS
    ]
    columns = ("sentence1", "sentence2", "score")
    for fmt in ("jsonl", "csv", "parquet"):
        result = report(write_format(tmp_path, fmt, rows), fmt, "sts", columns)
        assert result["checked"] == ["duplicate_rows", "sentence1_equals_sentence2"]
        found = by_code(result)
        texts = {"sentence1": "A dog barks.", "sentence2": "A cat meows."}
        assert found["duplicate_rows"]["examples"] == [{"row": 3, "texts": texts, "same_as_row": 2}]
        equal = found["sentence1_equals_sentence2"]
        assert equal["count"] == 1 and equal["examples"][0]["row"] == 1


def test_the_shared_stsb_dev_file() -> None:
    rows = read_jsonl(STSB_DEV)
    pairs = [(r["sentence1"], r["sentence2"]) for r in rows]
    repeats = len(pairs) - len(set(pairs))
    equal = sum(normalise(a) == normalise(b) for a, b in pairs)
    result = report(STSB_DEV, "jsonl", "sts", ("sentence1", "sentence2", "score"))
    assert result["rows"] == len(rows)
    counts = {f["code"]: f["count"] for f in result["findings"]}
    assert counts.get("duplicate_rows", 0) == repeats
    assert counts.get("sentence1_equals_sentence2", 0) == equal


def test_the_shared_snli_dev_triplets() -> None:
    """Counted independently here, from the texts themselves (no digests)."""
    rows = read_jsonl(SNLI_TRIPLETS)
    keys = [tuple(r[c] for c in TRIPLET) for r in rows]
    repeats = len(keys) - len(set(keys))
    anchor_pos = [
        i for i, r in enumerate(rows, 1) if normalise(r["anchor"]) == normalise(r["positive"])
    ]
    anchor_neg = [
        i for i, r in enumerate(rows, 1) if normalise(r["anchor"]) == normalise(r["negative"])
    ]
    positives = Counter(normalise(r["positive"]) for r in rows)
    shared = sum(n for n in positives.values() if n > 1)
    # Repeated anchors by design: each premise with several positive/negative combinations.
    assert len({r["anchor"] for r in rows}) < len(rows)
    assert shared > 0

    result = report(SNLI_TRIPLETS, "jsonl", "triplet", TRIPLET)
    assert result["rows"] == len(rows) == describe_dataset(SNLI_TRIPLETS, "jsonl").rows
    found = by_code(result)
    counts = {code: f["count"] for code, f in found.items()}
    expected = {
        "duplicate_rows": repeats,
        "anchor_equals_positive": len(anchor_pos),
        "anchor_equals_negative": len(anchor_neg),
        "duplicate_positives": shared,
    }
    assert counts == {code: n for code, n in expected.items() if n}
    if anchor_pos:
        assert [e["row"] for e in found["anchor_equals_positive"]["examples"]] == anchor_pos[:3]
        first = found["anchor_equals_positive"]["examples"][0]
        assert first["texts"] == {c: rows[first["row"] - 1][c][:MAX_TEXT_CHARS] for c in TRIPLET}
    # Each duplicate_positives example repeats the positive of its same_as_row.
    for example in found["duplicate_positives"]["examples"]:
        earlier = rows[example["same_as_row"] - 1]["positive"]
        assert normalise(example["texts"]["positive"]) == normalise(earlier)
        assert example["same_as_row"] < example["row"]


def test_converted_nli_upload_is_reported_on_its_triplets(tmp_path: Path) -> None:
    converted = tmp_path / "triplets.jsonl"
    description = describe_dataset(SNLI_PAIRS, "jsonl", converted_path=converted)
    result = report(converted, "jsonl", description.kind, description.text_columns)
    assert result["rows"] == description.rows
    triplets = read_jsonl(converted)
    positives = Counter(normalise(r["positive"]) for r in triplets)
    counts = {f["code"]: f["count"] for f in result["findings"]}
    assert counts["duplicate_positives"] == sum(n for n in positives.values() if n > 1)
