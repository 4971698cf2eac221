"""API and workers as on separate machines: each process has its own data dir, and they share
only PostgreSQL, Redis and an S3-protocol store (a real one: moto_server in its own process)."""

from __future__ import annotations

import io
import os
import secrets
import signal
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.faults.conftest import FaultStack
from tests.support.s3 import S3_ENV, S3Server

STEPS = 120


@pytest.fixture
def machines(
    fault_stack: Callable[..., FaultStack],
    s3_server: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., FaultStack]:
    """machines(server=None, **settings): the API on its own data dir with an S3 store (a fresh
    prefix of the session's server unless `server` is given); workers are started by the test,
    each with `worker(stack, name)` on a data dir of its own."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)  # the processes inherit them; the test reads the store

    def make(server: S3Server | None = None, **settings: str) -> FaultStack:
        server = server or s3_server
        return fault_stack(
            storage_url=server.url(f"m-{secrets.token_hex(4)}"),
            s3_endpoint_url=server.endpoint_url,
            data_dir=str(tmp_path / "api-host"),
            **settings,
        )

    return make


def worker(stack: FaultStack, host: str, **settings: str) -> tuple[object, Path]:
    data_dir = stack.log_dir / host
    data_dir.mkdir()
    return stack.start_worker(data_dir=str(data_dir), **settings), data_dir


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def model_keys(stack: FaultStack, job_id: str) -> list[str]:
    return sorted(i.key for i in stack.store().list(f"jobs/{job_id}/") if i.key.endswith(".gz"))


def test_api_and_worker_share_nothing_but_database_broker_and_store(
    machines: Callable[..., FaultStack], triplet_files: dict[str, Path]
) -> None:
    stack = machines()
    api_dir = stack.log_dir / "api-host"
    _, worker_dir = worker(stack, "gpu-host")
    train = stack.datasets(triplet_files)
    store = stack.store()
    # The upload is in the store, not only on the API's disk.
    assert [i.key for i in store.list("datasets/")] == [f"datasets/{train}.jsonl"]

    job = stack.create_job(train, "apart", max_steps=20)
    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded", stack.logs()
    assert model_keys(stack, job["id"]) == [f"jobs/{job['id']}/attempt-1/model.tar.gz"]

    download = stack.client.get(f"/jobs/{job['id']}/model")
    assert download.status_code == 200
    assert int(download.headers["content-length"]) == len(download.content)
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        names = tar.getnames()
    assert "config_sentence_transformers.json" in names and "model.safetensors" in names
    stack.assert_invariants([job["id"]])

    # Neither process kept the other's files: the API has no model, the worker no upload and
    # (the job over) no work folder; the store holds both.
    api_files = files_under(api_dir)
    assert not [f for f in api_files if f.endswith(".tar.gz") or "checkpoint" in f], api_files
    worker_files = files_under(worker_dir)
    assert not [f for f in worker_files if "scratch/jobs" in f or f.endswith(".tar.gz")], (
        worker_files
    )
    # The worker read the dataset from the store into its own cache.
    assert f"scratch/cache/datasets/{train}.jsonl" in worker_files


def test_a_killed_worker_host_is_replaced_by_one_with_an_empty_disk(
    machines: Callable[..., FaultStack], triplet_files: dict[str, Path]
) -> None:
    stack = machines(max_attempts="2")
    first, first_dir = worker(stack, "host-1")
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "host-lost", max_steps=STEPS)

    stack.wait(job["id"], lambda j: (j["checkpoint_step"] or 0) >= 20)
    os.killpg(first.proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    first.proc.wait(timeout=30)  # type: ignore[attr-defined]
    # The host is gone with its disk; a new one starts with nothing on it.
    import shutil

    shutil.rmtree(first_dir)
    _, second_dir = worker(stack, "host-2")
    assert files_under(second_dir) == []

    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded", stack.logs()
    started = [e for e in stack.events(job["id"]) if e["type"] == "started"]
    assert [e["attempt"] for e in started] == [1, 2]
    assert started[1]["data"]["resumed_from_step"] >= 20
    assert final["progress"]["step"] == final["progress"]["total_steps"] == STEPS
    stack.assert_invariants([job["id"]])


def _stopped_child(main_pid: int, timeout: float = 240) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(main_pid).children(recursive=True):
            if child.status() == psutil.STATUS_STOPPED:
                return child
        time.sleep(0.2)
    raise AssertionError("the job process never paused")


def test_a_stale_attempt_finishing_late_never_replaces_the_recorded_model(
    machines: Callable[..., FaultStack], triplet_files: dict[str, Path]
) -> None:
    stack = machines(max_attempts="3")
    # Host 1 freezes with its model trained but not stored (SIGSTOP of its job process).
    first, _ = worker(stack, "host-1", fault_pause="stale:store_model")
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "stale", max_steps=40)
    main_pid = first.proc.pid  # type: ignore[attr-defined]
    _stopped_child(main_pid)
    # The whole host freezes (its Celery main process too, so no new work reaches it: its last
    # poll of the broker times out within a second); the job's lease expires and another host
    # finishes the job from the checkpoints.
    os.kill(main_pid, signal.SIGSTOP)
    time.sleep(2)
    worker(stack, "host-2")
    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded" and final["attempt"] == 2, stack.logs()
    recorded = stack.client.get(f"/jobs/{job['id']}/model")
    assert recorded.status_code == 200
    assert model_keys(stack, job["id"]) == [f"jobs/{job['id']}/attempt-2/model.tar.gz"]

    # Host 1 wakes up and finishes its attempt: stores its model, fails the fenced finish.
    os.killpg(main_pid, signal.SIGCONT)
    deadline = time.monotonic() + 120
    while "its model was not recorded" not in first.log_tail(10**6):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)

    again = stack.client.get(f"/jobs/{job['id']}/model")
    assert again.content == recorded.content  # byte-identical
    assert again.headers["x-checksum-sha256"] == final["model"]["sha256"]
    assert stack.job(job["id"])["model"] == final["model"]
    # The stale attempt's object is gone: it never was the job's model.
    assert model_keys(stack, job["id"]) == [f"jobs/{job['id']}/attempt-2/model.tar.gz"]
    stack.assert_invariants([job["id"]])


@pytest.fixture
def own_s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_store_that_goes_down_mid_job_fails_it_storage_unavailable(
    machines: Callable[..., FaultStack], triplet_files: dict[str, Path], own_s3: S3Server
) -> None:
    stack = machines(server=own_s3, storage_retry_s="3")
    worker(stack, "gpu-host")
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "store-down", max_steps=50)
    stack.wait(job["id"], lambda j: (j["checkpoint_step"] or 0) >= 10)
    own_s3.stop()

    final = stack.wait_terminal(job["id"])  # never stuck
    assert final["status"] == "failed", stack.logs()
    assert final["error"]["code"] == "storage_unavailable"
    assert "object store" in final["error"]["message"]
    assert "EMBEDTUNE_STORAGE_URL" in final["error"]["message"]

    # The store back (empty: moto keeps objects in memory), the same worker takes new work.
    own_s3.start()
    train = stack.datasets(triplet_files)
    after = stack.create_job(train, "store-back", max_steps=10)
    assert stack.wait_terminal(after["id"])["status"] == "succeeded", stack.logs()
    stack.assert_invariants([after["id"]])
