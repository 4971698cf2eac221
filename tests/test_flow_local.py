"""The embedded default, started exactly as the README starts it: `scripts/run-local`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sentence_transformers import SentenceTransformer

from tests.accuracy import assert_same_accuracy, cosine_triplet_accuracy
from tests.conftest import TINY_MODEL, Stack
from tests.support.services import (
    REPO_ROOT,
    Process,
    base_env,
    extract_archive,
    free_port,
    upload,
    wait_for_job,
    wait_healthy,
)


@pytest.fixture
def local_stack(tmp_path: Path, model_root: Path) -> Iterator[Stack]:
    data_dir = tmp_path / "embedtune-data"
    port = free_port()
    # Only what a user could set: the local mode picks SQLite and a folder broker itself.
    env = base_env(model_dirs=str(model_root))
    proc = Process(
        "run-local",
        [
            str(REPO_ROOT / "scripts" / "run-local"),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env,
        tmp_path,
    )
    stack = Stack(f"http://127.0.0.1:{port}", env, [proc], data_dir)
    try:
        wait_healthy(stack.base_url, stack.processes, timeout=300)
        # The first start made a team and a key, printed it, and kept it in a 0600 file.
        key_file = data_dir / "api-key"
        key = key_file.read_text().strip()
        assert key.startswith("et_")
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert f"export EMBEDTUNE_API_KEY={key}" in proc.log_tail(100_000)
        assert 'curl -s -H "Authorization: Bearer $EMBEDTUNE_API_KEY"' in proc.log_tail(100_000)
        stack.authenticate(key)
        yield stack
    finally:
        stack.client.close()
        proc.stop()


def test_local_mode_runs_a_job_to_a_loadable_model(
    local_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    client = local_stack.client
    health = client.get("/health").json()
    assert (health["status"], health["database"], health["broker"]) == ("ok", "ok", "ok")
    train = upload(client, triplet_files["train"]).json()
    test = upload(client, triplet_files["test"]).json()
    r = client.post(
        "/jobs",
        json={
            "base_model": TINY_MODEL,
            "train_dataset": train["id"],
            "test_dataset": test["id"],
            "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3},
        },
    )
    assert r.status_code == 202, r.text
    final, seen = wait_for_job(client, r.json()["id"])
    assert final["status"] == "succeeded", (final, local_stack.logs())
    assert any(s["status"] == "running" for s in seen), seen
    # 30 of the 600 rows are held out as the eval set (there is none): 570 / 8 * 2 epochs.
    assert final["holdout"] == {"rows": 30, "share": 0.05, "seed": 42}
    assert final["progress"]["step"] == final["progress"]["total_steps"] == 144

    # The embedded default keeps everything in the data dir.
    assert (local_stack.data_dir / "embedtune.db").is_file()
    assert (local_stack.data_dir / "broker").is_dir()

    download = client.get(final["model"]["url"])
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == final["model"]["sha256"]
    model_dir = extract_archive(download.content, tmp_path / "model")
    SentenceTransformer(str(model_dir), device="cpu")
    recomputed = cosine_triplet_accuracy(model_dir, triplet_files["test"])
    assert_same_accuracy(
        recomputed, final["metrics"]["fine_tuned"]["cosine_accuracy"], triplet_files["test"]
    )


def test_local_mode_survives_a_restart(local_stack: Stack, triplet_files: dict[str, Path]) -> None:
    """Data uploaded before a restart is still there after it (SQLite and files persist)."""
    client = local_stack.client
    dataset = upload(client, triplet_files["test"]).json()
    proc = local_stack.processes[0]
    children = psutil.Process(proc.proc.pid).children(recursive=True)
    assert any("worker" in " ".join(c.cmdline()) for c in children)
    proc.stop()
    # Stopping the local mode stops its worker too: nothing is left running.
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == []
    port = free_port()
    again = Process(
        "run-local-again",
        [
            str(REPO_ROOT / "scripts" / "run-local"),
            "--port",
            str(port),
            "--data-dir",
            str(local_stack.data_dir),
        ],
        local_stack.env,
        local_stack.data_dir.parent,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", [again], timeout=300)
        import httpx

        r = httpx.get(
            f"http://127.0.0.1:{port}/datasets/{dataset['id']}", headers=local_stack.client.headers
        )
        assert r.status_code == 200 and r.json() == dataset
        # The key survives the restart, and no new key is printed.
        assert (local_stack.data_dir / "api-key").read_text().strip() == local_stack.api_key
        assert "export EMBEDTUNE_API_KEY=et_" not in again.log_tail(100_000)
        assert f"in {local_stack.data_dir / 'api-key'}" in again.log_tail(100_000)
    finally:
        again.stop()
