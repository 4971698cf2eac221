"""Take back jobs whose worker is gone, and re-send queued jobs whose message may be lost.

A running attempt holds a lease (`lease_expires_at`) that its worker renews by heartbeat. Past
it, the worker is presumed dead: the job is queued again for another attempt (resuming from its
latest checkpoint), or fails with `worker_lost` once `max_attempts` attempts were lost. This
bounds recovery by lease_s + sweep_interval_s instead of the broker's visibility timeout.

Safe to run in several processes at once: each change is a conditional transition that only the
first sweeper wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.jobs.dispatch import dispatch
from app.jobs.models import Job
from app.jobs.states import JobStatus, transition
from app.settings import Settings
from app.storage import StorageError, checkpoints_prefix, get_store

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    redispatched: int = 0


def sweep(settings: Settings) -> SweepResult:
    """One pass: expired leases taken back, stale queued jobs sent again."""
    result = sweep_expired_leases(settings)
    result.redispatched = redispatch_stale(settings)
    return result


def sweep_expired_leases(settings: Settings) -> SweepResult:
    now = utcnow()
    # A running job without a lease predates leases (migration 0005): judge it by its last
    # update instead.
    stale = now - timedelta(seconds=settings.lease_s)
    expired = or_(
        Job.lease_expires_at < now,
        and_(Job.lease_expires_at.is_(None), Job.updated_at < stale),
    )
    with unit_of_work() as session:
        rows = session.execute(
            select(Job.id, Job.attempt, Job.workers_lost, Job.cancel_requested_at)
            .where(Job.status == JobStatus.RUNNING.value, expired)
            .limit(500)
        ).all()

    result = SweepResult()
    for row in rows:
        # The same attempt, still expired: a heartbeat that renewed meanwhile wins.
        held_by_it = [Job.attempt == row.attempt, expired]
        lost = {"reason": "worker_lost"}
        with unit_of_work() as session:
            if row.cancel_requested_at is not None:
                if transition(
                    session,
                    row.id,
                    JobStatus.CANCELLED,
                    where=held_by_it,
                    finished_at=now,
                    lease_expires_at=None,
                    event_data=lost,
                ):
                    result.cancelled.append(row.id)
            elif row.workers_lost + 1 >= settings.max_attempts:
                if transition(
                    session,
                    row.id,
                    JobStatus.FAILED,
                    where=held_by_it,
                    finished_at=now,
                    lease_expires_at=None,
                    workers_lost=Job.workers_lost + 1,
                    error_code="worker_lost",
                    error_message=(
                        f"The worker running this job stopped answering {row.workers_lost + 1} "
                        "time(s) (lost, killed or out of host memory); the job was given up "
                        f"after {settings.max_attempts} attempt(s). Check the worker logs, "
                        "then create the job again."
                    ),
                    event_data={**lost, "code": "worker_lost"},
                ):
                    result.failed.append(row.id)
            elif transition(
                session,
                row.id,
                JobStatus.QUEUED,
                where=held_by_it,
                lease_expires_at=None,
                dispatched_at=None,
                workers_lost=Job.workers_lost + 1,
                event_data=lost,
            ):
                result.requeued.append(row.id)
    for job_id in result.requeued:
        log.warning("job %s: its worker was lost; queued again", job_id)
        dispatch(job_id)
    for job_id in result.failed:
        log.warning("job %s: worker lost too often; failed", job_id)
    for job_id in (*result.failed, *result.cancelled):
        # Ended here, not by a worker: nothing will resume from its checkpoints.
        remove_checkpoints(job_id)
    return result


def redispatch_stale(settings: Settings) -> int:
    """Send again queued jobs whose last message is older than redispatch_after_s.

    A broker that restarts without persistence forgets its messages, and nothing else would
    ever start those jobs. A duplicate message is harmless: the job is claimed only once.
    """
    cutoff = utcnow() - timedelta(seconds=settings.redispatch_after_s)
    with unit_of_work() as session:
        job_ids = list(
            session.scalars(
                select(Job.id)
                .where(Job.status == JobStatus.QUEUED.value, Job.dispatched_at < cutoff)
                .limit(500)
            )
        )
    return sum(1 for job_id in job_ids if dispatch(job_id))


def remove_checkpoints(job_id: str) -> None:
    """Delete an ended job's checkpoints from the store; a store that fails is logged (the
    objects are left behind, the job's outcome stands)."""
    try:
        get_store().delete_prefix(checkpoints_prefix(job_id))
    except StorageError:
        log.warning("could not delete the checkpoints of job %s", job_id, exc_info=True)
