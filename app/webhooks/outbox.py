"""The webhook outbox: delivery rows written in the transaction of the job change they report.

A job event (app.jobs.events.record_event) or a progress write adds one pending delivery per
endpoint of the job's team subscribed to it; app.webhooks.sender sends them after the commit.
Nothing is written when the team has no such endpoint (one indexed query per event).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.ids import new_id
from app.jobs.models import Job
from app.jobs.schemas import JobEventRead
from app.webhooks.models import WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from app.jobs.models import JobEvent

# Timeline event type -> webhook event; the others (checkpoint_saved, cancel_requested) have none.
WEBHOOK_EVENTS: dict[str, str] = {
    "queued": "job.queued",
    "started": "job.started",
    "evaluated": "job.evaluated",
    "succeeded": "job.succeeded",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
    "retried": "job.retried",
}
PROGRESS = "job.progress"


def _subscribed(session: Session, job_id: str, name: str) -> tuple[str, list[str]]:
    """(team id, ids of its endpoints subscribed to `name`) of job `job_id`."""
    rows = session.execute(
        select(Job.team_id, WebhookEndpoint.id, WebhookEndpoint.events)
        .join(WebhookEndpoint, WebhookEndpoint.team_id == Job.team_id)
        .where(Job.id == job_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).all()
    ids = [row.id for row in rows if name in (row.events or [])]
    return (rows[0].team_id if rows else ""), ids


def _iso(value: datetime | None) -> str | None:
    # As the API's JSON writes times (pydantic): UTC with a "Z".
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def job_snapshot(session: Session, job_id: str) -> dict[str, Any]:
    """The job as it is in this transaction, compact: what a receiver needs to act on."""
    job = session.execute(
        select(
            Job.id,
            Job.name,
            Job.status,
            Job.attempt,
            Job.progress,
            Job.metrics,
            Job.error_code,
            Job.error_message,
            Job.model_sha256,
            Job.model_size_bytes,
            Job.metadata_,
            Job.created_at,
            Job.started_at,
            Job.finished_at,
        ).where(Job.id == job_id)
    ).one()
    model = None
    if job.status == "succeeded" and job.model_sha256:
        model = {
            "url": f"/jobs/{job.id}/model",
            "size_bytes": job.model_size_bytes,
            "sha256": job.model_sha256,
        }
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status,
        "attempt": job.attempt,
        "progress": job.progress,
        "metrics": job.metrics,
        "error": (
            {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
        ),
        "model": model,
        "metadata": job.metadata_ or {},
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def _add(
    session: Session, job_id: str, name: str, endpoints: list[str], data: dict[str, Any]
) -> None:
    now = utcnow()
    payload = {"type": name, "timestamp": _iso(now), "data": data}
    for endpoint_id in endpoints:
        session.add(
            WebhookDelivery(
                id=new_id("msg"),
                endpoint_id=endpoint_id,
                job_id=job_id,
                event_type=name,
                payload=payload,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


def enqueue_event(session: Session, event: JobEvent) -> None:
    """Add the deliveries of timeline event `event` (already added to `session`)."""
    name = WEBHOOK_EVENTS.get(event.type)
    if name is None:
        return
    _, endpoints = _subscribed(session, event.job_id, name)
    if not endpoints:
        return
    session.flush()  # the event's id and time
    # The event as GET /jobs/{id}/events shows it: its position is the job's own count.
    position = session.scalar(
        select(func.count())
        .select_from(type(event))
        .where(type(event).job_id == event.job_id, type(event).id <= event.id)
    )
    data = {
        "job": job_snapshot(session, event.job_id),
        "event": JobEventRead.of(position or 0, event).model_dump(mode="json"),
    }
    _add(session, event.job_id, name, endpoints, data)


def enqueue_progress(session: Session, job_id: str) -> bool:
    """Add job.progress deliveries with the job's current progress (the caller throttles).
    Returns whether the team has an endpoint subscribed to it."""
    _, endpoints = _subscribed(session, job_id, PROGRESS)
    if not endpoints:
        return False
    data = {"job": job_snapshot(session, job_id), "event": None}
    _add(session, job_id, PROGRESS, endpoints, data)
    return True
