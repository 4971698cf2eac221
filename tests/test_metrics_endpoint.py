"""GET /jobs/{id}/metrics, hold-out eval sets, STS correlations and the model card, over HTTP
against the real stack (PostgreSQL, Redis, API and Celery worker processes)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TINY_MODEL, Stack
from tests.support.services import extract_archive, upload, wait_for_job
from tests.support.tiny_model import SHARED_DATA, read_jsonl, write_jsonl

METRIC_KEYS = ["cosine_accuracy", "dot_accuracy", "euclidean_accuracy", "manhattan_accuracy"]
METRIC_KEYS.append("max_accuracy")
STS_KEYS = ["sts_spearman_cosine", "sts_pearson_cosine"]


def dataset_id(client: httpx.Client, path: Path) -> str:
    r = upload(client, path)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def create(client: httpx.Client, body: dict[str, Any]) -> str:
    r = client.post("/jobs", json={"base_model": TINY_MODEL, **body})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def metrics_of(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"/jobs/{job_id}/metrics")
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_final_matches_job(series: dict[str, Any], job: dict[str, Any]) -> None:
    final = series["final"]
    assert final["base"] == job["metrics"]["base"]
    assert final["fine_tuned"] == job["metrics"]["fine_tuned"]
    assert final["evaluated_on"] == job["metrics"]["evaluated_on"]
    assert set(final["difference"]) == set(final["base"])
    for key, base in final["base"].items():
        tuned = final["fine_tuned"][key]
        if base is None:
            assert final["difference"][key] is None
        else:
            assert final["difference"][key] == pytest.approx(tuned - base, abs=1e-12)


def test_time_series_while_running_and_when_done(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    client = pg_stack.client
    train = dataset_id(client, triplet_files["train"])
    # A small eval set keeps the eleven evaluations quick.
    evals = dataset_id(
        client, write_jsonl(tmp_path / "eval.jsonl", read_jsonl(triplet_files["test"], limit=50))
    )
    # 600 rows / 8 per batch * 3 epochs = 225 steps: the loss is logged every 2 steps (about 100
    # times a run) and the eval set evaluated every ceil(225 / 10) = 23 steps.
    job_id = create(
        client,
        {
            "train_dataset": train,
            "eval_dataset": evals,
            "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 1e-3},
        },
    )
    assert client.get(f"/jobs/{job_id}").json()["hyperparameters"]["eval_steps"] is None
    queued = metrics_of(client, job_id)
    assert queued["job_id"] == job_id and queued["final"] is None
    assert queued["train"] == [] and queued["eval"] == []

    # The series is readable while the job runs, and grows.
    partial: list[dict[str, Any]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        series = metrics_of(client, job_id)
        if series["status"] == "running" and series["train"]:
            partial.append(series)
        if series["status"] in {"succeeded", "failed"}:
            break
        time.sleep(0.2)
    final_job, _ = wait_for_job(client, job_id)
    assert final_job["status"] == "succeeded", (final_job, pg_stack.logs())
    series = metrics_of(client, job_id)
    assert partial, "never saw a running job with a partial series"
    assert partial[0]["final"] is None
    assert len(partial[0]["train"]) < len(series["train"])
    assert partial[0]["train"] == series["train"][: len(partial[0]["train"])]

    assert series["status"] == "succeeded" and series["total_steps"] == 225
    # A train point at every logging step, and at the last step.
    train_points = series["train"]
    assert [p["step"] for p in train_points] == [*range(2, 225, 2), 225]
    for point in train_points:
        assert set(point) == {"step", "epoch", "loss", "learning_rate", "grad_norm"}
        assert point["loss"] > 0 and math.isfinite(point["grad_norm"])
        assert 0 <= point["learning_rate"] <= 1e-3
    assert train_points[-1]["epoch"] == pytest.approx(3.0)
    # The base model at step 0, then of the 9 steps of the 23-step cadence those that fit in a
    # tenth of the training time (worker.training.callbacks.EvaluationBudget), and the last step.
    eval_points = series["eval"]
    eval_steps = [p["step"] for p in eval_points]
    assert eval_steps[0] == 0 and eval_steps[-1] == 225
    assert set(eval_steps[1:-1]) <= set(range(23, 225, 23))
    assert eval_steps == sorted(eval_steps)
    for point in eval_points:
        assert set(point) == {"step", "epoch", "loss", *METRIC_KEYS}
        assert point["loss"] > 0
        assert all(0 <= point[k] <= 1 for k in METRIC_KEYS)
    assert eval_points[0]["epoch"] == 0
    # The tiny random model learns: the eval loss goes down.
    assert eval_points[-1]["loss"] < eval_points[0]["loss"]

    # Eval set given: nothing held out; the final metrics are the job's, on the eval data.
    assert final_job["holdout"] is None
    assert final_job["hyperparameters"]["eval_steps"] == 23  # resolved once it ran
    assert final_job["metrics"]["evaluated_on"] == "eval"
    assert_final_matches_job(series, final_job)
    # The last evaluation during training scored the model that was saved, on the same rows.
    for key in METRIC_KEYS:
        assert eval_points[-1][key] == pytest.approx(series["final"]["fine_tuned"][key], abs=1e-6)

    missing = client.get("/jobs/job_doesnotexist/metrics")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_a_job_without_eval_data_holds_rows_out(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    client = pg_stack.client
    train = dataset_id(client, triplet_files["train"])
    job_id = create(
        client,
        {
            "train_dataset": train,
            "hyperparameters": {"max_steps": 10, "eval_steps": 5, "batch_size": 8, "seed": 7},
        },
    )
    job, _ = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", (job, pg_stack.logs())
    # 5% of 600 rows, seeded by the job's seed, not trained on.
    assert job["holdout"] == {"rows": 30, "share": 0.05, "seed": 7}
    assert job["metrics"]["evaluated_on"] == "holdout"
    assert job["hyperparameters"]["eval_steps"] == 5  # as given
    series = metrics_of(client, job_id)
    assert [p["step"] for p in series["eval"]] == [0, 5, 10]
    assert [p["step"] for p in series["train"]] == list(range(1, 11))
    assert_final_matches_job(series, job)
    assert series["final"]["evaluated_on"] == "holdout"

    # The downloaded model's card states the base model, data sizes, hyperparameters, metrics.
    model_dir = extract_archive(client.get(job["model"]["url"]).content, tmp_path / "model")
    card = (model_dir / "README.md").read_text()
    ours = card[card.index("## Fine-tuned with Embedtune") : card.index("## Model Details")]
    assert f"Fine-tuned from `{TINY_MODEL}` with MultipleNegativesRankingLoss for 10 steps" in ours
    assert "| train | 570 |" in ours
    assert "| eval | 30 (held out of the training data: 5% of its rows, seed 7;" in ours
    assert "| test | none |" in ours
    assert "| batch_size | 8 |" in ours and "| eval_steps | 5 |" in ours
    assert "| precision | fp32 |" in ours and "| seed | 7 |" in ours
    for key in METRIC_KEYS:
        base, tuned = job["metrics"]["base"][key], job["metrics"]["fine_tuned"][key]
        assert f"| {key} | {base:.4f} | {tuned:.4f} | {tuned - base:+.4f} |" in ours
    stored = json.loads((model_dir / "metrics.json").read_text())
    assert stored["fine_tuned"] == {k: job["metrics"]["fine_tuned"][k] for k in METRIC_KEYS}


def test_sts_dataset_adds_correlations(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    client = pg_stack.client
    sts_path = write_jsonl(
        tmp_path / "stsb.jsonl", read_jsonl(SHARED_DATA / "stsb_dev.jsonl", limit=300)
    )
    sts = upload(client, sts_path).json()
    assert sts["kind"] == "sts", sts
    train = dataset_id(client, triplet_files["train"])
    test = dataset_id(client, triplet_files["test"])

    # Validation: the field must name an existing STS dataset, and an STS dataset is only that.
    for body, code, field in [
        ({"sts_dataset": "ds_nope"}, "dataset_not_found", "sts_dataset"),
        ({"sts_dataset": test}, "dataset_kind_invalid", "sts_dataset"),
        ({"sts_dataset": sts["id"], "eval_dataset": sts["id"]}, "dataset_kind_invalid", None),
        ({"train_dataset": sts["id"]}, "dataset_kind_invalid", "train_dataset"),
    ]:
        r = client.post("/jobs", json={"base_model": TINY_MODEL, "train_dataset": train, **body})
        assert r.status_code == 422, (body, r.text)
        error = r.json()["error"]
        assert error["code"] == code, error
        assert error["details"]["field"] == (field or "eval_dataset"), error

    job_id = create(
        client,
        {
            "train_dataset": train,
            "test_dataset": test,
            "sts_dataset": sts["id"],
            "hyperparameters": {"max_steps": 6, "batch_size": 16, "learning_rate": 1e-3},
        },
    )
    job, _ = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", (job, pg_stack.logs())
    assert job["sts_dataset"] == sts["id"]
    assert job["metrics"]["evaluated_on"] == "test"
    for which in ("base", "fine_tuned"):
        for key in STS_KEYS:
            value = job["metrics"][which][key]
            assert isinstance(value, float) and -1 <= value <= 1, (which, key, value)
    assert (
        job["metrics"]["fine_tuned"]["sts_spearman_cosine"]
        != (job["metrics"]["base"]["sts_spearman_cosine"])
    )
    series = metrics_of(client, job_id)
    assert_final_matches_job(series, job)
    assert all(series["final"]["difference"][k] is not None for k in STS_KEYS)


def test_the_schema_documents_the_metrics_endpoint(pg_stack: Stack) -> None:
    spec = pg_stack.client.get("/openapi.json").json()
    operation = spec["paths"]["/jobs/{job_id}/metrics"]["get"]
    assert set(operation["responses"]) >= {"200", "404"}
    schemas = spec["components"]["schemas"]
    series = schemas["JobMetricsSeries"]
    assert series["examples"][0]["final"]["difference"]
    for name, fields in {
        "JobMetricsSeries": ["total_steps", "train", "eval", "final"],
        "TrainPoint": ["step", "epoch", "loss", "learning_rate", "grad_norm"],
        "EvalPoint": ["step", "epoch", "loss", "cosine_accuracy"],
        "FinalMetrics": ["base", "fine_tuned", "difference", "evaluated_on"],
        "JobRead": ["holdout", "sts_dataset"],
        "JobCreate": ["sts_dataset"],
        "HyperparametersIn": ["eval_steps"],
        "TripletMetrics": STS_KEYS,
    }.items():
        properties = schemas[name]["properties"]
        for field in fields:
            assert properties[field].get("description"), (name, field)
    eval_steps = schemas["HyperparametersIn"]["properties"]["eval_steps"]
    assert eval_steps["anyOf"][0]["minimum"] == 1
