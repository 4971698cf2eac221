"""Where each thing lives in the store. Keys are built from server-made ids only."""

from __future__ import annotations

DATASET_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


def dataset_key(dataset_id: str, fmt: str) -> str:
    return f"datasets/{dataset_id}{DATASET_SUFFIX[fmt]}"


def job_prefix(job_id: str) -> str:
    """Everything of one job: its attempts' artifacts and checkpoints."""
    return f"jobs/{job_id}/"


def model_key(job_id: str, attempt: int) -> str:
    """The model archive one attempt writes. It becomes the job's model only when the fenced
    transaction that marks the job succeeded records this key (jobs.model_key), so an attempt
    that lost its lease can never replace the recorded model."""
    return f"jobs/{job_id}/attempt-{attempt}/model.tar.gz"


def legacy_model_key(job_id: str) -> str:
    """Where jobs finished before 0010 left their model (jobs.model_key is None for them)."""
    return f"jobs/{job_id}/model.tar.gz"


def checkpoints_prefix(job_id: str) -> str:
    """A running job's checkpoints, one folder per attempt; removed when the job ends."""
    return f"jobs/{job_id}/checkpoints/"


def attempt_checkpoints_prefix(job_id: str, attempt: int) -> str:
    return f"{checkpoints_prefix(job_id)}attempt-{attempt}/"
