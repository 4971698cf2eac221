from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status
from fastapi.responses import FileResponse
from sse_starlette.sse import EventSourceResponse

from app.auth.deps import UNAUTHORIZED_RESPONSE, TeamDep
from app.deps import SessionDep, SettingsDep
from app.errors import NotFound
from app.idempotency import service as idempotency
from app.jobs import cancel, events, service
from app.jobs.dispatch import dispatch
from app.jobs.schemas import (
    JobCreate,
    JobEventList,
    JobEventRead,
    JobList,
    JobMetricsSeries,
    JobRead,
)
from app.jobs.states import JobStatus
from app.jobs.stream import job_stream
from app.limits import LimitsDep
from app.links import links
from app.storage import model_archive_path

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=UNAUTHORIZED_RESPONSE)


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    responses={
        202: links(
            "job_id",
            {
                "GetJob": ("GET", "/jobs/{job_id}"),
                "GetJobEvents": ("GET", "/jobs/{job_id}/events"),
                "StreamJob": ("GET", "/jobs/{job_id}/stream"),
                "GetJobMetrics": ("GET", "/jobs/{job_id}/metrics"),
                "CancelJob": ("POST", "/jobs/{job_id}/cancel"),
                "DownloadModel": ("GET", "/jobs/{job_id}/model"),
            },
        ),
        429: {
            "description": "The team already has its most queued + running jobs "
            "(too_many_active_jobs); retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        }
    },
)
def create_job(
    payload: JobCreate,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    limits: LimitsDep,
    response: Response,
    idempotency_key: idempotency.IdempotencyKeyDep,
) -> JobRead | Response:
    """Queue a fine-tuning job. Poll GET /jobs/{id} for its progress and result.

    Uploaded datasets are checked first (the job's `preflight`: steps, train/test overlap,
    shared positives); a job that cannot be meaningful is rejected with 422 preflight_failed.
    With an `Idempotency-Key`, a retry returns the first response and queues nothing."""
    idem = idempotency.request_for(
        "POST /jobs", idempotency_key, payload.model_dump(mode="json"), team_id=team.id
    )
    if idem and (stored := idempotency.find(session, idem)):
        return stored.replay({"Location": f"/jobs/{stored.resource_id}"})
    job = service.create_job(session, payload, settings, team_id=team.id, limits=limits)
    read = service.to_read(job)
    if idem and (
        stored := idempotency.save(
            session,
            idem,
            status_code=status.HTTP_202_ACCEPTED,
            body=read,
            resource_id=job.id,
            ttl_s=settings.idempotency_ttl_s,
        )
    ):  # a concurrent duplicate won: its job is the one, and it was dispatched already
        return stored.replay({"Location": f"/jobs/{stored.resource_id}"})
    session.commit()  # enqueue only what is committed
    dispatch(job.id)
    response.headers["Location"] = f"/jobs/{job.id}"
    return read


