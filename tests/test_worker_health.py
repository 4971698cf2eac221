"""Worker heartbeats in /health and a worker's own metrics server, with real processes on
PostgreSQL and Redis: the shared stack's worker counts as alive; an API on a queue no worker takes
is degraded while a job waits there; a worker started for that queue with
EMBEDTUNE_WORKER_METRICS_PORT takes the job, serves its metrics, and leaves /health when it stops.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL, Stack
from tests.support.health import health_until
from tests.support.services import (
    Process,
    auth_headers,
    create_api_key,
    free_port,
    python_cli,
    upload,
    wait_for_job,
    wait_healthy,
)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not after {timeout}s (last: {last})")


def worker_samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_stack_worker_is_alive_on_its_queue(pg_stack: Stack) -> None:
    queue = pg_stack.env["EMBEDTUNE_QUEUE"]

    def alive() -> dict[str, Any] | None:
        body = dict(pg_stack.client.get("/health").json())
        return body if body["workers"]["queues"].get(queue, 0) >= 1 else None

    body = wait_until(alive, "the stack's worker in /health")
    assert body["status"] == "ok"
    assert body["workers"]["alive"] >= 1
    metrics = pg_stack.client.get("/metrics").text
    assert f'embedtune_workers_alive{{queue="{queue}"}} 1.0' in metrics


def test_a_queue_without_workers_is_degraded_until_a_worker_with_metrics_takes_it(
    pg_stack: Stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    queue = f"embedtune-lonely-{secrets.token_hex(4)}"
    env = {**pg_stack.env, "EMBEDTUNE_QUEUE": queue}
    port = free_port()
    api = Process("api-lonely", python_cli("api", "--port", str(port)), env, tmp_path)
    processes = [api]
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        wait_healthy(str(client.base_url), [api])
        client.headers.update(auth_headers(create_api_key(env, "lonely")))
        r = upload(client, triplet_files["train"])
        assert r.status_code == 201, r.text
        body = {
            "name": "lonely",
            "base_model": TINY_MODEL,
            "train_dataset": r.json()["id"],
            "hyperparameters": {"batch_size": 8, "max_steps": 3},
        }
        job = client.post("/jobs", json=body)
        assert job.status_code == 202, job.text

        health = health_until(lambda: client.get("/health"), lambda r: r.json()["status"] != "ok")
        # The API works: 200; the job waits for a worker: degraded.
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["workers"]["queues"][queue] == 0

        metrics_port = free_port()
        worker_env = {**env, "EMBEDTUNE_WORKER_METRICS_PORT": str(metrics_port)}
        worker = Process("worker-metrics", python_cli("worker"), worker_env, tmp_path)
        processes.append(worker)
        done, _ = wait_for_job(client, job.json()["id"], timeout=180)
        assert done["status"] == "succeeded", done
        health = health_until(
            lambda: client.get("/health"), lambda r: r.json()["workers"]["queues"][queue] == 1
        ).json()
        assert health["status"] == "ok" and health["workers"]["queues"][queue] == 1, health

        def observed() -> dict[Any, float] | None:
            scraped = worker_samples(metrics_port)
            count = ("embedtune_job_duration_seconds_count", frozenset({("status", "succeeded")}))
            return scraped if scraped.get(count) == 1 else None

        scraped = wait_until(observed, "the job in the worker's metrics", timeout=20)
        assert scraped[("embedtune_training_steps_per_second_count", frozenset())] == 1
        assert scraped[("embedtune_training_steps_per_second_sum", frozenset())] > 0
        # The job's process has ended: nothing runs now.
        assert scraped.get(("embedtune_worker_running_jobs", frozenset()), 0) == 0

        worker.stop()
        assert worker.proc.returncode == 0, worker.log_tail()
        # A clean shutdown removes the worker's row at once.
        health = health_until(
            lambda: client.get("/health"), lambda r: r.json()["workers"]["queues"][queue] == 0
        ).json()
        assert health["workers"]["queues"][queue] == 0
    finally:
        client.close()
        for p in processes:
            p.stop()
