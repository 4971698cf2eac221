"""A stack for fault tests: a fresh PostgreSQL database, an API, and workers the test starts,
signals and kills itself; short leases and sweeps so recovery happens within seconds."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.storage import ObjectStore, checkpoints_prefix, store_from_url
from tests.conftest import REDIS_URL, TINY_MODEL
from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_healthy,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
STATUS_EVENTS = {"queued", "started", "retried", *TERMINAL}


class FaultStack:
    def __init__(self, env: dict[str, str], data_dir: Path, log_dir: Path) -> None:
        self.env = env
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self.api: Process | None = None
        self.client = httpx.Client(timeout=60)
        self._workers = 0

    def start_api(self) -> None:
        port = free_port()
        self.api = Process("api", python_cli("api", "--port", str(port)), self.env, self.log_dir)
        self.processes.append(self.api)
        self.client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
        wait_healthy(str(self.client.base_url), [self.api])

    def start_worker(self, **settings: str) -> Process:
        self._workers += 1
        env = dict(self.env)
        env.update(
            {
                k if k.startswith("EMBEDTUNE_") else f"EMBEDTUNE_{k.upper()}": v
                for k, v in settings.items()
            }
        )
        worker = Process(
            f"worker-{self._workers}", python_cli("worker"), env, self.log_dir, new_session=True
        )
        self.processes.append(worker)
        return worker

    def holder(self, job_id: str, attempt: int) -> Process:
        """The worker process that claimed attempt `attempt` of the job (from its log)."""
        claim = f"job {job_id} attempt {attempt} claimed"
        for p in self.processes:
            if p.name.startswith("worker") and claim in p.log_tail(10**7):
                return p
        raise AssertionError(f"no worker claimed {job_id} attempt {attempt}:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in self.processes)

    def datasets(self, triplet_files: dict[str, Path]) -> str:
        response = upload(self.client, triplet_files["train"])
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def create_job(self, train: str, name: str, **hyperparameters: Any) -> dict[str, Any]:
        hp = {"batch_size": 8, "learning_rate": 1e-3, **hyperparameters}
        response = self.client.post(
            "/jobs",
            json={
                "name": name,
                "base_model": TINY_MODEL,
                "train_dataset": train,
                "hyperparameters": hp,
            },
        )
        assert response.status_code == 202, response.text
        return dict(response.json())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.client.get(f"/jobs/{job_id}").json())

    def wait(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 240
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never got there: {job}\n{self.logs()}")

    def wait_terminal(self, job_id: str, timeout: float = 240) -> dict[str, Any]:
        return self.wait(job_id, lambda j: j["status"] in TERMINAL, timeout)

    def events(self, job_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 50}
            if cursor:
                params["cursor"] = cursor
            page = self.client.get(f"/jobs/{job_id}/events", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            out.extend(body["data"])
            if not body["has_more"]:
                return out
            cursor = body["next_cursor"]

    def assert_invariants(self, job_ids: list[str]) -> None:
        """Each job: exactly one terminal state, never two attempts active at once, and
        `succeeded` only with metrics and a model whose checksum matches."""
        for job_id in job_ids:
            job = self.job(job_id)
            assert job["status"] in TERMINAL, job
            events = self.events(job_id)
            # Nothing a client sees names a worker (host:node) or a server path.
            shown = json.dumps([job, events])
            assert f"{socket.gethostname()}:embedtune-" not in shown, shown
            assert str(self.data_dir) not in shown, shown
            status_events = [e for e in events if e["type"] in STATUS_EVENTS]
            terminal = [e for e in status_events if e["type"] in TERMINAL]
            assert [e["type"] for e in terminal] == [job["status"]], status_events
            assert status_events[-1] == terminal[0], status_events
            assert status_events[0]["type"] == "queued"
            active: int | None = None
            attempts: list[int] = []
            for event in status_events:
                if event["type"] == "started":
                    assert active is None, f"two active attempts: {status_events}"
                    active = event["attempt"]
                    attempts.append(event["attempt"])
                elif event["type"] in {"retried", *TERMINAL} and active is not None:
                    assert event["attempt"] == active, status_events
                    active = None
            assert attempts == sorted(set(attempts)), status_events
            if job["status"] == "succeeded":
                assert job["metrics"] and job["model"], job
                download = self.client.get(f"/jobs/{job_id}/model")
                assert download.status_code == 200
                digest = hashlib.sha256(download.content).hexdigest()
                assert digest == job["model"]["sha256"] == download.headers["x-checksum-sha256"]
            # Checkpoints go when the job ends (the worker deletes them just after the
            # fenced finish that ends the job).
            deadline = time.monotonic() + 30
            while list(self.store().list(checkpoints_prefix(job_id))):
                assert time.monotonic() < deadline, f"checkpoints of {job_id} left behind"
                time.sleep(0.2)

    def store(self) -> ObjectStore:
        """The store the stack's processes use (the test process needs its credentials)."""
        url = self.env.get("EMBEDTUNE_STORAGE_URL") or f"file://{self.data_dir.resolve()}"
        return store_from_url(url, self.env.get("EMBEDTUNE_S3_ENDPOINT_URL"))

    def close(self) -> None:
        self.client.close()
        for p in reversed(self.processes):
            if p.name.startswith("worker"):
                p.discard()  # the test is over: no warm shutdown to wait for
            else:
                p.stop()


@pytest.fixture
def fault_stack(
    postgres_url: str, model_root: Path, tmp_path: Path
) -> Iterator[Callable[..., FaultStack]]:
    """fault_stack(**settings): the API on a fresh database (no worker yet) with short leases.
    Extra settings (e.g. broker_url, max_attempts) override the defaults."""
    stacks: list[FaultStack] = []

    def make(**settings: str) -> FaultStack:
        data_dir = tmp_path / "data"
        values = {
            "database_url": postgres_url,
            "broker_url": REDIS_URL,
            "queue": f"embedtune-faults-{secrets.token_hex(4)}",
            "data_dir": str(data_dir),
            "model_dirs": str(model_root),
            "progress_interval_s": "0.2",
            "lease_s": "3",
            "sweep_interval_s": "1",
            "checkpoint_every_steps": "10",
            "max_attempts": "3",
        }
        values.update(settings)
        env = base_env(**values)
        subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
        stack = FaultStack(env, data_dir, tmp_path)
        stack.client.headers.update(auth_headers(create_api_key(env, "faults")))
        stacks.append(stack)
        stack.start_api()
        return stack

    yield make
    for stack in stacks:
        stack.close()
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
