"""The whole path a platform team walks, over HTTP, on PostgreSQL + Redis + a Celery worker."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from sentence_transformers import SentenceTransformer

from rules.phases import TIMING_KEYS, Phase
from tests.accuracy import assert_same_accuracy, cosine_triplet_accuracy
from tests.conftest import HUB_MODEL, TINY_MODEL, Stack
from tests.support.services import extract_archive, upload, wait_for_job

METRIC_KEYS = {
    "cosine_accuracy",
    "dot_accuracy",
    "euclidean_accuracy",
    "manhattan_accuracy",
    "max_accuracy",
}
STS_KEYS = {"sts_spearman_cosine", "sts_pearson_cosine"}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_upload_train_poll_download_and_recompute(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    client = pg_stack.client
    train = upload(client, triplet_files["train"], name="snli-train")
    assert train.status_code == 201, train.text
    test = upload(client, triplet_files["test"])
    assert test.status_code == 201, test.text
    train_ds, test_ds = train.json(), test.json()
    assert train_ds["kind"] == "triplet" and train_ds["rows"] == 600
    assert train_ds["sha256"] == hashlib.sha256(triplet_files["train"].read_bytes()).hexdigest()
    assert client.get(f"/datasets/{train_ds['id']}").json() == train_ds
    assert {d["id"] for d in client.get("/datasets").json()["data"]} >= {train_ds["id"]}

    created = client.post(
        "/jobs",
        json={
            "name": "tiny-flow",
            "base_model": TINY_MODEL,
            "train_dataset": train_ds["id"],
            "test_dataset": test_ds["id"],
            # Enough steps that polling sees the job running with progress.
            "hyperparameters": {"epochs": 4, "batch_size": 8, "learning_rate": 1e-3},
            "metadata": {"team": "search"},
        },
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["location"] == f"/jobs/{job['id']}"
    assert job["status"] == job["phase"] == "queued"
    assert job["hyperparameters"] == {
        "epochs": 4,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "warmup_ratio": 0.1,
        "max_seq_length": None,
        "seed": 42,
        "precision": "auto",
        "max_steps": None,
        "eval_steps": None,
        "time_limit_s": None,
    }
    early = client.get(f"/jobs/{job['id']}/model")
    assert early.status_code == 409 and early.json()["error"]["code"] == "model_not_ready"

    final, seen = wait_for_job(client, job["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())
    running = [s for s in seen if s["status"] == "running" and s["progress"]]
    assert running, f"never saw running with progress: {seen}"
    steps = [s["progress"]["step"] for s in running]
    assert steps == sorted(steps) and steps[0] < 288
    # No eval set: 5% of the 600 rows (30) are held out to evaluate on while training, so
    # 570 rows / 8 per batch * 4 epochs.
    assert final["holdout"] == {"rows": 30, "share": 0.05, "seed": 42}
    assert running[0]["progress"]["total_steps"] == 288
    # Phases only ever move forward, and each progress past the first step has a time left.
    order = [p.value for p in Phase] + ["succeeded"]
    phases = [s["phase"] for s in seen]
    assert set(phases) <= set(order), phases
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases), phases
    for snapshot in running:
        if snapshot["progress"]["step"] > 0:
            assert snapshot["progress"]["eta_s"] >= 0, snapshot["progress"]
    assert final["progress"]["step"] == final["progress"]["total_steps"] == 288
    assert final["started_at"] and final["finished_at"] >= final["started_at"]
    assert final["hyperparameters"]["precision"] == "fp32"  # auto on a CPU worker
    assert final["hyperparameters"]["max_seq_length"] == 128  # the tiny model's own
    assert final["hyperparameters"]["eval_steps"] == 29  # resolved: ceil(288 / 10)
    assert final["metrics"]["evaluated_on"] == "test"
    assert final["metadata"] == {"team": "search"} and final["error"] is None
    # Where the time went: every phase, summing to the attempt's time from claim to finish.
    timings = final["timings"]
    assert final["phase"] == "succeeded" and tuple(timings) == TIMING_KEYS
    assert all(value >= 0 for value in timings.values()), timings
    assert timings["training_s"] > 0 and timings["evaluating_s"] > 0
    ran = (parse_time(final["finished_at"]) - parse_time(final["started_at"])).total_seconds()
    assert 0.5 * ran <= sum(timings.values()) - timings["queued_s"] <= ran + 1.0, (timings, ran)
    assert final["throughput"] == round(288 * 8 / timings["training_s"], 2)

    metrics = final["metrics"]
    for which in ("base", "fine_tuned"):
        assert set(metrics[which]) == METRIC_KEYS | STS_KEYS
        assert all(metrics[which][k] is None for k in STS_KEYS)  # no sts_dataset
        assert 0 <= metrics[which]["cosine_accuracy"] <= 1
        assert metrics[which]["max_accuracy"] == max(
            metrics[which][k] for k in METRIC_KEYS if k != "max_accuracy"
        )

    download = client.get(final["model"]["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/gzip"
    assert hashlib.sha256(download.content).hexdigest() == final["model"]["sha256"]
    assert len(download.content) == final["model"]["size_bytes"]

    model_dir = extract_archive(download.content, tmp_path / "model")
    assert (model_dir / "model.safetensors").is_file()
    card = (model_dir / "README.md").read_text()
    assert "### Training time" in card
    for key in ("queued_s", "loading_s", "evaluating_base_s", "training_s", "evaluating_s"):
        assert f"| {timings[key]:.3f} |" in card, key
    assert f"{final['throughput']:.2f} training samples per second" in card
    stored = json.loads((model_dir / "metrics.json").read_text())
    for which in ("base", "fine_tuned"):
        assert stored[which] == {k: metrics[which][k] for k in METRIC_KEYS}
    assert SentenceTransformer(str(model_dir), device="cpu").encode(["a test"]).shape[0] == 1

    recomputed = cosine_triplet_accuracy(model_dir, triplet_files["test"])
    assert_same_accuracy(
        recomputed, metrics["fine_tuned"]["cosine_accuracy"], triplet_files["test"]
    )
    # Training moved the weights: the tiny random model starts near chance.
    assert metrics["fine_tuned"]["cosine_accuracy"] != metrics["base"]["cosine_accuracy"]


def test_pairs_train_and_job_listing(pg_stack: Stack, triplet_files: dict[str, Path], tmp_path):
    """MNR trains on (anchor, positive) pairs too; jobs list newest first with a cursor."""
    client = pg_stack.client
    pairs = tmp_path / "pairs.csv"
    import csv

    with pairs.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["anchor", "positive"])
        for line in triplet_files["train"].open():
            row = json.loads(line)
            writer.writerow([row["anchor"], row["positive"]])
    ds = upload(client, pairs).json()
    assert ds["kind"] == "pair" and ds["format"] == "csv"
    test_ds = upload(client, triplet_files["test"]).json()

    ids = []
    for i in range(3):
        r = client.post(
            "/jobs",
            json={
                "name": f"pairs-{i}",
                "base_model": TINY_MODEL,
                "train_dataset": ds["id"],
                "eval_dataset": test_ds["id"],
                "hyperparameters": {"max_steps": 3, "batch_size": 16},
            },
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    for job_id in ids:
        final, _ = wait_for_job(client, job_id)
        assert final["status"] == "succeeded", (final, pg_stack.logs())
        assert final["progress"]["step"] == 3
        # No test set: the metrics come from the eval set, and say so; nothing is held out.
        assert final["metrics"]["evaluated_on"] == "eval"
        assert final["holdout"] is None

    first = client.get("/jobs", params={"limit": 2, "status": "succeeded"}).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    rest = client.get(
        "/jobs", params={"limit": 2, "status": "succeeded", "cursor": first["next_cursor"]}
    ).json()
    assert rest["data"][0]["id"] == ids[0]
    assert client.get("/jobs", params={"status": "running", "limit": 100}).json()["data"] == []


def test_hub_model_id_resolves_through_the_hugging_face_cache(
    pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    """A Hub id (not a model-dir folder) loads from a filled cache with HF_HUB_OFFLINE=1."""
    client = pg_stack.client
    train = upload(client, triplet_files["train"]).json()
    r = client.post(
        "/jobs",
        json={
            "base_model": HUB_MODEL,
            "train_dataset": train["id"],
            "hyperparameters": {"max_steps": 2},
        },
    )
    assert r.status_code == 202, r.text
    final, _ = wait_for_job(client, r.json()["id"])
    assert final["status"] == "succeeded", (final, pg_stack.logs())
    # Without eval or test data, 5% of the training triplets are held out and scored on.
    assert final["holdout"] == {"rows": 30, "share": 0.05, "seed": 42}
    assert final["metrics"]["evaluated_on"] == "holdout"
    assert final["model"]["size_bytes"] > 0
