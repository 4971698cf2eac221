"""Cancel, time limits and an out-of-memory error, through the real API and worker."""

from __future__ import annotations

import time
from pathlib import Path

from tests.faults.conftest import FaultStack


def test_cancel_queued_running_and_finished_jobs(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack()
    train = stack.datasets(triplet_files)

    # Queued (no worker yet): cancelled at once, and never starts once a worker comes.
    queued = stack.create_job(train, "cancel-queued", max_steps=20)
    response = stack.client.post(f"/jobs/{queued['id']}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "cancelled"
    stack.start_worker()

    # Running: stops at its next step.
    running = stack.create_job(train, "cancel-running", max_steps=100_000)
    stack.wait(running["id"], lambda j: (j["progress"] or {}).get("step", 0) >= 3)
    response = stack.client.post(f"/jobs/{running['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["cancel_requested_at"] is not None
    final = stack.wait_terminal(running["id"], timeout=60)
    assert final["status"] == "cancelled" and final["model"] is None
    assert final["progress"]["step"] < 100_000
    # Cancelling again is harmless.
    again = stack.client.post(f"/jobs/{running['id']}/cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelled"

    # The worker is free for the next job, which succeeds; cancelling that one is a 409.
    done = stack.create_job(train, "finished", max_steps=5)
    assert stack.wait_terminal(done["id"])["status"] == "succeeded", stack.logs()
    late = stack.client.post(f"/jobs/{done['id']}/cancel")
    assert late.status_code == 409 and late.json()["error"]["code"] == "job_finished"

    assert stack.job(queued["id"])["status"] == "cancelled"
    types = [e["type"] for e in stack.events(queued["id"])]
    assert "started" not in types and types[-1] == "cancelled"
    # The timeline pages by cursor, oldest first, and a bad cursor is a 422.
    whole = stack.events(running["id"])
    paged, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        body = stack.client.get(f"/jobs/{running['id']}/events", params=params).json()
        paged += body["data"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
    assert paged == whole and [e["id"] for e in whole] == sorted(e["id"] for e in whole)
    bad = stack.client.get(f"/jobs/{running['id']}/events", params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "cursor"
    running_types = [e["type"] for e in whole]
    assert running_types.index("cancel_requested") < running_types.index("cancelled")
    assert stack.client.post("/jobs/job_000000000000000000000000/cancel").status_code == 404
    stack.assert_invariants([queued["id"], running["id"], done["id"]])


def test_time_limit_fails_the_job_with_timeout(fault_stack, triplet_files: dict[str, Path]) -> None:
    stack: FaultStack = fault_stack(max_time_limit_s="3600")
    train = stack.datasets(triplet_files)
    over = stack.client.post(
        "/jobs",
        json={
            "base_model": "tiny-bert",
            "train_dataset": train,
            "hyperparameters": {"time_limit_s": 3601},
        },
    )
    assert over.status_code == 422
    assert over.json()["error"]["details"]["field"] == "hyperparameters.time_limit_s"

    stack.start_worker()
    started = time.monotonic()
    job = stack.create_job(train, "slow", max_steps=100_000, time_limit_s=4)
    final = stack.wait_terminal(job["id"], timeout=120)
    assert final["status"] == "failed", final
    assert final["error"]["code"] == "timeout"
    assert "time_limit_s" in final["error"]["message"]
    assert time.monotonic() - started < 100
    stack.assert_invariants([job["id"]])


def test_out_of_memory_fails_the_job_and_the_worker_takes_the_next(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack()
    stack.start_worker(fault_oom="too-big:3")
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "too-big", max_steps=50, batch_size=16)
    final = stack.wait_terminal(job["id"])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "out_of_memory"
    assert "batch_size 16" in final["error"]["message"]
    assert "smaller batch_size" in final["error"]["message"]

    after = stack.create_job(train, "fits", max_steps=5)
    assert stack.wait_terminal(after["id"])["status"] == "succeeded", stack.logs()
    stack.assert_invariants([job["id"], after["id"]])
