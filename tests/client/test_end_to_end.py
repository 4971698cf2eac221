"""The CLI as a user runs it, against the real stack (API + Celery worker on PostgreSQL and
Redis): create --wait, download, load the model; cancel, then watch exits with the code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY_MODEL, Stack


def _embedtune(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.env.items() if not k.startswith("EMBEDTUNE_")}
    env.update({"EMBEDTUNE_URL": stack.base_url, "EMBEDTUNE_API_KEY": stack.api_key or ""})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_create_wait_download_load(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    created = _embedtune(
        pg_stack, "jobs", "create", "--base-model", TINY_MODEL,
        "--train", str(triplet_files["train"]), "--test", str(triplet_files["test"]),
        "--set", "max_steps=2", "--set", "batch_size=8", "--wait", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job = json.loads(created.stdout)
    assert job["status"] == "succeeded" and job["train_dataset"].startswith("ds_")

    out = tmp_path / "model"
    downloaded = _embedtune(pg_stack, "jobs", "download", job["id"], "--out", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    assert downloaded.stdout.strip() == str(out)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(out), device="cpu")
    assert model.encode(["a sentence"]).shape[0] == 1


def test_cancel_then_watch_exits_with_the_code(
    pg_stack: Stack, triplet_files: dict[str, Path]
) -> None:
    created = _embedtune(
        pg_stack, "jobs", "create", "--base-model", TINY_MODEL,
        "--train", str(triplet_files["train"]), "--set", "max_steps=100000",
        "--set", "batch_size=8",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    job_id = created.stdout.strip()
    cancelled = _embedtune(pg_stack, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr

    watched = _embedtune(pg_stack, "jobs", "watch", job_id)
    assert watched.returncode == 4, watched.stderr
    assert f"job {job_id} cancelled: cancelled" in watched.stderr
