"""`client.jobs`: create, read, follow, cancel, download and delete fine-tuning jobs."""

from __future__ import annotations

import builtins
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedtune_client.download import download_model
from embedtune_client.errors import JobCancelled, JobFailed, WaitTimeout, raise_for_error
from embedtune_client.models import (
    Job,
    JobEvent,
    JobEventList,
    JobList,
    JobMetrics,
    JobStatus,
    StreamItem,
)
from embedtune_client.stream import stream_job

if TYPE_CHECKING:
    from embedtune_client.client import Client

DatasetArg = str | os.PathLike[str] | dict[str, Any] | None


class Jobs:
    """Fine-tuning jobs of the API key's team."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        *,
        base_model: str,
        train_dataset: DatasetArg,
        eval_dataset: DatasetArg = None,
        test_dataset: DatasetArg = None,
        sts_dataset: DatasetArg = None,
        hyperparameters: dict[str, Any] | None = None,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        loss: str | None = None,
        card_examples: bool | None = None,
        resources: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> Job:
        """Create a job (POST /jobs) and return it, queued. Keyword arguments are the job body's
        fields (None ones are left out, so the server's defaults apply; `fields` passes any
        other). A dataset is an id (`ds_...`), a Hub reference ({"hub": ..., ...}), or a local
        file path, which is uploaded first. `resources` asks for hardware, e.g.
        {"gpu_type": "h100", "gpus": 2}.

        The request carries an Idempotency-Key (a new UUID unless given): when a connection
        drops or the API answers 429/503, the client sends it again (after Retry-After) and the
        server creates one job however many attempts reached it.
        """
        datasets = self._client.datasets
        body: dict[str, Any] = {
            "base_model": base_model,
            "train_dataset": datasets.resolve(train_dataset),
            "eval_dataset": datasets.resolve(eval_dataset),
            "test_dataset": datasets.resolve(test_dataset),
            "sts_dataset": datasets.resolve(sts_dataset),
            "hyperparameters": hyperparameters,
            "name": name,
            "metadata": metadata,
            "loss": loss,
            "card_examples": card_examples,
            "resources": resources,
            **fields,
        }
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        return Job.model_validate(self._client.request("POST", "/jobs", json=body, headers=headers))

    def get(self, job_id: str) -> Job:
        """One job; NotFoundError for an unknown id."""
        return Job.model_validate(self._client.request("GET", f"/jobs/{job_id}"))

    def list(
        self,
        *,
        status: JobStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobList:
        """A page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""
        query = {"status": status, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in query.items() if v is not None}
        return JobList.model_validate(self._client.request("GET", "/jobs", params=params))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job: a queued one at once, a running one at its next step (its status then
        turns `cancelled` shortly). ConflictError (`job_finished`) for a finished job."""
        return Job.model_validate(self._client.request("POST", f"/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> None:
        """Delete a finished job with everything the API keeps of it (timeline, metrics, model
        and checkpoints in the store). NotFoundError for an unknown id; ConflictError
        (`job_active`) while it is queued or running: cancel it first."""
        response = self._client.send("DELETE", f"/jobs/{job_id}")
        raise_for_error(response)

    def events_page(
        self, job_id: str, *, cursor: str | None = None, limit: int | None = None
    ) -> JobEventList:
        """One page of the job's timeline (GET /jobs/{id}/events)."""
        params = {k: v for k, v in {"cursor": cursor, "limit": limit}.items() if v is not None}
        body = self._client.request("GET", f"/jobs/{job_id}/events", params=params)
        return JobEventList.model_validate(body)

    def events(self, job_id: str, *, after: int = 0) -> builtins.list[JobEvent]:
        """The job's whole timeline so far, oldest first (events after position `after`)."""
        found: builtins.list[JobEvent] = []
        cursor: str | None = None
        while True:
            page = self.events_page(job_id, cursor=cursor, limit=500)
            found.extend(e for e in page.data if e.id > after)
            if not page.has_more:
                return found
            cursor = page.next_cursor

    def metrics(self, job_id: str) -> JobMetrics:
        """Loss and eval curves, and base vs fine-tuned metrics once the job has them."""
        return JobMetrics.model_validate(self._client.request("GET", f"/jobs/{job_id}/metrics"))

    def stream(
        self, job_id: str, *, after: int = 0, poll_interval: float = 2.0
    ) -> Iterator[StreamItem]:
        """Live events (JobEvent) and progress (ProgressUpdate) of a job, until its terminal
        event (succeeded, failed, cancelled), which is the last item. Events after position
        `after` only. Uses GET /jobs/{id}/stream, reconnecting with Last-Event-ID when the
        connection drops; polls every `poll_interval` seconds on servers without it."""
        for item in stream_job(self._client, job_id, after=after, poll_interval=poll_interval):
            if item is not None:
                yield item

    def wait(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 2.0) -> Job:
        """Block until the job finishes; returns it when it succeeded. Raises JobFailed (its
        `code` is the job's error code) when it failed, JobCancelled (code `cancelled`) when it
        was cancelled, WaitTimeout after `timeout` seconds (checked at every event, keep-alive
        and poll, so a little later at worst)."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def check_deadline() -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"job {job_id} did not finish within {timeout} s")

        for _ in stream_job(self._client, job_id, poll_interval=poll_interval):
            check_deadline()
        job = self.get(job_id)
        while not job.finished:  # the row may trail its terminal event by a moment
            check_deadline()
            self._client.sleep(min(poll_interval, 0.5))
            job = self.get(job_id)
        return raise_unless_succeeded(job)

    def download(self, job_id: str, dest: str | os.PathLike[str], *, extract: bool = True) -> Path:
        """Download the job's model into folder `dest`, checking its SHA-256; see
        embedtune_client.download.download_model. Returns `dest` (extracted) or the archive."""
        return download_model(self._client, job_id, dest, extract=extract)


def raise_unless_succeeded(job: Job) -> Job:
    """`job` when it succeeded; JobFailed or JobCancelled otherwise."""
    if job.status == "cancelled":
        raise JobCancelled(job, "cancelled", "the job was cancelled")
    if job.status != "succeeded":
        code = job.error.code if job.error else job.status
        message = job.error.message if job.error else f"the job is {job.status}"
        raise JobFailed(job, code, message)
    return job
