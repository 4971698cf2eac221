"""The service with a real model: all-MiniLM-L6-v2 on a few hundred real SNLI triplets."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Stack
from tests.support.services import upload, wait_for_job


def test_minilm_fine_tune_does_not_hurt_accuracy(
    pg_stack: Stack, minilm_name: str, triplet_files: dict[str, Path]
) -> None:
    client = pg_stack.client
    train = upload(client, triplet_files["train"]).json()
    test = upload(client, triplet_files["test"]).json()
    r = client.post(
        "/jobs",
        json={
            "base_model": minilm_name,
            "train_dataset": train["id"],
            "test_dataset": test["id"],
            "hyperparameters": {"epochs": 1, "batch_size": 16},
        },
    )
    assert r.status_code == 202, r.text
    final, _ = wait_for_job(client, r.json()["id"], timeout=600)
    assert final["status"] == "succeeded", (final, pg_stack.logs())
    base = final["metrics"]["base"]["cosine_accuracy"]
    tuned = final["metrics"]["fine_tuned"]["cosine_accuracy"]
    print(f"all-MiniLM-L6-v2 on {test['rows']} held-out SNLI triplets: {base:.3f} -> {tuned:.3f}")
    # A strong base model on 200 test rows: one row is 0.005; allow a few rows of noise.
    assert base > 0.6
    assert tuned >= base - 0.03
