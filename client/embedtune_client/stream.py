"""A job's live events: GET /jobs/{id}/stream (Server-Sent Events), reconnecting with
`Last-Event-ID`, or polling GET /jobs/{id}/events and GET /jobs/{id} on servers without it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

from embedtune_client.errors import ConnectionFailed, raise_for_error
from embedtune_client.models import JobEvent, ProgressUpdate, StreamItem
from embedtune_client.sse import iter_sse

if TYPE_CHECKING:
    from embedtune_client.client import Client


def stream_job(
    client: Client, job_id: str, *, after: int = 0, poll_interval: float = 2.0
) -> Iterator[StreamItem | None]:
    """Events after position `after` and progress updates, until (and including) the job's
    terminal event. Yields None as a heartbeat (keep-alive comments, polls) so a caller can
    check a deadline; `Jobs.stream` leaves those out."""
    last = after
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if last:
            headers["Last-Event-ID"] = str(last)
        response = client.send("GET", f"/jobs/{job_id}/stream", stream=True, headers=headers)
        if response.status_code in (404, 405):
            response.close()
            # A 404 for the job itself is the caller's error; otherwise the server has no
            # stream route (an older server): poll instead.
            client.jobs.get(job_id)
            yield from poll_job(client, job_id, after=last, poll_interval=poll_interval)
            return
        received = False
        try:
            raise_for_error(response)
            for message in iter_sse(response.iter_lines(), comments=True):
                received, failures = True, 0
                if message.is_comment:
                    yield None
                elif message.event == "progress":
                    yield ProgressUpdate.model_validate_json(message.data)
                else:
                    event = JobEvent.model_validate_json(message.data)
                    if event.id <= last:
                        continue  # already seen before a reconnect
                    last = event.id
                    yield event
                    if event.terminal:
                        return
        except httpx.TransportError as exc:
            failures += 1
            if failures >= client.retry.attempts:
                raise ConnectionFailed(f"the event stream broke: {exc}") from exc
            client.sleep(client.retry.backoff(failures - 1))
            continue
        finally:
            response.close()
        # Closed without a terminal event: a job that had finished before we asked (the stream
        # then has nothing to say), or a proxy cutting idle connections. The job row decides.
        if client.jobs.get(job_id).finished:
            yield from poll_job(client, job_id, after=last, poll_interval=poll_interval)
            return
        if not received:
            client.sleep(poll_interval)


def poll_job(
    client: Client, job_id: str, *, after: int = 0, poll_interval: float = 2.0
) -> Iterator[StreamItem | None]:
    """The same items as the stream, by polling: new events from GET /jobs/{id}/events, and a
    ProgressUpdate whenever GET /jobs/{id} shows another status or progress. Ends after the
    terminal event, or (for a job without one) once the finished job's events are read."""
    cursor: str | None = None
    last = after
    shown: ProgressUpdate | None = None
    finished = False
    while True:
        while True:
            page = client.jobs.events_page(job_id, cursor=cursor)
            for event in page.data:
                if event.id > last:
                    last = event.id
                    yield event
                    if event.terminal:
                        return
            cursor = page.next_cursor or cursor
            if not page.has_more:
                break
        if finished:
            return
        job = client.jobs.get(job_id)
        update = ProgressUpdate(status=job.status, progress=job.progress)
        if update != shown:
            shown = update
            yield update
        # Finished: read the events once more, for a terminal event written after our read.
        finished = job.finished
        if not finished:
            yield None
            client.sleep(poll_interval)
