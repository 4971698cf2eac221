"""Training data in the shapes teams have, over HTTP: column mapping, several negatives, STS, NLI.

Runs against the real API and worker processes (`pg_stack`) with real rows from the shared data.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import wait_for_job
from tests.support.tiny_model import SHARED_DATA, read_jsonl, write_jsonl

SNLI_TRIPLETS = SHARED_DATA / "snli_dev_triplets.jsonl"
SNLI_PAIRS = SHARED_DATA / "snli_dev_pairs.jsonl"
STSB_DEV = SHARED_DATA / "stsb_dev.jsonl"
MAPPING = {"anchor": "query", "positive": "passage", "negative": "hard_negative"}
SNLI_CONVERSION = {
    "from": "nli",
    "source_rows": 9842,
    "premises": 3319,
    "triplets": 3253,
    "premises_without_pair": 376,
}


def upload(
    client: httpx.Client, path: Path, column_mapping: dict[str, str] | str | None = None
) -> httpx.Response:
    data: dict[str, str] = {}
    if column_mapping is not None:
        data["column_mapping"] = (
            column_mapping if isinstance(column_mapping, str) else json.dumps(column_mapping)
        )
    with path.open("rb") as fh:
        return client.post("/datasets", files={"file": (path.name, fh)}, data=data)


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def train_tiny(stack: Stack, dataset_id: str) -> dict[str, Any]:
    r = stack.client.post(
        "/jobs",
        json={
            "base_model": TINY_MODEL,
            "train_dataset": dataset_id,
            "hyperparameters": {"max_steps": 2},
        },
    )
    assert r.status_code == 202, r.text
    final, _ = wait_for_job(stack.client, r.json()["id"])
    return final


def stored_file(stack: Stack, dataset_id: str, suffix: str) -> Path:
    path = stack.data_dir / "datasets" / f"{dataset_id}{suffix}"
    assert path.is_file(), sorted(p.name for p in (stack.data_dir / "datasets").iterdir())
    return path


@pytest.fixture(scope="module")
def triplets() -> list[dict[str, Any]]:
    return read_jsonl(SNLI_TRIPLETS, limit=400)


# --------------------------------------------------------------------------------------------
# Shapes that upload and train


def test_column_mapping_upload_and_train(
    pg_stack: Stack, tmp_path: Path, triplets: list[dict[str, Any]]
) -> None:
    rows = [
        {"id": i, "query": r["anchor"], "passage": r["positive"], "hard_negative": r["negative"]}
        for i, r in enumerate(triplets[:64])
    ]
    path = write_jsonl(tmp_path / "retrieval.jsonl", rows)
    ds = created(upload(pg_stack.client, path, MAPPING))
    assert ds["format"] == "jsonl" and ds["kind"] == "triplet" and ds["rows"] == 64
    assert ds["columns"] == ["id", "query", "passage", "hard_negative"]
    assert ds["text_columns"] == ["query", "passage", "hard_negative"]
    assert ds["negatives"] == 1
    assert ds["column_mapping"] == MAPPING
    assert ds["conversion"] is None
    assert ds["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pg_stack.client.get(f"/datasets/{ds['id']}").json() == ds
    # Stored as uploaded: the worker reads the mapped columns from the file itself.
    assert stored_file(pg_stack, ds["id"], ".jsonl").read_bytes() == path.read_bytes()

    final = train_tiny(pg_stack, ds["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())
    assert final["progress"]["step"] == 2


def test_nli_pairs_are_converted_on_upload_and_train(pg_stack: Stack) -> None:
    ds = created(upload(pg_stack.client, SNLI_PAIRS))
    assert ds["format"] == "jsonl"
    assert ds["kind"] == "triplet"
    assert ds["rows"] == 3253
    assert ds["columns"] == ["premise", "hypothesis", "label"]
    assert ds["text_columns"] == ["anchor", "positive", "negative"]
    assert ds["negatives"] == 1
    assert ds["conversion"] == SNLI_CONVERSION
    assert ds["column_mapping"] is None
    assert ds["size_bytes"] == SNLI_PAIRS.stat().st_size
    assert ds["sha256"] == hashlib.sha256(SNLI_PAIRS.read_bytes()).hexdigest()
    assert pg_stack.client.get(f"/datasets/{ds['id']}").json() == ds
    # What is stored is the triplets, exactly as all-nli-style conversion makes them.
    stored = stored_file(pg_stack, ds["id"], ".jsonl")
    assert stored.read_bytes() == SNLI_TRIPLETS.read_bytes()

    final = train_tiny(pg_stack, ds["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())


def test_mapped_nli_csv_is_stored_as_jsonl_triplets_and_trains(
    pg_stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "nli.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence_a", "sentence_b", "gold"])
        numbers = {"entailment": 0, "neutral": 1, "contradiction": 2}
        for row in read_jsonl(SNLI_PAIRS, limit=600):
            writer.writerow([row["premise"], row["hypothesis"], numbers[row["label"]]])
    mapping = {"premise": "sentence_a", "hypothesis": "sentence_b", "label": "gold"}
    ds = created(upload(pg_stack.client, path, mapping))
    assert ds["format"] == "csv" and ds["kind"] == "triplet"
    assert ds["column_mapping"] == mapping
    assert ds["text_columns"] == ["anchor", "positive", "negative"]
    assert ds["conversion"]["source_rows"] == 600
    assert ds["rows"] == ds["conversion"]["triplets"] > 0
    stored = stored_file(pg_stack, ds["id"], ".jsonl")
    assert not (pg_stack.data_dir / "datasets" / f"{ds['id']}.csv").exists()
    first = json.loads(stored.read_text().splitlines()[0])
    assert set(first) == {"anchor", "positive", "negative"}

    final = train_tiny(pg_stack, ds["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())


def test_several_negatives_upload_and_train(
    pg_stack: Stack, tmp_path: Path, triplets: list[dict[str, Any]]
) -> None:
    rows = [
        {
            "anchor": r["anchor"],
            "positive": r["positive"],
            "negative": r["negative"],
            "negative_2": triplets[i + 100]["negative"],
            "negative_3": triplets[i + 200]["negative"],
        }
        for i, r in enumerate(triplets[:64])
    ]
    ds = created(upload(pg_stack.client, write_jsonl(tmp_path / "multi.jsonl", rows)))
    assert ds["kind"] == "triplet"
    assert ds["negatives"] == 3
    assert ds["text_columns"] == ["anchor", "positive", "negative", "negative_2", "negative_3"]

    final = train_tiny(pg_stack, ds["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())

    # The triplet evaluator scores one negative per anchor: such a set cannot be test data.
    r = pg_stack.client.post(
        "/jobs",
        json={"base_model": TINY_MODEL, "train_dataset": ds["id"], "test_dataset": ds["id"]},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "dataset_kind_invalid"
    assert r.json()["error"]["details"] == {
        "field": "test_dataset",
        "dataset": ds["id"],
        "negatives": 3,
    }


def test_sts_upload(pg_stack: Stack) -> None:
    ds = created(upload(pg_stack.client, STSB_DEV))
    assert ds["kind"] == "sts"
    assert ds["rows"] == 1500
    assert ds["columns"] == ds["text_columns"] == ["sentence1", "sentence2", "score"]
    assert ds["negatives"] == 0
    assert ds["conversion"] is None and ds["column_mapping"] is None
    listed = {d["id"]: d for d in pg_stack.client.get("/datasets").json()["data"]}
    assert listed[ds["id"]] == ds


def test_mapped_sts_upload(pg_stack: Stack, tmp_path: Path) -> None:
    rows = [
        {"s1": r["sentence1"], "s2": r["sentence2"], "similarity": r["score"]}
        for r in read_jsonl(STSB_DEV, limit=100)
    ]
    mapping = {"sentence1": "s1", "sentence2": "s2", "score": "similarity"}
    ds = created(upload(pg_stack.client, write_jsonl(tmp_path / "sts.jsonl", rows), mapping))
    assert ds["kind"] == "sts"
    assert ds["text_columns"] == ["s1", "s2", "similarity"]


def test_the_schema_documents_the_new_fields(pg_stack: Stack) -> None:
    spec = pg_stack.client.get("/openapi.json").json()
    read = spec["components"]["schemas"]["DatasetRead"]["properties"]
    for field in ("text_columns", "negatives", "column_mapping", "conversion"):
        assert read[field].get("description"), field
    assert set(read["kind"]["enum"]) == {"triplet", "pair", "sts"}
    conversion = spec["components"]["schemas"]["DatasetConversion"]["properties"]
    assert set(conversion) == {
        "from",
        "source_rows",
        "premises",
        "triplets",
        "premises_without_pair",
    }
    body = spec["paths"]["/datasets"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = spec["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert "role -> your column name" in form["properties"]["column_mapping"]["description"]


# --------------------------------------------------------------------------------------------
# What is rejected, and how


def _sts_line(score: str) -> str:
    texts = '"sentence1": "A man is playing a flute.", "sentence2": "A man plays a flute."'
    return f'{{{texts}, "score": {score}}}\n'


GOOD_TRIPLET = {"query": "A man plays.", "passage": "A person plays.", "hard_negative": "A cat."}


@pytest.mark.parametrize(
    ("mapping", "in_message", "details"),
    [
        ('{"anchor": "query"', "not valid JSON", {}),
        ('["anchor", "query"]', "expected a JSON object", {}),
        ('{"question": "query"}', "unknown role 'question'", {"role": "question"}),
        (
            '{"anchor": "query", "positive": "query"}',
            "roles 'anchor' and 'positive' are both mapped to column 'query'",
            {"role": "positive", "column": "query"},
        ),
        (
            '{"anchor": "query", "positive": "passage", "negative": "hardneg"}',
            "role 'negative' is mapped to column 'hardneg', which the file does not have",
            {"role": "negative", "column": "hardneg"},
        ),
        (
            '{"anchor": "query", "positive": "passage", "score": "hard_negative"}',
            "role 'score' is not used",
            {"role": "score", "column": "hard_negative"},
        ),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "unknown-role",
        "one-column-twice",
        "no-such-column",
        "unused-role",
    ],
)
def test_bad_column_mappings_are_422(
    pg_stack: Stack, tmp_path: Path, mapping: str, in_message: str, details: dict[str, Any]
) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [GOOD_TRIPLET] * 3)
    r = upload(pg_stack.client, path, mapping)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_invalid"
    assert error["details"]["field"] == "column_mapping"
    assert error["message"].startswith("column_mapping: ")
    assert in_message in error["message"]
    for key, value in details.items():
        assert error["details"][key] == value, error


NLI_NO_PAIR = (
    '{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": "entailment"}\n'
    '{"premise": "A dog runs.", "hypothesis": "The dog is brown.", "label": "neutral"}\n'
    '{"premise": "Two men talk.", "hypothesis": "Nobody talks.", "label": "contradiction"}\n'
)


@pytest.mark.parametrize(
    ("filename", "content", "in_message", "details"),
    [
        (
            "gap.jsonl",
            '{"anchor": "a", "positive": "b", "negative_1": "c", "negative_3": "d"}\n',
            "column 'negative_2' is missing",
            {"line": 1, "column": "negative_2"},
        ),
        (
            "sts.jsonl",
            _sts_line("0.5") + _sts_line("4.2"),
            "line 2 (row 2): column 'score' must be a score from 0 to 1",
            {"line": 2, "row": 2, "column": "score"},
        ),
        (
            "sts.jsonl",
            _sts_line('"0.5"'),
            "line 1 (row 1): column 'score' is not a number",
            {"line": 1, "row": 1, "column": "score"},
        ),
        (
            "sts.csv",
            "sentence1,sentence2,score\nA man sings.,A man is singing.,0.9\nA b.,C d.,nan\n",
            "line 3 (row 2): column 'score' is not a number",
            {"line": 3, "row": 2, "column": "score"},
        ),
        (
            "nli.jsonl",
            NLI_NO_PAIR + '{"premise": "p", "hypothesis": "h", "label": "unknown"}\n',
            "line 4 (row 4): column 'label' must be an NLI label",
            {"line": 4, "row": 4, "column": "label"},
        ),
        (
            "nli.jsonl",
            NLI_NO_PAIR,
            "no premise had both an entailed and a contradicting hypothesis",
            {},
        ),
    ],
    ids=[
        "negative-gap",
        "sts-score-range",
        "sts-score-string",
        "sts-csv-nan",
        "nli-label",
        "nli-no-triplets",
    ],
)
def test_bad_shaped_files_are_422(
    pg_stack: Stack,
    tmp_path: Path,
    filename: str,
    content: str,
    in_message: str,
    details: dict[str, Any],
) -> None:
    path = tmp_path / filename
    path.write_text(content, encoding="utf-8")
    r = upload(pg_stack.client, path)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_invalid"
    assert error["details"]["field"] == "file"
    assert in_message in error["message"], error
    for key, value in details.items():
        assert error["details"][key] == value, error
    # Nothing was kept: no dataset, no file, no leftover temporary.
    leftovers = [p.name for p in (pg_stack.data_dir / "scratch" / "uploads").iterdir()]
    assert leftovers == [], leftovers
