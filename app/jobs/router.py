from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session
from sse_starlette.sse import EventSourceResponse

from app.auth.deps import UNAUTHORIZED_RESPONSE, TeamDep
from app.db.session import after_commit
from app.deps import ReadsDep, SessionDep, SettingsDep
from app.errors import NotFound
from app.idempotency import service as idempotency
from app.jobs import cancel, deletion, events, service
from app.jobs.dispatch import dispatch_after_commit
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
from app.security.guard import HEAD_SCOPE_KEY
from app.storage import ObjectMissing, get_store, legacy_model_key

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
                "DeleteJob": ("DELETE", "/jobs/{job_id}"),
            },
        ),
        429: {
            "description": "The team already has its most queued + running jobs "
            "(too_many_active_jobs); retry after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
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
    [read] = service.read_jobs(session, settings, [job])
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
    dispatch_after_commit(session, job)
    response.headers["Location"] = f"/jobs/{job.id}"
    return read


# The reads clients poll are async, with their database work in one worker-thread hop: as sync
# routes they would take a second one (FastAPI validates a sync route's response in the thread
# pool) while their transaction still holds a pooled connection; under load, requests waiting
# for a connection in every thread and requests holding the connections waiting for a thread
# then block each other until the pool's timeout.
#
# They render their answer themselves, in that hop, with the model's own serializer: returned as
# a model, it would be checked against the response model and serialized again on the event
# loop. The declared response_model still documents it (the OpenAPI is unchanged), and
# tests/fast/test_job_rendering.py holds the bytes to what the model gives.
_JSON = "application/json"


@router.get("", response_model=JobList)
async def list_jobs(
    team: TeamDep,
    reads: ReadsDep,
    settings: SettingsDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The caller's team's jobs, newest first; queued ones with their queue and place there."""

    def read(session: Session) -> bytes:
        page, has_more, next_cursor = service.list_jobs(
            session, team_id=team.id, status=status_, limit=limit, cursor=cursor
        )
        data = service.read_jobs(session, settings, page)
        shown = JobList(data=data, has_more=has_more, next_cursor=next_cursor)
        return shown.__pydantic_serializer__.to_json(shown)

    return Response(await reads.run(read), media_type=_JSON)


@router.get("/{job_id}", response_model=JobRead, responses={404: {"description": "Unknown job"}})
async def get_job(job_id: str, team: TeamDep, reads: ReadsDep, settings: SettingsDep) -> Response:
    """One job; a queued one with its queue, its place there and the live workers taking it."""

    def read(session: Session) -> bytes:
        job = service.shown_job(session, job_id, team_id=team.id)
        [shown] = service.read_jobs(session, settings, [job])
        return shown.__pydantic_serializer__.to_json(shown)

    return Response(await reads.run(read), media_type=_JSON)


@router.get(
    "/{job_id}/metrics",
    response_model=JobMetricsSeries,
    responses={404: {"description": "Unknown job"}},
)
def get_job_metrics(job_id: str, team: TeamDep, session: SessionDep) -> JobMetricsSeries:
    """The training time series (train loss per logging step, evaluations on the eval set) and
    the final base vs fine-tuned metrics. Available while the job runs: the series so far."""
    return service.job_metrics(session, job_id, team_id=team.id)


_CHECKSUM_HEADER = {
    "X-Checksum-SHA256": {
        "description": "SHA-256 of the archive (hex), as in the job's `model.sha256`.",
        "schema": {"type": "string"},
    }
}


@router.get(
    "/{job_id}/model",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/gzip": {}},
            "description": "tar.gz of the model folder, streamed from the object store "
            "(with Content-Length and Content-Disposition)",
            "headers": _CHECKSUM_HEADER,
        },
        307: {
            "description": "Only with EMBEDTUNE_DOWNLOAD_REDIRECT=1 on an S3 store: download the "
            "archive from `Location`, a presigned URL of the store valid for "
            "EMBEDTUNE_DOWNLOAD_URL_TTL_S seconds. Follow it without the API key (the store "
            "does not take it); check the bytes against X-Checksum-SHA256.",
            "headers": {
                "Location": {"description": "The presigned URL.", "schema": {"type": "string"}},
                **_CHECKSUM_HEADER,
            },
        },
        404: {
            "description": "Unknown job, or its model is missing from the store (artifact_missing)"
        },
        409: {"description": "The job has not succeeded (model_not_ready)"},
        503: {
            "description": "The object store is unavailable (storage_unavailable); retry after "
            "`Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        },
    },
)
def download_model(
    job_id: str, team: TeamDep, session: SessionDep, settings: SettingsDep, request: Request
) -> Response:
    """The fine-tuned sentence-transformers folder as a gzip tar archive.

    By default the archive streams from the object store through the API (200, with
    Content-Length, Content-Disposition and X-Checksum-SHA256). With
    EMBEDTUNE_DOWNLOAD_REDIRECT=1 and an S3 store, the API answers 307 to a presigned URL of
    the store instead (valid EMBEDTUNE_DOWNLOAD_URL_TTL_S seconds; X-Checksum-SHA256 still set),
    so large models do not pass through the API; a folder store always streams. Follow the
    redirect without the Authorization header: the embedtune client and CLI do."""
    job = service.succeeded_job(session, job_id, team_id=team.id)
    store = get_store()
    key = job.model_key or legacy_model_key(job.id)
    info = store.head(key)
    if info is None:
        raise _artifact_missing(job.id)
    filename = f"{job.id}-model.tar.gz"
    checksum = {"X-Checksum-SHA256": job.model_sha256 or ""}
    if settings.download_redirect:
        url = store.presigned_url(key, settings.download_url_ttl_s, filename)
        if url is not None:
            # A presigned URL is a credential for this object until it expires: not cached.
            headers = {**checksum, "Cache-Control": "no-store"}
            return RedirectResponse(url, status_code=307, headers=headers)
    headers = {
        "Content-Length": str(info.size),
        "Content-Disposition": f'attachment; filename="{filename}"',
        **checksum,
    }
    if request.scope.get(HEAD_SCOPE_KEY):
        # HEAD: the headers only, without reading the object from the store.
        return Response(status_code=200, media_type="application/gzip", headers=headers)
    try:
        chunks = store.iter_bytes(key)  # opens the object now: a missing one raises here
    except ObjectMissing as exc:  # deleted since the lookup
        raise _artifact_missing(job.id) from exc
    return StreamingResponse(chunks, media_type="application/gzip", headers=headers)


def _artifact_missing(job_id: str) -> NotFound:
    return NotFound(
        f"the model archive of job '{job_id}' is missing from storage",
        {"job": job_id},
        code="artifact_missing",
    )


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "Unknown job"},
        409: {"description": "The job is queued or running (job_active): cancel it first"},
    },
)
def delete_job(job_id: str, team: TeamDep, session: SessionDep) -> Response:
    """Delete a finished job (succeeded, failed or cancelled): its record, timeline, metrics,
    webhook deliveries (pending ones are not sent) and every object it has in the store (its
    model, any checkpoints). A queued or running job answers 409 job_active: cancel it first.

    The records go first; the objects right after, and a store that fails then is logged and
    leaves only objects that nothing names (a sweep of the store can remove them)."""
    deletion.delete_job(session, job_id, team_id=team.id)
    after_commit(session, lambda: deletion.remove_job_objects(job_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
            '/jobs/{id}/events>`; progress as `event: progress`, `data: {"status", '
            '"progress"}` with the id of the last event sent; keep-alive comments.',
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
