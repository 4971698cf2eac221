"""A job's phase, timings and throughput as GET /jobs/{id} shows them, in-process: the phase each
status change sets, the phase of jobs from before phases were recorded, the worker's phase and
progress writes (fenced by the attempt, with a time left), and the OpenAPI schema."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus, transition
from rules.phases import TIMING_KEYS, Phase
from tests.fast.test_stream import make_job
from worker.progress import StepRate, ThrottledProgressWriter
from worker.training.spec import Progress

TEAM = "phase-team"


def _set(job_id: str, **values: Any) -> None:
    with unit_of_work() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def _move(job_id: str, target: JobStatus, **fields: Any) -> None:
    with unit_of_work() as session:
        assert transition(session, job_id, target, **fields)


def _read(client: TestClient, job_id: str) -> dict[str, Any]:
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_each_status_change_sets_the_phase(team_client: Callable[[str], TestClient]) -> None:
    client = team_client(TEAM)
    job_id = make_job(TEAM)
    job = _read(client, job_id)
    assert (job["phase"], job["timings"], job["throughput"]) == ("queued", None, None)

    _move(job_id, JobStatus.RUNNING, attempt=1)
    assert _read(client, job_id)["phase"] == "loading_model"
    _move(job_id, JobStatus.QUEUED)  # handed back, or its worker was lost
    assert _read(client, job_id)["phase"] == "queued"
    _move(job_id, JobStatus.RUNNING, attempt=2)
    _move(job_id, JobStatus.FAILED, error_code="timeout", error_message="too long")
    job = _read(client, job_id)
    assert (job["status"], job["phase"], job["timings"]) == ("failed", "failed", None)


def test_jobs_from_before_phases_show_one_derived_from_the_status(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client(TEAM)
    shown = {}
    for status in ("queued", "running", "succeeded", "cancelled"):
        job_id = make_job(TEAM)
        _set(job_id, status=status, phase=None)
        shown[status] = _read(client, job_id)["phase"]
    assert shown == {
        "queued": "queued",
        "running": None,  # nothing recorded which phase it is in
        "succeeded": "succeeded",
        "cancelled": "cancelled",
    }


def test_a_succeeded_job_shows_its_timings_and_throughput(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client(TEAM)
    job_id = make_job(TEAM)
    _move(job_id, JobStatus.RUNNING, attempt=1)
    stored = {key: float(n) for n, key in enumerate(TIMING_KEYS, start=1)}
    _move(job_id, JobStatus.SUCCEEDED, timings={**stored, "throughput": 812.5})
    job = _read(client, job_id)
    assert job["phase"] == "succeeded"
    assert job["timings"] == stored  # the six figures; throughput is its own field
    assert job["throughput"] == 812.5
    listed = client.get("/jobs", params={"limit": 20}).json()["data"]
    assert next(j for j in listed if j["id"] == job_id)["timings"] == stored


def test_the_worker_writes_phase_and_progress_only_while_its_attempt_holds_the_job(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client(TEAM)
    job_id = make_job(TEAM)
    _move(job_id, JobStatus.RUNNING, attempt=1)
    writer = ThrottledProgressWriter(job_id, interval_s=0.0, webhook_interval_s=60, attempt=1)
    writer.phase(Phase.TRAINING)
    writer(Progress(step=0, total_steps=100, epoch=0.0, loss=None))
    time.sleep(0.05)
    writer(Progress(step=10, total_steps=100, epoch=0.1, loss=1.5))
    job = _read(client, job_id)
    assert job["phase"] == "training"
    progress = job["progress"]
    assert (progress["step"], progress["phase"]) == (10, "training")
    assert progress["steps_per_s"] > 0
    assert progress["eta_s"] == round(90 / progress["steps_per_s"], 1)

    # The sweeper gave the job to attempt 2: attempt 1's writes must not land.
    _move(job_id, JobStatus.QUEUED)
    _move(job_id, JobStatus.RUNNING, attempt=2)
    writer.phase(Phase.SAVING)
    writer(Progress(step=99, total_steps=100, epoch=1.0, loss=0.5))
    job = _read(client, job_id)
    assert job["phase"] == "loading_model"
    assert job["progress"]["step"] == 10


def test_step_rate_has_no_eta_until_a_step_was_timed() -> None:
    rate = StepRate()
    assert rate.observe(40, 100) == (None, None)  # a resumed run starts at its checkpoint
    assert rate.observe(40, 100) == (None, None)
    time.sleep(0.02)
    steps_per_s, eta_s = rate.observe(50, 100)
    assert steps_per_s is not None and eta_s is not None
    assert eta_s == round(50 / steps_per_s, 1)
    assert rate.observe(100, 100)[1] == 0.0


def test_openapi_documents_phase_timings_throughput_and_eta(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    job = schemas["JobRead"]["properties"]
    for field in ("phase", "timings", "throughput"):
        assert job[field].get("description"), field
    phases = next(s for s in job["phase"]["anyOf"] if s.get("type") == "string")["enum"]
    assert set(phases) == {p.value for p in Phase} | {"succeeded", "failed", "cancelled"}
    timings = schemas["JobTimings"]["properties"]
    assert tuple(timings) == TIMING_KEYS
    assert all(timings[key].get("description") for key in TIMING_KEYS)
    progress = schemas["Progress"]["properties"]
    assert {"eta_s", "steps_per_s", "phase"} <= set(progress)
