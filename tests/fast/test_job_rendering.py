"""GET /jobs/{id} and GET /jobs render their answers themselves (read as plain rows, serialized
once): the JSON must be what the declared model gives for the same row, for jobs in every state,
old rows with null columns included, and the same through the list, HEAD and another team."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db.session import unit_of_work
from app.jobs import service
from app.jobs.models import Job
from app.jobs.schemas import JobPreflight, TripletMetrics
from app.settings import get_settings
from tests.fast.test_stream import make_job

TEAM = "render-team"
NOW = dt.datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
METRIC = dict.fromkeys(TripletMetrics.model_fields, 0.81)
PREFLIGHT = JobPreflight.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]

# Column values per case: each state as the service leaves it, and rows from before later
# migrations (no phase, resources, preflight, metadata), which the answer fills in.
CASES: dict[str, dict[str, Any]] = {
    "queued": {"preflight": PREFLIGHT, "metadata_": {"pipeline": "ci"}},
    "queued, old row": {"phase": None, "resources": None, "metadata_": None},
    "running": {
        "status": "running",
        "phase": "training",
        "attempt": 1,
        "started_at": NOW,
        "progress": {"step": 40, "total_steps": 82, "epoch": 0.5, "loss": 1.2, "eta_s": 9.5},
        "resources": {"gpu_type": "h100", "gpus": 2},
        "cancel_requested_at": NOW,
        "checkpoint_step": 30,
    },
    "running, old row": {
        "status": "running",
        "phase": None,
        "progress": {"step": 1, "total_steps": 2, "epoch": 0.5, "loss": None},
    },
    "succeeded": {
        "status": "succeeded",
        "phase": "succeeded",
        "attempt": 2,
        "name": "naïve job ✓",
        "started_at": NOW,
        "finished_at": NOW,
        "metrics": {"base": METRIC, "fine_tuned": METRIC, "evaluated_on": "eval"},
        "model_sha256": "ab" * 32,
        "model_size_bytes": 87_000_000,
        "holdout": {"rows": 163, "share": 0.05, "seed": 42},
        "hub_revisions": {"train_dataset": "d81f" * 10},
        "train_dataset": {"hub": "sentence-transformers/all-nli", "config": "triplet"},
        "timings": {
            "queued_s": 0.14,
            "loading_s": 6.3,
            "evaluating_base_s": 1.1,
            "training_s": 95.2,
            "evaluating_s": 4.8,
            "saving_s": 1.9,
            "throughput": 8250.0,
        },
    },
    "succeeded, no model recorded": {"status": "succeeded", "phase": None, "metrics": None},
    "failed": {
        "status": "failed",
        "phase": "failed",
        "error_code": "training_failed",
        "error_message": "CUDA out of memory",
        "finished_at": NOW,
    },
    "failed, no message": {"status": "failed", "error_code": "timeout", "error_message": None},
    "cancelled": {"status": "cancelled", "phase": "cancelled", "finished_at": NOW},
}


def _expected(job_id: str) -> dict[str, Any]:
    """The answer as the declared model gives it for the ORM row (validated, then dumped as
    FastAPI dumps a response model)."""
    with unit_of_work() as session:
        job = session.get(Job, job_id)
        assert job is not None
        [shown] = service.read_jobs(session, get_settings(), [job])
        return shown.model_dump(mode="json")


def _make_cases() -> dict[str, str]:
    ids = {}
    for case, values in CASES.items():
        job_id = make_job(TEAM)
        with unit_of_work() as session:
            session.execute(update(Job).where(Job.id == job_id).values(**values))
        ids[case] = job_id
    return ids


def test_each_state_renders_as_the_model_dumps_it(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client(TEAM)
    ids = _make_cases()
    for case, job_id in ids.items():
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, (case, response.text)
        assert response.headers["content-type"] == "application/json", case
        assert response.json() == _expected(job_id), case
    # The fields the cases are about really are set (not all defaults).
    succeeded = client.get(f"/jobs/{ids['succeeded']}").json()
    assert succeeded["name"] == "naïve job ✓"
    assert succeeded["model"]["url"] == f"/jobs/{ids['succeeded']}/model"
    assert succeeded["timings"]["training_s"] == 95.2 and succeeded["throughput"] == 8250.0
    queued = client.get(f"/jobs/{ids['queued']}").json()
    assert queued["queue"]["position"] == 1 and queued["preflight"]["steps"] is not None
    old = client.get(f"/jobs/{ids['queued, old row']}").json()
    assert (old["phase"], old["metadata"], old["resources"]["gpus"]) == ("queued", {}, 1)
    failed = client.get(f"/jobs/{ids['failed, no message']}").json()
    assert failed["error"] == {"code": "timeout", "message": ""}


def test_the_list_shows_each_job_as_get_does(team_client: Callable[[str], TestClient]) -> None:
    client = team_client(TEAM)
    ids = _make_cases()
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:  # pages of 3: the cursor path renders too
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/jobs", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"data", "has_more", "next_cursor"}
        listed += body["data"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            assert cursor is None
            break
    assert sorted(j["id"] for j in listed) == sorted(ids.values())
    for job in listed:
        assert job == _expected(job["id"])


def test_head_and_another_teams_job(team_client: Callable[[str], TestClient]) -> None:
    client, other = team_client(TEAM), team_client("render-other-team")
    job_id = make_job(TEAM)
    got = client.get(f"/jobs/{job_id}")
    head = client.head(f"/jobs/{job_id}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]
    missing = other.get(f"/jobs/{job_id}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert job_id not in {j["id"] for j in other.get("/jobs").json()["data"]}
