"""The client against the in-process API: uploads, job creation with local files, idempotent
retries, typed errors, cancelling and waiting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from embedtune_client import (
    Client,
    JobCancelled,
    JobEvent,
    NotFoundError,
    ProgressUpdate,
    RetryPolicy,
    ValidationError,
)
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.client.conftest import FAKE_MODEL


def test_upload_list_get(api: Client, triplet_files: dict[str, Path]) -> None:
    dataset = api.datasets.upload(triplet_files["train"], name="train")
    assert dataset.id.startswith("ds_")
    assert (dataset.name, dataset.kind, dataset.rows) == ("train", "triplet", 600)
    assert [d.id for d in api.datasets.list()] == [dataset.id]
    assert api.datasets.get(dataset.id).sha256 == dataset.sha256


def test_create_uploads_local_files_first(api: Client, triplet_files: dict[str, Path]) -> None:
    job = api.jobs.create(
        base_model=FAKE_MODEL,
        train_dataset=triplet_files["train"],  # a Path
        test_dataset=str(triplet_files["test"]),  # a string naming a file
        hyperparameters={"batch_size": 8, "max_steps": 2},
        name="from-files",
    )
    uploaded = {d.name: d.id for d in api.datasets.list()}
    assert job.status == "queued"
    assert job.train_dataset == uploaded["train.jsonl"]
    assert job.test_dataset == uploaded["test.jsonl"]
    assert job.hyperparameters["batch_size"] == 8
    # An id passes through untouched: nothing more is uploaded.
    again = api.jobs.create(base_model=FAKE_MODEL, train_dataset=job.train_dataset)
    assert again.train_dataset == job.train_dataset
    assert len(api.datasets.list()) == 2
    assert {j.id for j in api.jobs.list().data} == {job.id, again.id}


class LosesFirstResponse(TestClient):
    """Delivers the first POST to `path`, then drops the connection before the answer (the
    case where a client cannot know whether its request went through)."""

    def __init__(self, app: FastAPI, path: str) -> None:
        super().__init__(app, raise_server_exceptions=False)
        self.path = path
        self.keys: list[str | None] = []

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        response = super().send(request, **kwargs)
        if request.method == "POST" and request.url.path == self.path:
            self.keys.append(request.headers.get("Idempotency-Key"))
            if len(self.keys) == 1:
                raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_retried_create_makes_one_job(
    api_app: FastAPI, make_key: Any, triplet_files: dict[str, Path], sleeps: list[float]
) -> None:
    http = LosesFirstResponse(api_app, "/jobs")
    api = Client(
        url="http://testserver", api_key=make_key("team-a"), http=http, sleep=sleeps.append
    )
    dataset = api.datasets.upload(triplet_files["train"])

    job = api.jobs.create(base_model=FAKE_MODEL, train_dataset=dataset.id)

    assert len(http.keys) == 2 and http.keys[0] and http.keys[0] == http.keys[1]
    assert [j.id for j in api.jobs.list().data] == [job.id]
    assert sleeps == [0.5]  # one backoff before the second attempt


def test_retried_upload_stores_one_dataset(
    api_app: FastAPI, make_key: Any, triplet_files: dict[str, Path], sleeps: list[float]
) -> None:
    http = LosesFirstResponse(api_app, "/datasets")
    api = Client(
        url="http://testserver", api_key=make_key("team-a"), http=http, sleep=sleeps.append
    )
    dataset = api.datasets.upload(triplet_files["train"])  # the file is sent again, whole
    assert len(http.keys) == 2 and http.keys[0] == http.keys[1]
    assert [d.id for d in api.datasets.list()] == [dataset.id]


def test_errors_carry_code_message_details(api: Client, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a", "positive": "b", "negative": "c"}\n{"anchor": "a"}\n')
    with pytest.raises(ValidationError) as caught:
        api.datasets.upload(bad)
    assert caught.value.status_code == 422
    assert caught.value.code == "dataset_invalid"
    assert "line 2" in caught.value.message
    assert caught.value.details["line"] == 2

    with pytest.raises(NotFoundError) as missing:
        api.jobs.get("job_000000000000000000000000")
    assert missing.value.code == "not_found"
    assert missing.value.details == {"job": "job_000000000000000000000000"}

    with pytest.raises(ValidationError) as refused:
        api.jobs.create(base_model=FAKE_MODEL, train_dataset="ds_000000000000000000000000")
    assert refused.value.code == "dataset_not_found"


def test_wait_and_stream_of_a_cancelled_job(api: Client, triplet_files: dict[str, Path]) -> None:
    job = api.jobs.create(base_model=FAKE_MODEL, train_dataset=triplet_files["train"])
    assert api.jobs.cancel(job.id).status == "cancelled"  # queued: cancelled at once

    with pytest.raises(JobCancelled) as caught:
        api.jobs.wait(job.id)
    assert caught.value.code == "cancelled"
    assert caught.value.job.id == job.id

    items = list(api.jobs.stream(job.id))
    events = [i for i in items if isinstance(i, JobEvent)]
    assert [e.type for e in events][0] == "queued"
    assert events[-1].type == "cancelled" and items[-1] is events[-1]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in api.jobs.events(job.id)] == [e.type for e in events]
    # Resuming after an event position gives only what follows it.
    assert [i.id for i in api.jobs.stream(job.id, after=1) if isinstance(i, JobEvent)] == [
        e.id for e in events[1:]
    ]
    assert api.jobs.metrics(job.id).status == "cancelled"


def test_stream_of_unknown_job_is_not_found(api: Client) -> None:
    with pytest.raises(NotFoundError):
        list(api.jobs.stream("job_000000000000000000000000"))


def _event(n: int, kind: str) -> str:
    body = {"id": n, "type": kind, "at": "2026-12-01T10:00:00Z", "attempt": 1, "data": {}}
    return f"id: {n}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"


def _progress(step: int) -> str:
    body = {
        "status": "running",
        "progress": {"step": step, "total_steps": 4, "epoch": 0.5, "loss": 1.5},
    }
    return f"event: progress\ndata: {json.dumps(body)}\n\n"


def test_stream_reconnects_with_last_event_id() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/stream"):
            last = request.headers.get("Last-Event-ID")
            seen.append(last)
            if last is None:  # the connection ends before the job does
                text = _event(1, "queued") + ": keep-alive\n\n" + _event(2, "started")
                text += _progress(1)
            else:
                text = _event(2, "started") + _progress(3) + _event(3, "succeeded")
            return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})
        job = {
            "id": "job_1",
            "status": "running",
            "base_model": "m",
            "train_dataset": "ds_1",
            "created_at": "2026-12-01T10:00:00Z",
        }
        return httpx.Response(200, json=job)

    api = Client(url="http://x", api_key="k", transport=httpx.MockTransport(handler), sleep=print)
    items = list(api.jobs.stream("job_1"))
    assert seen == [None, "2"]
    kinds = [i.type if isinstance(i, JobEvent) else f"step {i.progress.step}" for i in items]  # type: ignore[union-attr]
    assert kinds == ["queued", "started", "step 1", "step 3", "succeeded"]
    assert isinstance(items[2], ProgressUpdate)


def test_stream_falls_back_to_polling_without_the_route() -> None:
    polls = {"job": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/stream"):
            return httpx.Response(
                404, json={"error": {"code": "not_found", "message": "Not Found"}}
            )
        if path.endswith("/events"):
            events = [json.loads(_event(1, "queued").split("data: ")[1])]
            if polls["job"] >= 2:
                events.append(json.loads(_event(2, "succeeded").split("data: ")[1]))
            return httpx.Response(
                200, json={"data": events, "has_more": False, "next_cursor": None}
            )
        polls["job"] += 1
        running = polls["job"] >= 2
        job = {
            "id": "job_1",
            "status": "succeeded" if polls["job"] >= 3 else "running" if running else "queued",
            "base_model": "m",
            "train_dataset": "ds_1",
            "created_at": "2026-12-01T10:00:00Z",
            "progress": {"step": 2, "total_steps": 4, "epoch": 1.0, "loss": 0.5}
            if running
            else None,
        }
        return httpx.Response(200, json=job)

    naps: list[float] = []
    api = Client(
        url="http://x", api_key="k", transport=httpx.MockTransport(handler), sleep=naps.append
    )
    items = list(api.jobs.stream("job_1", poll_interval=0.25))
    # The first GET /jobs/1 checks that the job exists (then the 404 was the route's).
    assert [type(i).__name__ for i in items] == ["JobEvent", "ProgressUpdate", "JobEvent"]
    assert items[1].status == "running" and items[1].progress.step == 2  # type: ignore[union-attr]
    assert items[-1].type == "succeeded"  # type: ignore[union-attr]
    assert naps == [0.25]


def test_client_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDTUNE_URL", "http://api.example:9000/")
    monkeypatch.setenv("EMBEDTUNE_API_KEY", "et_abc")
    api = Client()
    assert api.url == "http://api.example:9000"
    assert api.headers()["Authorization"] == "Bearer et_abc"
    api.close()
    monkeypatch.delenv("EMBEDTUNE_URL")
    assert Client(retry=RetryPolicy(attempts=1)).url == "http://127.0.0.1:8000"
