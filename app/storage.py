"""Where files live under the data dir. Paths are built from server-made ids only."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings

DATASET_SUFFIX = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}


def dataset_key(dataset_id: str, fmt: str) -> str:
    return f"datasets/{dataset_id}{DATASET_SUFFIX[fmt]}"


def resolve_key(settings: Settings, key: str) -> Path:
    return settings.data_dir / key


def upload_tmp_dir(settings: Settings) -> Path:
    path = settings.data_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def model_archive_path(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "model.tar.gz"


def checkpoints_dir(settings: Settings, job_id: str) -> Path:
    """A running job's checkpoints, one folder per attempt; removed when the job ends."""
    return job_dir(settings, job_id) / "checkpoints"
