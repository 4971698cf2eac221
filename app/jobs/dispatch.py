"""Send jobs to the broker, only after they are committed.

The database is the record of every job; a message only says "there is work". If the broker
is down when a job is created, the job stays queued with no `dispatched_at`, and
`dispatch_pending` sends it again later.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.session import after_commit, unit_of_work
from app.jobs.models import Job
from app.jobs.states import JobStatus
from app.queue import RUN_JOB_TASK, get_celery
from app.settings import get_settings

log = logging.getLogger(__name__)


def dispatch_after_commit(session: Session, job: Job) -> None:
    """Send the new or re-queued `job` once `session`'s transaction commits (a job that is
    rolled back is never sent): how a request dispatches, the same way from every route."""
    job_id, queue = job.id, job.queue
    after_commit(session, lambda: dispatch(job_id, queue=queue))


def dispatch(job_id: str, *, queue: str | None = None) -> bool:
    """Publish job `job_id` to its queue (app.routing; looked up when `queue` is None) and
    record when. Returns False (and logs) when the broker is down. Every send goes through
    here: the first, the sweeper's re-sends and a worker's hand-back alike."""
    if queue is None:
        with unit_of_work() as session:
            queue = session.scalar(select(Job.queue).where(Job.id == job_id))
    try:
        get_celery().send_task(
            RUN_JOB_TASK, args=[job_id], queue=queue or get_settings().queue, retry=True
        )
    except Exception as exc:  # the broker's errors differ by transport
        log.warning("could not send job %s to the broker, will retry: %s", job_id, exc)
        return False
    with unit_of_work() as session:
        # The time of the latest send: app.jobs.leases re-sends jobs that wait too long.
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
            .values(dispatched_at=utcnow())
        )
    return True


def dispatch_pending(min_age_s: float = 5.0) -> int:
    """Send queued jobs that never reached the broker. Returns how many were sent."""
    cutoff = utcnow() - timedelta(seconds=min_age_s)
    with unit_of_work() as session:
        job_ids = list(
            session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.QUEUED.value,
                    Job.dispatched_at.is_(None),
                    Job.created_at < cutoff,
                )
            )
        )
    return sum(1 for job_id in job_ids if dispatch(job_id))
