"""GET /jobs/{id}/stream: a job's timeline and progress as Server-Sent Events.

Each job event is one SSE message: `id` its position in the job's timeline (the id GET
/jobs/{id}/events shows), `event` its type, `data` the JobEventRead JSON. Progress updates are
`event: progress` with `data: {"status", "progress"}` and the id of the last event sent, so a
client reconnecting with `Last-Event-ID` resumes after the events it has and misses none. The
stream ends after the terminal event (succeeded, failed, cancelled).

The database is polled (every EMBEDTUNE_STREAM_POLL_S), each look its own short transaction on a
worker thread: no session is held across awaits, and no broker is involved.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from sse_starlette.event import ServerSentEvent

from app.db.session import unit_of_work
from app.jobs.events import list_events
from app.jobs.models import Job
from app.jobs.schemas import JobEventRead
from app.jobs.states import TERMINAL, JobStatus

# Events read per look; a longer backlog is read in several looks without waiting.
PAGE = 200


@dataclass(frozen=True)
class _Look:
    status: str
    progress: dict[str, Any] | None
    events: list[ServerSentEvent]
    last: int
    has_more: bool


def _look(job_id: str, after: int) -> _Look:
    with unit_of_work() as session:
        # The status first: an event committed with a terminal status is then seen below.
        job = session.get(Job, job_id)
        status, progress = (job.status, job.progress) if job else (JobStatus.CANCELLED, None)
        page, has_more = list_events(session, job_id, after=after, limit=PAGE)
        messages = [
            ServerSentEvent(
                data=JobEventRead.of(n, e).model_dump_json(),
                event=e.type,
                id=str(n),
            )
            for n, e in page
        ]
    return _Look(str(status), progress, messages, page[-1][0] if page else after, has_more)


async def job_stream(job_id: str, *, after: int, poll_s: float) -> AsyncIterator[ServerSentEvent]:
    """The SSE messages of job `job_id` after position `after`, until its terminal event."""
    last = after
    sent_progress: tuple[str, Any] | None = None
    while True:
        look = await anyio.to_thread.run_sync(_look, job_id, last)
        for message in look.events:
            yield message
        last = look.last
        if look.has_more:
            continue
        if JobStatus(look.status) in TERMINAL:
            return
        snapshot = (look.status, look.progress)
        if look.progress is not None and snapshot != sent_progress:
            sent_progress = snapshot
            data = json.dumps({"status": look.status, "progress": look.progress})
            yield ServerSentEvent(data=data, event="progress", id=str(last))
        await anyio.sleep(poll_s)
