"""Workers killed, stopped and duplicated mid-job: every job ends once, resumed, never twice."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from app.queue import RUN_JOB_TASK, make_celery
from app.settings import Settings
from tests.faults.conftest import FaultStack

STEPS = 160


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_sigkill_mid_training_resumes_from_the_checkpoint(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack(max_attempts="2")
    # Two workers, both up before the job: one runs it, the other is there to take it over.
    stack.start_worker()
    stack.start_worker()
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "killed", max_steps=STEPS)

    stack.wait(job["id"], lambda j: (j["checkpoint_step"] or 0) >= 20)
    first = stack.holder(job["id"], 1)
    os.killpg(first.proc.pid, signal.SIGKILL)  # the whole worker: main and pool processes
    first.proc.wait(timeout=30)
    killed_at = stack.job(job["id"])
    assert killed_at["status"] == "running"

    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded", stack.logs()
    events = stack.events(job["id"])
    started = [e for e in events if e["type"] == "started"]
    assert [e["attempt"] for e in started] == [1, 2]
    assert started[1]["data"]["resumed_from_step"] >= 20
    retried = [e for e in events if e["type"] == "retried"]
    assert [e["data"]["reason"] for e in retried] == ["worker_lost"]
    # The same total as an uninterrupted run, and one model.
    assert final["progress"]["step"] == final["progress"]["total_steps"] == STEPS
    assert _types(events).count("succeeded") == 1
    stack.assert_invariants([job["id"]])


def test_a_job_whose_worker_is_lost_too_often_fails_worker_lost(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack(max_attempts="1")
    worker = stack.start_worker()
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "lost", max_steps=STEPS)
    stack.wait(job["id"], lambda j: j["status"] == "running")
    os.killpg(worker.proc.pid, signal.SIGKILL)

    final = stack.wait_terminal(job["id"], timeout=60)
    assert final["status"] == "failed"
    assert final["error"]["code"] == "worker_lost"
    assert "worker" in final["error"]["message"]
    stack.assert_invariants([job["id"]])


def test_sigterm_hands_the_job_back_and_another_worker_finishes_it(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack(checkpoint_every_steps="1000")
    stack.start_worker()
    stack.start_worker()
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "deployed", max_steps=STEPS)
    stack.wait(job["id"], lambda j: (j["progress"] or {}).get("step", 0) >= 10)

    first = stack.holder(job["id"], 1)
    os.kill(first.proc.pid, signal.SIGTERM)  # a deploy: the main process is told to stop
    assert first.proc.wait(timeout=90) == 0, first.log_tail()
    events = stack.events(job["id"])
    retried = [e for e in events if e["type"] == "retried"]
    assert retried and retried[-1]["data"]["reason"] == "handed_back"
    step = retried[-1]["data"]["step"]
    assert step >= 10 and stack.job(job["id"])["checkpoint_step"] == step

    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded", stack.logs()
    started = [e for e in stack.events(job["id"]) if e["type"] == "started"]
    assert started[-1]["data"]["resumed_from_step"] == step
    assert final["progress"]["step"] == STEPS
    stack.assert_invariants([job["id"]])


def test_two_workers_receiving_the_same_message_train_once(
    fault_stack, triplet_files: dict[str, Path]
) -> None:
    stack: FaultStack = fault_stack()
    train = stack.datasets(triplet_files)
    job = stack.create_job(train, "duplicated", max_steps=40)
    # The same message twice more (a redelivery after a visibility timeout, say), then two
    # workers that both take one.
    settings = Settings(
        broker_url=stack.env["EMBEDTUNE_BROKER_URL"], queue=stack.env["EMBEDTUNE_QUEUE"]
    )
    celery = make_celery(settings)
    for _ in range(2):
        celery.send_task(RUN_JOB_TASK, args=[job["id"]])
    stack.start_worker()
    stack.start_worker()

    final = stack.wait_terminal(job["id"])
    assert final["status"] == "succeeded", stack.logs()
    events = stack.events(job["id"])
    assert _types(events).count("started") == 1
    assert final["attempt"] == 1
    stack.assert_invariants([job["id"]])
