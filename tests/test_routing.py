"""Routing with real processes on PostgreSQL and Redis: an API and two Celery workers of different
GPU types (`embedtune worker --gpu-type a100|h100 --gpus 1`, on CPU). Jobs asking for a type run
only on a worker of that type, a job without a type on either, and a job for a type no worker
has stays queued, in its own Redis queue, and says so. A worker refuses a type the deployment
does not name."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.jobs.models import Job
from app.workers.models import WorkerHeartbeat
from tests.conftest import REDIS_URL, TINY_MODEL
from tests.support.services import (
    Process,
    auth_headers,
    base_env,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_for_job,
    wait_healthy,
)

TYPES = ("a100", "h100")


class Routed:
    def __init__(self, env: dict[str, str], client: httpx.Client, log_dir: Path) -> None:
        self.env = env
        self.queue = env["EMBEDTUNE_QUEUE"]
        self.client = client
        self.log_dir = log_dir
        self.processes: list[Process] = []
        self.engine = create_engine(env["EMBEDTUNE_DATABASE_URL"])

    def worker(self, gpu_type: str) -> Process:
        argv = python_cli("worker", "--gpu-type", gpu_type, "--gpus", "1")
        process = Process(f"worker-{gpu_type}", argv, self.env, self.log_dir)
        self.processes.append(process)
        return process

    def job(
        self, train: str, name: str, resources: dict[str, Any] | None, max_steps: int = 2
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "base_model": TINY_MODEL,
            "train_dataset": train,
            "hyperparameters": {"batch_size": 8, "max_steps": max_steps},
        }
        if resources is not None:
            body["resources"] = resources
        r = self.client.post("/jobs", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def ran_on(self, job_id: str) -> str:
        """The worker node (`embedtune-<pid>@<host>`) that ran the job, from its row: clients
        never see it."""
        with Session(self.engine) as session:
            worker = session.scalar(select(Job.worker).where(Job.id == job_id))
        assert worker, job_id
        return str(worker).split(":", 1)[1]

    def heartbeats(self) -> dict[str, WorkerHeartbeat]:
        with Session(self.engine) as session:
            return {row.node: row for row in session.scalars(select(WorkerHeartbeat))}

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in self.processes)


@pytest.fixture
def routed(postgres_url: str, model_root: Path, hf_home: Path, tmp_path: Path) -> Iterator[Routed]:
    env = base_env(
        database_url=postgres_url,
        broker_url=REDIS_URL,
        queue=f"embedtune-routing-{secrets.token_hex(4)}",
        data_dir=str(tmp_path / "data"),
        model_dirs=str(model_root),
        gpu_types="a100,h100,t4",
        worker_heartbeat_s="1",
    )
    env["HF_HOME"] = str(hf_home)
    subprocess.run(python_cli("migrate"), env=env, check=True, capture_output=True)
    port = free_port()
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    stack = Routed(env, client, tmp_path)
    stack.processes.append(Process("api", python_cli("api", "--port", str(port)), env, tmp_path))
    try:
        wait_healthy(str(client.base_url), stack.processes)
        client.headers.update(auth_headers(create_api_key(env, "routing")))
        yield stack
    finally:
        client.close()
        for p in stack.processes:
            if p.name.startswith("worker"):
                p.discard()  # the test is over: no warm shutdown to wait for
            else:
                p.stop()
        stack.engine.dispose()
        broker = redis.Redis.from_url(REDIS_URL)
        for key in broker.scan_iter(f"{stack.queue}*"):
            broker.delete(key)


def test_jobs_run_only_on_workers_of_their_gpu_type(
    routed: Routed, triplet_files: dict[str, Path]
) -> None:
    r = upload(routed.client, triplet_files["train"])
    assert r.status_code == 201, r.text
    train = r.json()["id"]
    base = routed.queue

    # Queued before any worker runs: each job in its type's queue, in order, waiting for one.
    typed = {t: [routed.job(train, f"{t}-{n}", {"gpu_type": t}) for n in (1, 2)] for t in TYPES}
    anywhere = routed.job(train, "anywhere", None)
    stranded = routed.job(train, "t4", {"gpu_type": "t4"})
    for t in TYPES:
        waiting = [routed.client.get(f"/jobs/{j['id']}").json()["queue"] for j in typed[t]]
        assert [(q["name"], q["position"], q["workers"]) for q in waiting] == [
            (f"{base}.{t}", 1, 0),
            (f"{base}.{t}", 2, 0),
        ]
        assert waiting[0]["message"] == (
            f"no live worker serves gpu_type '{t}' with 1 GPU; the job waits until one starts"
        )
    assert anywhere["queue"]["name"] == base

    workers = {t: routed.worker(t) for t in TYPES}
    nodes = {t: f"embedtune-{p.proc.pid}@" for t, p in workers.items()}
    for t in TYPES:
        for job in typed[t]:
            done, _ = wait_for_job(routed.client, job["id"], timeout=300, poll_s=0.2)
            assert done["status"] == "succeeded", (done, routed.logs())
            assert done["queue"] is None and done["resources"] == {"gpu_type": t, "gpus": 1}
            assert routed.ran_on(job["id"]).startswith(nodes[t]), routed.logs()
    done, _ = wait_for_job(routed.client, anywhere["id"], timeout=300, poll_s=0.2)
    assert done["status"] == "succeeded", (done, routed.logs())
    assert routed.ran_on(anywhere["id"]).startswith(tuple(nodes.values()))

    # Each worker recorded what it has and every queue it consumes.
    beats = {
        row.gpu_type: (row.gpus, sorted(row.queues or [])) for row in routed.heartbeats().values()
    }
    assert beats == {t: (1, sorted([base, f"{base}.{t}"])) for t in TYPES}

    # No worker has a t4: the job is still queued, its message waiting in its own queue.
    waiting = routed.client.get(f"/jobs/{stranded['id']}").json()
    assert waiting["status"] == "queued", routed.logs()
    assert waiting["queue"] == {
        "name": f"{base}.t4",
        "position": 1,
        "workers": 0,
        "message": "no live worker serves gpu_type 't4' with 1 GPU; the job waits until one starts",
    }
    assert redis.Redis.from_url(REDIS_URL).llen(f"{base}.t4") == 1
    health = routed.client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["workers"]["queues"][f"{base}.t4"] == 0
    assert health["workers"]["gpu_types"] == {t: {"workers": 1, "gpus": 1} for t in TYPES}
    assert routed.client.post(f"/jobs/{stranded['id']}/cancel").json()["status"] == "cancelled"


def test_a_worker_refuses_a_gpu_type_the_deployment_does_not_name(routed: Routed) -> None:
    started = time.monotonic()
    for gpu_type, says in (
        ("v100", "not one of this deployment's GPU types"),
        ("H100", "lowercase letters"),
    ):
        result = subprocess.run(
            python_cli("worker", "--gpu-type", gpu_type),
            env=routed.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert says in result.stderr, result.stderr
    # Refused before Celery starts (or torch is imported).
    assert time.monotonic() - started < 60


def test_a_busy_worker_leaves_the_next_job_in_the_broker_for_another_worker(
    routed: Routed, triplet_files: dict[str, Path]
) -> None:
    # Acknowledgement on start (app.queue): a worker that is running a job must not fetch the
    # next one and sit on it; the message stays in Redis until a worker has a free process.
    r = upload(routed.client, triplet_files["train"])
    assert r.status_code == 201, r.text
    train = r.json()["id"]
    queue = f"{routed.queue}.a100"
    first_worker = routed.worker("a100")
    long = routed.job(train, "long", {"gpu_type": "a100"}, max_steps=1_000_000)
    deadline = time.monotonic() + 180
    while routed.client.get(f"/jobs/{long['id']}").json()["status"] != "running":
        assert time.monotonic() < deadline, routed.logs()
        time.sleep(0.3)

    next_job = routed.job(train, "next", {"gpu_type": "a100"})
    time.sleep(5)  # many heartbeats and broker polls of the busy worker
    broker = redis.Redis.from_url(REDIS_URL)
    assert broker.llen(queue) == 1, routed.logs()
    waiting = routed.client.get(f"/jobs/{next_job['id']}").json()
    assert waiting["status"] == "queued"
    assert (waiting["queue"]["position"], waiting["queue"]["workers"]) == (1, 1)

    second_worker = routed.worker("a100")
    done, _ = wait_for_job(routed.client, next_job["id"], timeout=300, poll_s=0.2)
    assert done["status"] == "succeeded", (done, routed.logs())
    assert routed.ran_on(next_job["id"]).startswith(f"embedtune-{second_worker.proc.pid}@")
    assert routed.ran_on(long["id"]).startswith(f"embedtune-{first_worker.proc.pid}@")
    assert routed.client.get(f"/jobs/{long['id']}").json()["status"] == "running"
    routed.client.post(f"/jobs/{long['id']}/cancel")
    done, _ = wait_for_job(routed.client, long["id"], timeout=120, poll_s=0.2)
    assert done["status"] == "cancelled"
