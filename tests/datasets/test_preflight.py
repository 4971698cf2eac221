"""The upload-time preflight report (app.datasets.preflight) on files made to hold each finding."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.datasets import preflight
from app.datasets.parsing import describe_dataset
from app.datasets.preflight import MAX_TEXT_CHARS, normalise, preflight_report
from app.datasets.readers import open_reader
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


# --------------------------------------------------------------------------------------------
# The digest arrays against the dict-based algorithm they replaced


def reference_report(
    path: Path, fmt: str, kind: str, text_columns: tuple[str, ...]
) -> dict[str, Any]:
    """The preflight as it was before the digest arrays: dicts of 16-byte digests (~220 bytes a
    row), one pass, examples as found. The straightforward statement of what is reported."""
    texts_columns = text_columns[:2] if kind == "sts" else text_columns
    codes = preflight.checked_codes(kind, text_columns)
    findings = {code: preflight._Finding(code) for code in codes}
    first, second, negatives = texts_columns[0], texts_columns[1], texts_columns[2:]
    equal_code = "sentence1_equals_sentence2" if kind == "sts" else "anchor_equals_positive"
    track_positives = "duplicate_positives" in findings
    seen_rows: dict[bytes, int] = {}
    seen_positives: dict[bytes, int] = {}
    shared_positives: set[bytes] = set()
    rows = 0
    with open_reader(path, fmt) as reader:  # type: ignore[arg-type]
        for _line, row, values in reader.rows(texts_columns):
            rows = row
            texts = {c: preflight.cell_text(values[c]) for c in texts_columns}
            key = preflight.digest(texts.values())
            earlier = seen_rows.setdefault(key, row)
            if earlier != row:
                findings["duplicate_rows"].add(row, texts, earlier)
            anchor, positive = normalise(texts[first]), normalise(texts[second])
            if anchor == positive:
                findings[equal_code].add(row, texts)
            if negatives and any(normalise(texts[n]) == anchor for n in negatives):
                findings["anchor_equals_negative"].add(row, texts)
            if track_positives:
                pkey = preflight.digest((positive,))
                earlier = seen_positives.setdefault(pkey, row)
                if earlier != row:
                    duplicate = findings["duplicate_positives"]
                    if pkey not in shared_positives:
                        shared_positives.add(pkey)
                        duplicate.count += 1
                    duplicate.add(row, texts, earlier)
    return {
        "rows": rows,
        "checked": list(codes),
        "findings": [f.report() for f in findings.values() if f.count],
    }


def planted(rows: list[dict[str, Any]], text_columns: tuple[str, ...], seed: int) -> list[dict]:
    """Real rows with every finding planted at random places: exact repeats (some several
    times), positives repeated with other case and spaces, anchors equal to the positive or a
    negative; STS scores changed on repeats (not a text)."""
    rng = random.Random(seed)
    out = [dict(r) for r in rows]
    first, second = text_columns[0], text_columns[1]
    for _ in range(len(rows) // 8):
        out.insert(rng.randrange(len(out) + 1), dict(rng.choice(out)))  # exact repeat
    for _ in range(len(rows) // 8):
        row = dict(rng.choice(out))
        row[first] = f"another anchor {rng.random()}"
        row[second] = rng.choice(["", "  ", " \t"]) + row[second].upper() + rng.choice(["", " "])
        out.insert(rng.randrange(len(out) + 1), row)  # shared positive, not a repeat
    for _ in range(len(rows) // 20):
        i = rng.randrange(len(out))
        out[i] = {**out[i], second: " " + out[i][first].swapcase()}  # anchor == positive
        if len(text_columns) > 2:
            j = rng.randrange(len(out))
            out[j] = {**out[j], text_columns[2]: out[j][first].upper()}  # anchor == negative
    if "score" in text_columns:
        for row in out:
            row["score"] = round(rng.random(), 2)
    return out


CASES = [
    ("triplet", TRIPLET, SNLI_TRIPLETS),
    ("pair", ("anchor", "positive"), SNLI_TRIPLETS),
    ("sts", ("sentence1", "sentence2", "score"), STSB_DEV),
]


@pytest.mark.parametrize("chunk", [5, preflight._CHUNK])
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize(("kind", "columns", "source"), CASES, ids=[c[0] for c in CASES])
def test_same_report_as_the_dict_based_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    kind: str,
    columns: tuple[str, ...],
    source: Path,
    chunk: int,
) -> None:
    """Several hundred real rows with planted findings: the same report, examples included
    (rows, texts, same_as_row, order). ``chunk`` 5 compares sorted neighbours in chunks of 5,
    so that runs of equal digests cross chunk boundaries."""
    monkeypatch.setattr(preflight, "_CHUNK", chunk)
    source_rows = [{c: r[c] for c in columns} for r in read_jsonl(source)[:400]]
    for seed in range(3):
        rows = planted(source_rows, columns, seed)
        path = write_format(tmp_path, fmt, rows)
        expected = reference_report(path, fmt, kind, columns)
        assert report(path, fmt, kind, columns) == expected
        found = by_code(expected)
        assert found["duplicate_rows"]["count"] >= 30
        if kind != "sts":
            assert found["duplicate_positives"]["count"] > found["duplicate_rows"]["count"]


def test_find_repeats_against_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    for chunk in (1, 2, 3, 1000):
        monkeypatch.setattr(preflight, "_CHUNK", chunk)
        for n in (0, 1, 2, 3, 10, 57):
            for spread in (1, 3, n + 1, 2**64):
                values = [rng.randrange(spread) for _ in range(n)]
                if spread == 2**64 and n > 1:
                    values[-1] = values[0]  # the largest and smallest values too
                first: dict[int, int] = {}
                repeats = []
                for row, value in enumerate(values, 1):
                    if first.setdefault(value, row) != row:
                        repeats.append((row, first[value]))
                groups = sum(1 for v in first if values.count(v) > 1)
                found = preflight.find_repeats(array("Q", values))
                assert (found.repeats, found.groups) == (len(repeats), groups)
                assert found.examples == repeats[: preflight.MAX_EXAMPLES]


MEMORY_SCRIPT = """
import json, sys, tracemalloc
from pathlib import Path
import pyarrow as pa
import pyarrow.compute
import app.datasets.readers  # the preflight imports them when it runs: code, not rows
from app.datasets.preflight import preflight_report
path, n = Path(sys.argv[1]), int(sys.argv[2])
tracemalloc.start()
result = preflight_report(path, "jsonl", "triplet", ("anchor", "positive", "negative"))
_, traced = tracemalloc.get_traced_memory()
pool = pa.default_memory_pool().max_memory()
print(json.dumps({"rows": result["rows"], "traced": traced, "pool": pool,
                  "findings": {f["code"]: f["count"] for f in result["findings"]}}))