@router.get("", response_model=JobList)
def list_jobs(
    team: TeamDep,
    session: SessionDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobList:
    """The caller's team's jobs, newest first."""
    page, has_more, next_cursor = service.list_jobs(
        session, team_id=team.id, status=status_, limit=limit, cursor=cursor
    )
    data = [service.to_read(j) for j in page]
    return JobList(data=data, has_more=has_more, next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobRead, responses={404: {"description": "Unknown job"}})
def get_job(job_id: str, team: TeamDep, session: SessionDep) -> JobRead:
    return service.to_read(service.get_job(session, job_id, team_id=team.id))


@router.get(
    "/{job_id}/metrics",
    response_model=JobMetricsSeries,
    responses={404: {"description": "Unknown job"}},
)
def get_job_metrics(job_id: str, team: TeamDep, session: SessionDep) -> JobMetricsSeries:
    """The training time series (train loss per logging step, evaluations on the eval set) and
    the final base vs fine-tuned metrics. Available while the job runs: the series so far."""
    return service.job_metrics(session, job_id, team_id=team.id)


@router.get(
    "/{job_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "tar.gz of the model folder"},
        404: {"description": "Unknown job"},
        409: {"description": "The job has not succeeded"},
    },
)
def download_model(
    job_id: str, team: TeamDep, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The fine-tuned sentence-transformers folder as a gzip tar archive, streamed from disk."""
    job = service.succeeded_job(session, job_id, team_id=team.id)
    path = model_archive_path(settings, job.id)
    if not path.is_file():
        raise NotFound(
            f"the model archive of job '{job_id}' is missing from storage",
            {"job": job_id},
            code="artifact_missing",
        )
    return FileResponse(
        path,
        media_type="application/gzip",
        filename=f"{job.id}-model.tar.gz",
        headers={"X-Checksum-SHA256": job.model_sha256 or ""},
    )


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobRead,
    responses={404: {"description": "Unknown job"}, 409: {"description": "The job has finished"}},
)
def cancel_job(job_id: str, team: TeamDep, session: SessionDep) -> JobRead:
    """Cancel a job. A queued job is cancelled at once and never starts; a running job stops at
    its next training step (poll until `status` is `cancelled`; `cancel_requested_at` is set
    meanwhile). Cancelling a cancelled job returns it unchanged; a succeeded or failed job
    answers 409 job_finished."""
    return service.to_read(cancel.cancel_job(session, job_id, team_id=team.id))


@router.get(
    "/{job_id}/events",
    response_model=JobEventList,
    responses={404: {"description": "Unknown job"}},
)
def job_events(
    job_id: str,
    team: TeamDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobEventList:
    """The job's timeline, oldest first: queued, started, checkpoint_saved, evaluated, retried,
    cancel_requested, cancelled, failed, succeeded."""
    job = service.get_job(session, job_id, team_id=team.id)
    after = events.decode_cursor(cursor) if cursor else 0
    page, has_more = events.list_events(session, job.id, after=after, limit=limit)
    return JobEventList(
        data=[JobEventRead.of(n, e) for n, e in page],
        has_more=has_more,
        next_cursor=events.encode_cursor(page[-1][0]) if page else cursor,
    )


# The largest event position a client may resume after (positions are a job's own count).
_POSITION_MAX = 999_999_999
# One message of GET /jobs/{id}/stream (keep-alive comments are not messages).
_SSE_EVENT = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The event's position in the job's timeline."},
        "event": {
            "type": "string",
            "description": "An event type of GET /jobs/{id}/events, or `progress`.",
        },
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "A job event: JobEventRead; progress: {status, progress}.",
        },
    },
    "required": ["id", "event", "data"],
}


@router.get(
    "/{job_id}/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": "Server-Sent Events until the job's terminal event: each job event "
            "as `id: <position>`, `event: <type>`, `data: <the event as in GET "
            "/jobs/{id}/events>`; progress as `event: progress`, `data: {\"status\", "
            "\"progress\"}` with the id of the last event sent; keep-alive comments.",
        },
        404: {"description": "Unknown job"},
    },
)
def stream_job(
    job_id: str,
    team: TeamDep,
    session: SessionDep,
    settings: SettingsDep,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=_POSITION_MAX,
            description="Resume after this event position (as `Last-Event-ID`).",
        ),
    ] = None,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=_POSITION_MAX,
            description="Sent by EventSource clients when they reconnect: resume after it "
            "(wins over `after`).",
        ),
    ] = None,
) -> EventSourceResponse:
    """Follow a job live: its events (ids 1, 2, 3, ... as in GET /jobs/{id}/events) and progress
    as Server-Sent Events, with keep-alive comments; the stream ends after the terminal event
    (succeeded, failed, cancelled). Reconnect with `Last-Event-ID` (or `?after=`) to miss
    nothing. A finished job's stream sends its remaining events and ends."""
    job = service.get_job(session, job_id, team_id=team.id)
    start = last_event_id if last_event_id is not None else (after or 0)
    return EventSourceResponse(
        job_stream(job.id, after=start, poll_s=settings.stream_poll_s),
        ping=settings.stream_keepalive_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
