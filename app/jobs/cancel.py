"""Cancelling a job: a queued job is cancelled at once, a running one at its next step."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.errors import Conflict
from app.jobs.events import EventType, record_event
from app.jobs.models import Job
from app.jobs.service import get_job
from app.jobs.states import JobStatus, transition


def cancel_job(session: Session, job_id: str, *, team_id: str) -> Job:
    """Cancel team `team_id`'s job `job_id` (404 unknown or another team's). Returns the job
    as it is now.

    queued: cancelled now, and never starts (a message still in the broker finds it cancelled).
    running: `cancel_requested_at` is set; the worker reads it at its heartbeat, stops at the
    next training step and moves the job to cancelled. cancelled: returned as it is (a retried
    cancel is harmless). succeeded or failed: 409 job_finished.
    """
    job = get_job(session, job_id, team_id=team_id)
    now = utcnow()
    # Two tries: the job may start (queued -> running) between the two conditional updates.
    for _ in range(2):
        session.refresh(job)
        status = JobStatus(job.status)
        if status is JobStatus.CANCELLED:
            return job
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            raise Conflict(
                f"job '{job_id}' has already {status.value}; only queued or running jobs can "
                "be cancelled",
                {"job": job_id, "status": status.value},
                code="job_finished",
            )
        if status is JobStatus.QUEUED:
            if transition(
                session,
                job_id,
                JobStatus.CANCELLED,
                expected=JobStatus.QUEUED,
                finished_at=now,
                cancel_requested_at=now,
                event_data={"reason": "cancelled while queued"},
            ):
                break
            continue
        if job.cancel_requested_at is not None:
            return job
        requested = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
            .values(cancel_requested_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(requested, "rowcount", 0) == 1:
            record_event(session, job_id, EventType.CANCEL_REQUESTED, attempt=job.attempt)
            break
    session.flush()
    session.refresh(job)
    return job