"""


def test_memory_per_row_is_bounded(tmp_path: Path) -> None:
    """The preflight of 200,000 short rows (every positive shared, 1 row in 10 repeated), in a
    fresh process: what it holds per row must not grow with the rows' count beyond a few
    bytes, where the dicts it replaced took ~220 bytes a row (measured so, 230 here).

    Measured: tracemalloc's peak (the Python heap: the two digest arrays, 8.5 bytes a row each
    as they grow, and what reading holds) plus the peak of Arrow's memory pool (not traced:
    the sort's 8-byte indices and the chunks compared), plus 4 bytes a row for the buffer that
    the sort (std::stable_sort, n/2 indices) takes with operator new, which neither sees. The
    two peaks are at different times, so their sum is an upper bound. Reading JSONL uses no
    Arrow memory, so the pool is the preflight's own."""
    n = 200_000
    path = tmp_path / "many.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            k = i - i % 2 if i % 10 == 9 else i  # every 10th row repeats the one before
            out.write(json.dumps(t(f"a{k}", f"p{k % (n // 2)}", f"n{k}")) + "\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    measured = json.loads(done.stdout)
    assert measured["rows"] == n
    assert measured["findings"]["duplicate_rows"] == n // 10
    assert measured["findings"]["duplicate_positives"] == n
    traced, pool = measured["traced"] / n, measured["pool"] / n
    assert traced < 20, traced  # the two arrays, 17
    assert pool < 14, pool  # the sort's indices, 8, and the chunks compared (~0.7 MB)
    assert traced + pool + 4 <= 40, (traced, pool)
    assert preflight.BYTES_PER_ROW <= 40
