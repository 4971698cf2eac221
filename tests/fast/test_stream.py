"""GET /jobs/{id}/stream, in-process: event ids as in GET /jobs/{id}/events, resume with
Last-Event-ID or ?after=, the end after the terminal event, progress updates, keep-alive
comments, and 404 for other teams' jobs.

TestClient hands a response over once the app has finished it, so every stream here ends: the
job reaches a terminal status before the test reads it, or a timer thread moves it there."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from app.auth import service as auth_service
from app.db.session import unit_of_work
from app.ids import new_id
from app.jobs.events import EventType, record_event
from app.jobs.models import Job
from app.jobs.states import JobStatus, transition
from tests.fast.conftest import client_for


def make_job(team: str) -> str:
    """A queued job of team `team` (a row as POST /jobs leaves it), with its queued event."""
    with unit_of_work() as session:
        owner, _ = auth_service.ensure_team(session, team)
        job = Job(
            id=new_id("job"),
            team_id=owner.id,
            status=JobStatus.QUEUED.value,
            base_model="tiny-bert",
            train_dataset="ds_000000000000000000000000",
            loss="mnr",
            hyperparameters={"batch_size": 8, "max_steps": 2},
            attempt=0,
        )
        session.add(job)
        session.flush()
        record_event(session, job.id, EventType.QUEUED, attempt=0)
        return job.id


def start(job_id: str, progress: dict[str, Any] | None = None) -> None:
    with unit_of_work() as session:
        assert transition(session, job_id, JobStatus.RUNNING, attempt=1, progress=progress)


def evaluate(job_id: str) -> None:
    with unit_of_work() as session:
        record_event(session, job_id, EventType.EVALUATED, attempt=1, step=1, metrics={"a": 1.0})


def succeed(job_id: str) -> None:
    with unit_of_work() as session:
        assert transition(
            session, job_id, JobStatus.SUCCEEDED, event_data={"sha256": "0" * 64, "total_steps": 2}
        )


def finished_job(team: str) -> str:
    job_id = make_job(team)
    start(job_id)
    evaluate(job_id)
    succeed(job_id)
    return job_id


def parse(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """(messages as {id, event, data}, comment lines) of an SSE body."""
    messages: list[dict[str, Any]] = []
    comments: list[str] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        message: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line)
            elif line:
                field, _, value = line.partition(":")
                message[field] = value.removeprefix(" ")
        if message:
            message["data"] = json.loads(message["data"])
            messages.append(message)
    return messages, comments


def stream(client: TestClient, job_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    r = client.get(f"/jobs/{job_id}/stream", **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse(r.text)[0]


def test_a_finished_job_streams_its_events_with_their_ids_then_ends(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client("alpha")
    job_id = finished_job("alpha")
    messages = stream(client, job_id)
    assert [(m["id"], m["event"]) for m in messages] == [
        ("1", "queued"),
        ("2", "started"),
        ("3", "evaluated"),
        ("4", "succeeded"),
    ]
    # The data is the event exactly as GET /jobs/{id}/events shows it.
    listed = client.get(f"/jobs/{job_id}/events").json()["data"]
    assert [m["data"] for m in messages] == listed


def test_last_event_id_and_after_resume_after_that_position(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client("alpha")
    job_id = finished_job("alpha")
    resumed = stream(client, job_id, headers={"Last-Event-ID": "2"})
    assert [m["id"] for m in resumed] == ["3", "4"]
    assert [m["id"] for m in stream(client, job_id, params={"after": 3})] == ["4"]
    # The header wins over the query (an EventSource reconnecting keeps its URL).
    both = stream(client, job_id, params={"after": 1}, headers={"Last-Event-ID": "3"})
    assert [m["id"] for m in both] == ["4"]
    # After the terminal event: nothing left, the stream ends at once.
    assert stream(client, job_id, headers={"Last-Event-ID": "4"}) == []
    bad = client.get(f"/jobs/{job_id}/stream", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 422


def test_a_live_stream_sends_progress_and_keepalives_and_ends_after_the_terminal_event(
    app_with: Callable[..., Any], make_key: Callable[[str], str]
) -> None:
    app = app_with(STREAM_POLL_S="0.05", STREAM_KEEPALIVE_S="0.2")
    client = client_for(app, make_key("alpha"))
    job_id = make_job("alpha")
    start(job_id, progress={"step": 1, "total_steps": 2, "epoch": 0.5, "loss": 1.5})

    def later() -> None:
        with unit_of_work() as session:
            session.get_one(Job, job_id).progress = {
                "step": 2,
                "total_steps": 2,
                "epoch": 1.0,
                "loss": 1.2,
            }
        threading.Event().wait(0.6)  # quiet: keep-alive comments go out meanwhile
        succeed(job_id)

    timer = threading.Timer(0.5, later)
    timer.start()
    try:
        r = client.get(f"/jobs/{job_id}/stream")
    finally:
        timer.join()
    assert r.status_code == 200
    messages, comments = parse(r.text)
    kinds = [(m["id"], m["event"]) for m in messages]
    assert kinds[:2] == [("1", "queued"), ("2", "started")]
    assert kinds[-1] == ("3", "succeeded")
    progress = [m for m in messages if m["event"] == "progress"]
    assert [p["data"]["progress"]["step"] for p in progress] == [1, 2]
    assert all(p["id"] == "2" and p["data"]["status"] == "running" for p in progress)
    assert comments, r.text


def test_a_cancelled_queued_job_ends_its_stream(
    team_client: Callable[[str], TestClient],
) -> None:
    client = team_client("alpha")
    job_id = make_job("alpha")
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    assert [m["event"] for m in stream(client, job_id)] == ["queued", "cancelled"]


def test_another_teams_or_an_unknown_job_is_404(
    team_client: Callable[[str], TestClient],
) -> None:
    job_id = finished_job("alpha")
    other = team_client("beta")
    for path in (f"/jobs/{job_id}/stream", "/jobs/job_000000000000000000000000/stream"):
        r = other.get(path)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"
    assert team_client("alpha").get(f"/jobs/{job_id}/stream").status_code == 200


def test_the_stream_needs_a_key(app: Any) -> None:
    assert client_for(app).get("/jobs/job_x/stream").status_code == 401
