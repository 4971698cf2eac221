"""The job-time preflight report (app.jobs.preflight) on small files: every finding, both errors.

The pure function is called directly; the HTTP test at the end runs against `pg_stack`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from app.jobs.preflight import (
    BATCH_FALSE_NEGATIVES,
    ERROR,
    TOO_FEW_TRAIN_ROWS,
    TRAIN_EVAL_OVERLAP,
    TRAIN_TEST_OVERLAP,
    WARNING,
    StoredData,
    has_errors,
    job_preflight,
)
from tests.conftest import TINY_MODEL, Stack
from tests.support.services import upload
from worker.training.holdout import holdout_rows

TRIPLET = ("anchor", "positive", "negative")
HP = {"epochs": 1, "batch_size": 16, "max_steps": None}


def triplets(n: int, prefix: str = "t") -> list[dict[str, str]]:
    return [
        {"anchor": f"{prefix} anchor {i}", "positive": f"{prefix} pos {i}", "negative": f"neg {i}"}
        for i in range(n)
    ]


def jsonl(path: Path, rows: list[dict[str, Any]]) -> StoredData:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return StoredData(path, "jsonl", tuple(rows[0]), len(rows))


def by_code(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["code"]: f for f in report["findings"]}


def test_steps_with_and_without_holdout(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(600))
    # No eval set: the worker's rule holds out 30 of 600 rows; 570 / 8 = 71.25 -> 72 * 4.
    report = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=False,
        hyperparameters={"epochs": 4, "batch_size": 8, "max_steps": None},
    )
    assert holdout_rows(600) == 30
    assert (report["steps"], report["train_rows"], report["holdout_rows"]) == (288, 570, 30)
    assert report["findings"] == [] and report["skipped"] == []
    # With an eval set (even a Hub one) nothing is held out.
    with_eval = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=True,
        hyperparameters={"epochs": 4, "batch_size": 8, "max_steps": None},
    )
    assert (with_eval["steps"], with_eval["holdout_rows"]) == (300, 0)
    # max_steps wins; fewer than 20 rows hold nothing out.
    small = jsonl(tmp_path / "small.jsonl", triplets(19))
    report = job_preflight(
        train=small,
        eval=None,
        test=None,
        has_eval=False,
        hyperparameters={"epochs": 1, "batch_size": 4, "max_steps": 7},
    )
    assert (report["steps"], report["train_rows"], report["holdout_rows"]) == (7, 19, 0)


def test_test_overlap_counts_rows_and_anchors(tmp_path: Path) -> None:
    train_rows = triplets(30)
    train = jsonl(tmp_path / "train.jsonl", train_rows)
    test_rows = triplets(10, prefix="other")
    test_rows[2] = dict(train_rows[5])  # a whole training row
    test_rows[4] = {**train_rows[7], "anchor": "  T ANCHOR 7 "}  # the same, case and spaces aside
    test_rows[6] = {**test_rows[6], "anchor": train_rows[9]["anchor"]}  # only the anchor
    test = jsonl(tmp_path / "test.jsonl", test_rows)
    report = job_preflight(train=train, eval=None, test=test, has_eval=False, hyperparameters=HP)
    finding = by_code(report)[TRAIN_TEST_OVERLAP]
    assert finding["severity"] == WARNING and not has_errors(report)
    assert finding["count"] == 3
    assert finding["details"] == {"rows": 2, "anchors": 3, "of": 10}
    assert [(e["row"], e["match"], e["same_as_train_row"]) for e in finding["examples"]] == [
        (3, "row", 6),
        (5, "row", 8),
        (7, "anchor", 10),
    ]
    assert finding["examples"][0]["texts"] == train_rows[5]
    assert "2 are whole training rows" in finding["message"]


def test_examples_are_capped_at_three(tmp_path: Path) -> None:
    rows = triplets(30)
    train = jsonl(tmp_path / "train.jsonl", rows)
    test = jsonl(tmp_path / "test.jsonl", rows[:8] + triplets(2, prefix="new"))
    finding = by_code(
        job_preflight(train=train, eval=None, test=test, has_eval=False, hyperparameters=HP)
    )[TRAIN_TEST_OVERLAP]
    assert finding["count"] == 8 and len(finding["examples"]) == 3
    assert finding["severity"] == WARNING


def test_eval_overlap_against_pair_training_data_in_csv_and_parquet(tmp_path: Path) -> None:
    # Training pairs (CSV, other column names): a whole row is its anchor and positive.
    pairs = tmp_path / "train.csv"
    with pairs.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["q", "d"])
        writer.writerows([[f"t anchor {i}", f"t pos {i}"] for i in range(25)])
    train = StoredData(pairs, "csv", ("q", "d"), 25)
    eval_rows = triplets(4, prefix="e")
    eval_rows[1] = {"anchor": "t anchor 3", "positive": "t pos 3", "negative": "anything"}
    evals = tmp_path / "eval.parquet"
    pq.write_table(pa.Table.from_pylist(eval_rows), evals)
    report = job_preflight(
        train=train,
        eval=StoredData(evals, "parquet", TRIPLET, 4),
        test=None,
        has_eval=True,
        hyperparameters=HP,
    )
    finding = by_code(report)[TRAIN_EVAL_OVERLAP]
    assert finding["details"] == {"rows": 1, "anchors": 1, "of": 4}
    assert finding["severity"] == WARNING
    assert TRAIN_TEST_OVERLAP not in by_code(report)


@pytest.mark.parametrize("field", ["test", "eval"])
def test_every_test_or_eval_row_in_train_is_an_error(tmp_path: Path, field: str) -> None:
    rows = triplets(40)
    train = jsonl(tmp_path / "train.jsonl", rows)
    inside = jsonl(tmp_path / "inside.jsonl", rows[10:15])
    report = job_preflight(
        train=train,
        eval=inside if field == "eval" else None,
        test=inside if field == "test" else None,
        has_eval=field == "eval",
        hyperparameters=HP,
    )
    code = TRAIN_TEST_OVERLAP if field == "test" else TRAIN_EVAL_OVERLAP
    finding = by_code(report)[code]
    assert finding["severity"] == ERROR and has_errors(report)
    assert finding["details"] == {"rows": 5, "anchors": 5, "of": 5}
    assert f"Every {field} row (5)" in finding["message"]


def test_anchors_alone_never_make_an_error(tmp_path: Path) -> None:
    rows = triplets(40)
    train = jsonl(tmp_path / "train.jsonl", rows)
    same_anchors = [{**r, "positive": "different"} for r in rows[:5]]
    test = jsonl(tmp_path / "test.jsonl", same_anchors)
    report = job_preflight(train=train, eval=None, test=test, has_eval=False, hyperparameters=HP)
    finding = by_code(report)[TRAIN_TEST_OVERLAP]
    assert finding["severity"] == WARNING and not has_errors(report)
    assert finding["details"] == {"rows": 0, "anchors": 5, "of": 5}


@pytest.mark.parametrize(("rows", "has_eval"), [(1, False), (1, True)])
def test_fewer_than_two_train_rows_is_an_error(tmp_path: Path, rows: int, has_eval: bool) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(rows))
    report = job_preflight(train=train, eval=None, test=None, has_eval=has_eval, hyperparameters=HP)
    finding = by_code(report)[TOO_FEW_TRAIN_ROWS]
    assert finding["severity"] == ERROR and has_errors(report)
    assert finding["count"] == rows and report["train_rows"] == rows


def test_two_train_rows_are_enough(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(2))
    report = job_preflight(train=train, eval=None, test=None, has_eval=False, hyperparameters=HP)
    assert report["findings"] == [] and report["steps"] == 1


def test_batch_false_negatives_from_shared_positives(tmp_path: Path) -> None:
    train = jsonl(tmp_path / "train.jsonl", triplets(100))
    report = job_preflight(
        train=train,
        eval=None,
        test=None,
        has_eval=True,
        hyperparameters={"epochs": 1, "batch_size": 10, "max_steps": None},
        shared_positive_rows=20,
    )
    finding = by_code(report)[BATCH_FALSE_NEGATIVES]
    assert finding["severity"] == WARNING and finding["count"] == 20
    # 10 pairs, each in one batch with probability 9/99; spread over 10 batches (Poisson).
    per_batch = 10 * 9 / 99 / 10
    expected = round(10 * (1 - math.exp(-per_batch)), 1)
    assert finding["details"] == {
        "batch_size": 10,
        "batches_per_epoch": 10,
        "expected_batches_without_sampler": expected,
    }
    assert "no-duplicates batch sampler" in finding["message"]
    # Nothing shared (or unknown): no finding.
    for shared in (0, None):
        clean = job_preflight(
            train=train,
            eval=None,
            test=None,
            has_eval=True,
            hyperparameters=HP,
            shared_positive_rows=shared,
        )
        assert clean["findings"] == []


def test_hub_datasets_are_skipped() -> None:
    skipped = [{"field": "train_dataset", "reason": "hub"}]
    report = job_preflight(
        train=None, eval=None, test=None, has_eval=False, hyperparameters=HP, skipped=skipped
    )
    assert report == {
        "steps": None,
        "train_rows": None,
        "holdout_rows": None,
        "findings": [],
        "skipped": skipped,
    }


def test_job_preflight_over_http(pg_stack: Stack, tmp_path: Path) -> None:
    client = pg_stack.client
    rows = triplets(40, prefix="http")
    shared = [{**r, "positive": "the same answer"} for r in triplets(2, prefix="shared")]
    train_path = tmp_path / "train.jsonl"
    train_path.write_text("".join(json.dumps(r) + "\n" for r in rows + shared))
    partly = tmp_path / "partly.jsonl"
    partly.write_text("".join(json.dumps(r) + "\n" for r in [rows[3], *triplets(4, "fresh")]))
    inside = tmp_path / "inside.jsonl"
    inside.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    train, partly_ds, inside_ds = (
        upload(client, p).json()["id"] for p in (train_path, partly, inside)
    )

    body = {
        "base_model": TINY_MODEL,
        "train_dataset": train,
        "test_dataset": partly_ds,
        "hyperparameters": {"epochs": 2, "batch_size": 8},
    }
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    preflight = job["preflight"]
    # 42 rows, 2 held out (no eval set): ceil(40 / 8) * 2.
    assert (preflight["steps"], preflight["train_rows"], preflight["holdout_rows"]) == (10, 40, 2)
    found = by_code(preflight)
    assert found[TRAIN_TEST_OVERLAP]["severity"] == WARNING
    assert found[TRAIN_TEST_OVERLAP]["details"] == {"rows": 1, "anchors": 1, "of": 5}
    assert found[TRAIN_TEST_OVERLAP]["examples"][0]["same_as_train_row"] == 4
    assert found[BATCH_FALSE_NEGATIVES]["count"] == 2
    assert client.get(f"/jobs/{job['id']}").json()["preflight"] == preflight

    before = {j["id"] for j in client.get("/jobs", params={"limit": 100}).json()["data"]}
    rejected = client.post("/jobs", json={**body, "test_dataset": inside_ds, "name": "leaky"})
    assert rejected.status_code == 422, rejected.text
    error = rejected.json()["error"]
    assert error["code"] == "preflight_failed"
    report = error["details"]
    assert report["steps"] == 10
    leak = by_code(report)[TRAIN_TEST_OVERLAP]
    assert leak["severity"] == ERROR and leak["details"] == {"rows": 5, "anchors": 5, "of": 5}
    assert "Every test row (5)" in error["message"]
    after = client.get("/jobs", params={"limit": 100}).json()["data"]
    assert {j["id"] for j in after} == before
    assert "leaky" not in {j["name"] for j in after}

    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "preflight" in schema["JobRead"]["properties"]
    assert schema["JobPreflight"]["examples"]
