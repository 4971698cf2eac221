"""A job on two devices through the real service: API and Celery workers on PostgreSQL and Redis,
each worker with `--gpus 2`, which on this machine without CUDA trains as two CPU processes (gloo).

One job lives through what a fleet does to it: its worker is told to stop (SIGTERM: the ranks
stop at one step with a checkpoint and the job goes back to the queue), another worker resumes it
and is then killed outright (SIGKILL: its ranks must not train on), and a third finishes it with
the same total steps.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from app.storage import checkpoints_prefix
from tests.conftest import REDIS_URL, TINY_MODEL
from tests.faults.conftest import FaultStack
from tests.support.services import (
    auth_headers,
    base_env,
    create_api_key,
    extract_archive,
    python_cli,
)

STEPS = 80


@pytest.fixture
def stack(postgres_url: str, model_root: Path, tmp_path: Path) -> Iterator[FaultStack]:
    """The API on a fresh database with short leases; the test starts its workers."""
    env = base_env(
        database_url=postgres_url,
        broker_url=REDIS_URL,
        queue=f"embedtune-ddp-{secrets.token_hex(4)}",
        data_dir=str(tmp_path / "data"),
        model_dirs=str(model_root),
        progress_interval_s="0.2",
        lease_s="3",
        sweep_interval_s="1",
        checkpoint_every_steps="10",
        max_attempts="4",
    )
    subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
    made = FaultStack(env, tmp_path / "data", tmp_path)
    made.client.headers.update(auth_headers(create_api_key(env, "ddp")))
    made.start_api()
    try:
        yield made
    finally:
        made.close()
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def _rank_processes(job_id: str) -> set[int]:
    """The launcher and rank processes of the job (their command line names its run folder)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "worker.distributed_main" in argv and job_id in argv:
            found.add(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_two_device_job_is_handed_back_survives_its_worker_and_finishes(
    stack: FaultStack, triplet_files: dict[str, Path]
) -> None:
    for _ in range(3):
        stack.start_worker(worker_gpus="2")
    train = stack.datasets(triplet_files)
    created = stack.client.post(
        "/jobs",
        json={
            "name": "two-devices",
            "base_model": TINY_MODEL,
            "train_dataset": train,
            "hyperparameters": {"batch_size": 8, "learning_rate": 1e-3, "max_steps": STEPS},
            "resources": {"gpus": 2},
        },
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert created.json()["resources"] == {"gpu_type": None, "gpus": 2}

    # SIGTERM, as a deploy does: the attempt asks its ranks to stop; both stop at one step,
    # with a checkpoint of that step, and the job goes back to the queue.
    stack.wait(job_id, lambda j: (j["progress"] or {}).get("step", 0) >= 10)
    first = stack.holder(job_id, 1)
    assert len(_rank_processes(job_id)) == 3  # the launcher and two ranks
    os.kill(first.proc.pid, signal.SIGTERM)
    assert first.proc.wait(timeout=120) == 0, first.log_tail()
    retried = [e for e in stack.events(job_id) if e["type"] == "retried"]
    assert retried and retried[-1]["data"]["reason"] == "handed_back"
    handed_back_at = retried[-1]["data"]["step"]
    assert handed_back_at >= 10 and stack.job(job_id)["checkpoint_step"] == handed_back_at

    # Resumed from that step on another worker, which is then killed outright.
    stack.wait(job_id, lambda j: (j["checkpoint_step"] or 0) >= handed_back_at + 20)
    second = stack.holder(job_id, 2)
    ranks = _rank_processes(job_id)
    assert len(ranks) == 3
    os.killpg(second.proc.pid, signal.SIGKILL)  # main and pool processes
    second.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in ranks), "ranks kept training after their worker died"

    final = stack.wait_terminal(job_id, timeout=400)
    assert final["status"] == "succeeded", stack.logs()
    events = stack.events(job_id)
    started = [e for e in events if e["type"] == "started"]
    assert [e["attempt"] for e in started] == [1, 2, 3]
    assert started[1]["data"]["resumed_from_step"] == handed_back_at
    assert started[2]["data"]["resumed_from_step"] >= handed_back_at + 20
    assert [e["data"]["reason"] for e in events if e["type"] == "retried"] == [
        "handed_back",
        "worker_lost",
    ]
    # Checkpoints of the two-process runs were recorded as they were saved.
    saved = [e["data"]["step"] for e in events if e["type"] == "checkpoint_saved"]
    assert saved and all(step % 10 == 0 or step == handed_back_at for step in saved)
    # Every attempt trained on two devices, to the total of an uninterrupted run.
    for attempt in (1, 2, 3):
        holder = stack.holder(job_id, attempt)
        assert f"job {job_id} attempt {attempt}: training on 2 devices" in holder.log_tail(10**7)
    assert final["progress"]["step"] == final["progress"]["total_steps"] == STEPS
    assert final["metrics"]["fine_tuned"]["cosine_accuracy"] is not None
    # The worker deletes the checkpoints right after it records the success.
    deadline = time.monotonic() + 30
    while list(stack.store().list(checkpoints_prefix(job_id))) and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.assert_invariants([job_id])

    download = stack.client.get(f"/jobs/{job_id}/model")
    assert download.status_code == 200
    model_dir = extract_archive(download.content, stack.log_dir / "model")
    folders = [p.parent for p in model_dir.rglob("modules.json")]
    assert len(folders) == 1
    model = SentenceTransformer(str(folders[0]), device="cpu")
    assert model.encode(["a dog runs"]).shape[1] > 0
