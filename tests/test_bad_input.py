"""Bad input gets a clear 4xx naming the field or row; a job that cannot run ends `failed`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import (
    Process,
    free_port,
    python_cli,
    upload,
    wait_for_job,
    wait_for_response,
)

GOOD = '{"anchor": "a man", "positive": "a person", "negative": "a cat"}\n'


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        (
            "bad.jsonl",
            GOOD.encode() + b'{"anchor": "caf\xe9", "positive": "x", "negative": "y"}\n',
            {"line": 2},
        ),
        ("bad.jsonl", (GOOD + '{"anchor": "a", "positive": \n').encode(), {"line": 2}),
        ("bad.jsonl", b'{"anchor": "a", "negative": "b"}\n', {"missing": ["positive"]}),
        (
            "bad.jsonl",
            (GOOD + '{"anchor": "a", "positive": "  ", "negative": "c"}\n').encode(),
            {"line": 2, "column": "positive"},
        ),
        (
            "bad.jsonl",
            (GOOD + '{"anchor": "a", "positive": "b", "negative": 7}\n').encode(),
            {"line": 2, "column": "negative"},
        ),
        ("bad.csv", b"anchor,positive,negative\n", {}),
        ("bad.csv", b"anchor,positive\nfine,also fine\n,empty anchor\n", {"column": "anchor"}),
    ],
    ids=[
        "encoding",
        "malformed-json",
        "missing-column",
        "blank-text",
        "non-string",
        "zero-rows",
        "csv-empty-text",
    ],
)
def test_upload_validation_names_the_row_and_column(
    pg_stack: Stack, tmp_path: Path, filename: str, content: bytes, expected: dict
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    r = upload(pg_stack.client, path)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_invalid"
    assert error["details"]["field"] == "file"
    for key, value in expected.items():
        assert error["details"][key] == value, error
    if "line" in expected:
        assert f"line {expected['line']}" in error["message"]
    if "column" in expected:
        assert expected["column"] in error["message"]


def test_upload_over_the_size_limit_is_413(pg_stack: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {**pg_stack.env, "EMBEDTUNE_MAX_UPLOAD_BYTES": "1000"}
    api = Process("api-small-uploads", python_cli("api", "--port", str(port)), env, tmp_path)
    try:
        wait_for_response(f"http://127.0.0.1:{port}/health")
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=30, headers=pg_stack.client.headers
        ) as client:
            just_under = tmp_path / "under.jsonl"
            just_under.write_text(GOOD * (1000 // len(GOOD)))
            assert upload(client, just_under).status_code == 201
            over = tmp_path / "over.jsonl"
            over.write_text(GOOD * (1000 // len(GOOD) + 1))
            r = upload(client, over)
            assert r.status_code == 413, r.text
            assert r.json()["error"]["code"] == "payload_too_large"
            assert "EMBEDTUNE_MAX_UPLOAD_BYTES" in r.json()["error"]["message"]
    finally:
        api.stop()


def _job(**overrides: object) -> dict:
    body: dict = {"base_model": TINY_MODEL, "train_dataset": "ds_missing"}
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def datasets(pg_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("bad-input")
    triplets, pairs = folder / "t.jsonl", folder / "p.jsonl"
    triplets.write_text(GOOD * 40)
    pairs.write_text('{"anchor": "a man", "positive": "a person"}\n' * 40)
    return {
        "triplet": upload(pg_stack.client, triplets).json()["id"],
        "pair": upload(pg_stack.client, pairs).json()["id"],
    }


@pytest.mark.parametrize(
    ("hyperparameters", "field"),
    [
        ({"epochs": 0}, "hyperparameters.epochs"),
        ({"epochs": 101}, "hyperparameters.epochs"),
        ({"batch_size": 1}, "hyperparameters.batch_size"),
        ({"learning_rate": 0}, "hyperparameters.learning_rate"),
        ({"warmup_ratio": 1.0}, "hyperparameters.warmup_ratio"),
        ({"max_seq_length": 4}, "hyperparameters.max_seq_length"),
        ({"precision": "fp8"}, "hyperparameters.precision"),
        ({"max_steps": 0}, "hyperparameters.max_steps"),
        ({"epoch": 2}, "hyperparameters.epoch"),
    ],
)
def test_out_of_range_hyperparameters_are_422(
    pg_stack: Stack, datasets: dict[str, str], hyperparameters: dict, field: str
) -> None:
    r = pg_stack.client.post(
        "/jobs", json=_job(train_dataset=datasets["triplet"], hyperparameters=hyperparameters)
    )
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    assert field in error["message"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (_job(), "dataset_not_found", "train_dataset"),
        (
            _job(train_dataset="TRIPLET", test_dataset="ds_nope"),
            "dataset_not_found",
            "test_dataset",
        ),
        (
            _job(train_dataset="TRIPLET", eval_dataset="PAIR"),
            "dataset_kind_invalid",
            "eval_dataset",
        ),
    ],
)
def test_unusable_dataset_references_are_422(
    pg_stack: Stack, datasets: dict[str, str], body: dict, code: str, field: str
) -> None:
    for key in ("train_dataset", "eval_dataset", "test_dataset"):
        if body.get(key) in {"TRIPLET", "PAIR"}:
            body = {**body, key: datasets[str(body[key]).lower()]}
    r = pg_stack.client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["details"]["field"] == field
    assert field in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "name", ["../etc", "/abs/model", "a/../../b", "a\\b", "", "a//b", "~/model"]
)
def test_base_model_must_be_a_name_not_a_path(pg_stack: Stack, datasets, name: str) -> None:
    r = pg_stack.client.post("/jobs", json=_job(train_dataset=datasets["triplet"], base_model=name))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "base_model"


def test_missing_fields_and_unknown_fields_are_422(pg_stack: Stack) -> None:
    r = pg_stack.client.post("/jobs", json={"train_dataset": "x"})
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "base_model"
    r = pg_stack.client.post("/jobs", json=_job(loss="triplet"))
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "loss"
    r = pg_stack.client.post(
        "/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"


def test_unknown_ids_are_404_and_bad_cursor_is_422(pg_stack: Stack) -> None:
    for path in ("/jobs/job_nope", "/jobs/job_nope/model", "/datasets/ds_nope"):
        r = pg_stack.client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    r = pg_stack.client.get("/jobs", params={"cursor": "garbage!"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "cursor"
    assert pg_stack.client.get("/jobs", params={"limit": 0}).status_code == 422


def test_unknown_base_model_is_refused_at_creation(pg_stack: Stack, datasets) -> None:
    """Not in the model dirs and, offline (the stack's HF_HUB_OFFLINE=1), not in the cache: 422
    at once, with the close local names, instead of a job failing in the worker later."""
    before = pg_stack.client.get("/jobs", params={"limit": 100}).json()["data"]
    for name, close in (("no-such-org/no-such-model", []), ("tiny-bret", [TINY_MODEL])):
        body = _job(train_dataset=datasets["triplet"], base_model=name)
        r = pg_stack.client.post("/jobs", json=body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "model_not_found"
        assert error["details"]["field"] == "base_model"
        assert error["details"]["close_matches"][: len(close)] == close
    assert pg_stack.client.get("/jobs", params={"limit": 100}).json()["data"] == before


def test_unreachable_hub_dataset_fails_with_dataset_unavailable(pg_stack: Stack) -> None:
    r = pg_stack.client.post(
        "/jobs",
        json=_job(
            train_dataset={"hub": "no-such-org/no-such-data", "config": "triplet", "limit": 10}
        ),
    )
    assert r.status_code == 202, r.text
    assert r.json()["train_dataset"] == {
        "hub": "no-such-org/no-such-data",
        "config": "triplet",
        "split": "train",
        "limit": 10,
        "revision": None,
        "columns": None,
    }
    final, _ = wait_for_job(pg_stack.client, r.json()["id"])
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "dataset_unavailable"
    assert "no-such-org/no-such-data" in final["error"]["message"]


HUB = {"hub": "org/qa-pairs", "split": "train"}


@pytest.mark.parametrize(
    ("field", "columns", "code"),
    [
        ("train_dataset", {"anchor": "query"}, "validation_error"),
        ("train_dataset", {"anchor": "q", "positive": "q"}, "validation_error"),
        ("train_dataset", {"anchor": "q", "postive": "p"}, "validation_error"),
        ("train_dataset", {"premise": "a", "hypothesis": "b", "label": "c"}, "validation_error"),
        (
            "train_dataset",
            {"sentence1": "a", "sentence2": "b", "score": "s"},
            "dataset_kind_invalid",
        ),
        ("test_dataset", {"anchor": "q", "positive": "p"}, "dataset_kind_invalid"),
        (
            "test_dataset",
            {"anchor": "q", "positive": "p", "negative_1": "n", "negative_2": "m"},
            "dataset_kind_invalid",
        ),
        ("sts_dataset", {"anchor": "q", "positive": "p"}, "dataset_kind_invalid"),
    ],
)
def test_hub_column_mapping_must_describe_a_usable_shape(
    pg_stack: Stack, datasets: dict[str, str], field: str, columns: dict, code: str
) -> None:
    body = _job(train_dataset=datasets["triplet"])
    body[field] = {**HUB, "columns": columns}
    r = pg_stack.client.post("/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["details"]["field"] == f"{field}.columns"
    assert error["message"].startswith(f"{field}.columns: ")


def test_hub_column_mapping_is_kept_on_the_job(pg_stack: Stack) -> None:
    columns = {"anchor": "query", "positive": "answer", "negative": "hard"}
    r = pg_stack.client.post(
        "/jobs", json=_job(train_dataset={**HUB, "columns": columns}, base_model=TINY_MODEL)
    )
    assert r.status_code == 202, r.text
    assert r.json()["train_dataset"]["columns"] == columns
    # No Hub here: the job fails to load the data, and says which dataset it tried.
    final, _ = wait_for_job(pg_stack.client, r.json()["id"])
    assert final["error"]["code"] == "dataset_unavailable"
    assert final["train_dataset"]["columns"] == columns


def test_dataset_whose_file_was_lost_is_refused_at_job_creation(
    pg_stack: Stack, tmp_path: Path
) -> None:
    path = tmp_path / "lost.jsonl"
    path.write_text(GOOD * 30)
    dataset = upload(pg_stack.client, path).json()
    (pg_stack.data_dir / "datasets" / f"{dataset['id']}.jsonl").unlink()
    r = pg_stack.client.post("/jobs", json=_job(train_dataset=dataset["id"]))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "dataset_unavailable"
    assert error["details"] == {"field": "train_dataset", "dataset": dataset["id"]}
    assert "upload it again" in error["message"]
