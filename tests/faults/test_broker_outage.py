"""Redis stopped while jobs are submitted, then started again: every job ends exactly once.

Uses a private redis-server on a free port; the machine's own Redis is never touched."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import redis

from tests.faults.conftest import FaultStack
from tests.support.health import health_until
from tests.support.services import Process, free_port


def _redis(port: int, log_dir: Path) -> Process:
    server = Process(
        f"redis-{port}",
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        {},
        log_dir,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port).ping()
            return server
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_jobs_submitted_while_redis_is_down_all_finish(
    fault_stack, triplet_files: dict[str, Path], tmp_path: Path
) -> None:
    port = free_port()
    server = _redis(port, tmp_path)
    try:
        stack: FaultStack = fault_stack(broker_url=f"redis://127.0.0.1:{port}/0")
        stack.start_worker()
        train = stack.datasets(triplet_files)
        before = stack.create_job(train, "before", max_steps=5)
        assert stack.wait_terminal(before["id"])["status"] == "succeeded", stack.logs()

        server.stop()
        during = [stack.create_job(train, f"during-{i}", max_steps=5) for i in range(3)]
        assert all(j["status"] == "queued" for j in during)
        health = health_until(lambda: stack.client.get("/health"), lambda r: r.status_code != 200)
        assert health.status_code == 503
        time.sleep(2)

        server = _redis(port, tmp_path)  # back, empty: it keeps nothing on disk
        for job in during:
            assert stack.wait_terminal(job["id"], timeout=180)["status"] == "succeeded", (
                stack.logs()
            )
        stack.assert_invariants([before["id"], *(j["id"] for j in during)])
    finally:
        server.stop()
